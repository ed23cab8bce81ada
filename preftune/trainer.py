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

from preftune.config import TrainConfig
from preftune.engine.data import read
from preftune.engine.loop import Reporter, RunResult, train
from preftune.errors import UsageError
from preftune.models.locate import load_located, locate
from preftune.runs.artifacts import RunArtifacts
from preftune.runs.evaluation import Scoring, evaluate


class Trainer:
    def __init__(self, config: TrainConfig | None = None, **options: Any) -> None:
        """A trainer for ``config``, or for ``TrainConfig(**options)``."""
        self.config = config if config is not None else TrainConfig.build(options)
        self.result: RunResult | None = None

    def train(self, train_data: Any = None, eval_data: Any = None,
              reporter: Reporter | None = None) -> RunResult:
        """Train on ``train_data`` (default: the config's dataset); the run's result. The run
        gets what the CLI's runs get: trackers, live warnings, charts and diagnosis.json."""
        self.result = train(self.config, train_data, eval_data, reporter=reporter,
                            hooks=RunArtifacts())
        return self.result

    def evaluate(self, data: Any) -> dict[str, float]:
        """Preference accuracy, mean loss, reward margin and log-probs of the trained model
        (the base model before training), scored by the config's loss against its model."""
        cfg = self.config
        source = str(self.result.run_dir) if self.result is not None else cfg.model
        located = locate(source)
        scoring = Scoring.choose(located, cfg.scoring_algo, cfg.beta, reference=cfg.model)
        result = evaluate(located, read(cfg, data), scoring, cfg.batch_size, cfg.max_length,
                          cfg.max_prompt_length)
        return result.summary

    def save_model(self, directory: str | Path) -> Path:
        """Copy the trained model (weights or adapter, and tokenizer) to ``directory``."""
        if self.result is None:
            raise UsageError("nothing to save: call train() first")
        target = Path(directory)
        shutil.copytree(self.result.run_dir / "final", target, dirs_exist_ok=True)
        return target

    @staticmethod
    def load_model(path: str | Path, checkpoint: str | None = None) -> Any:
        """A model from a run directory (its final/, or ``checkpoint``), a model directory or
        an adapter directory (loaded onto its base with peft)."""
        return load_located(locate(path, checkpoint))
