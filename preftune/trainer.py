"""The Python API around the training loop.

    trainer = Trainer(TrainConfig(model="tiny", algo="dpo", learning_rate=1e-3))
    result = trainer.train("prefs.jsonl")          # a path, a list of dicts or an HF Dataset
    trainer.evaluate("held_out.jsonl")             # preference_accuracy, loss, reward_margin
    trainer.save_model("exported/")
    model = Trainer.load_model(result.run_dir)     # the final model of a run, or a model dir
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import torch

from preftune.config import TrainConfig
from preftune.data.tokenize import tokenize_pairs
from preftune.engine.data import read
from preftune.engine.evaluate import Scorer, evaluate_rows
from preftune.engine.logprobs import TokenRows
from preftune.engine.loop import Reporter, RunResult, train
from preftune.errors import MissingError, UsageError
from preftune.losses import LOSSES, REFERENCE_FREE, LossParams
from preftune.models.load import load_model, load_tokenizer


class Trainer:
    def __init__(self, config: TrainConfig | None = None, **options: Any) -> None:
        """A trainer for ``config``, or for ``TrainConfig(**options)``."""
        self.config = config if config is not None else TrainConfig.build(options)
        self.result: RunResult | None = None

    def train(self, train_data: Any = None, eval_data: Any = None,
              reporter: Reporter | None = None) -> RunResult:
        """Train on ``train_data`` (default: the config's dataset); the run's result."""
        self.result = train(self.config, train_data, eval_data, reporter=reporter)
        return self.result

    def evaluate(self, data: Any) -> dict[str, float]:
        """Preference accuracy, mean loss and reward margin of the trained (or base) model."""
        cfg = self.config
        source = str(self.result.run_dir) if self.result is not None else cfg.model
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        tokenizer = load_tokenizer(_model_dir(source))
        pairs = tokenize_pairs(read(cfg, data), tokenizer, cfg.max_length,
                               cfg.max_prompt_length, use_sft_target=cfg.algo == "sft")
        policy = Trainer.load_model(source).to(device)
        needs_ref = cfg.algo not in REFERENCE_FREE
        ref_model = None
        if needs_ref and not hasattr(policy, "disable_adapter"):
            ref_model = load_model(cfg.model, cfg.dtype).to(device).eval()
        scorer = Scorer(policy, ref_model, LOSSES[cfg.algo],
                        LossParams(cfg.beta, cfg.label_smoothing, cfg.gamma_beta_ratio,
                                   cfg.sft_weight),
                        needs_ref, tokenizer.pad_token_id, device)
        scores = evaluate_rows(scorer, TokenRows.from_dataset(pairs.rows), None,
                               cfg.batch_size)
        return {"preference_accuracy": scores["accuracy"], "loss": scores["loss"],
                "reward_margin": scores["margin"], "chosen_logps": scores["chosen_logps"],
                "rejected_logps": scores["rejected_logps"], "pairs": float(pairs.stats.pairs)}

    def save_model(self, directory: str | Path) -> Path:
        """Copy the trained model (weights or adapter, and tokenizer) to ``directory``."""
        if self.result is None:
            raise UsageError("nothing to save: call train() first")
        target = Path(directory)
        shutil.copytree(self.result.run_dir / "final", target, dirs_exist_ok=True)
        return target

    @staticmethod
    def load_model(path: str | Path) -> Any:
        """A model from a run directory (its final/), a model directory or an adapter
        directory (loaded onto its base with peft)."""
        directory = _model_dir(str(path))
        if (Path(directory) / "adapter_config.json").exists():
            from peft import AutoPeftModelForCausalLM

            return AutoPeftModelForCausalLM.from_pretrained(directory)
        return load_model(directory)


def _model_dir(source: str) -> str:
    """A run directory's final model, or ``source`` itself."""
    path = Path(source)
    if (path / "config.json").exists() and (path / "metrics.jsonl").exists():
        final = path / "final"
        if not final.exists():
            raise MissingError(f"{source} has no final model yet",
                               [f"finish or resume the run: preftune train --resume {source}"])
        return str(final)
    return source
