"""What a name on the command line stands for: a run, an adapter, or a model; and loading it.

A run directory gives its final model or a checkpoint (``RunDir.model_dir``), with the run's
config. An adapter directory names its base model. Anything else is a model name ``--model``
takes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preftune.config import TrainConfig
from preftune.errors import UsageError
from preftune.models.load import load_model, resolve_model
from preftune.rundir import RunDir, is_run_dir


@dataclass(frozen=True)
class Located:
    name: str  # as the user gave it
    model_dir: str  # the model or adapter directory (or a resolved hub id)
    tokenizer_dir: str  # where the tokenizer is: the model's directory, final/, or the base
    base: str | None = None  # the base model of an adapter; None for a full model
    run_config: TrainConfig | None = None  # set when ``name`` is a run directory

    @property
    def is_adapter(self) -> bool:
        return self.base is not None


def locate(source: str | Path, checkpoint: str | None = None) -> Located:
    """Resolve ``source``; ``checkpoint`` (a name or "latest") picks a run's checkpoint."""
    path = Path(source)
    if is_run_dir(path):
        return _locate_run(RunDir(path), str(source), checkpoint)
    if checkpoint is not None:
        raise UsageError(f"--checkpoint needs a run directory; {source} is not one "
                         "(it has no config.json and metrics.jsonl)",
                         ["pass the directory `preftune train` wrote"])
    if (path / "adapter_config.json").exists():
        base = adapter_base(path)
        return Located(str(source), str(path), str(path) if has_tokenizer(path) else base,
                       base)
    resolved = resolve_model(str(source))
    return Located(str(source), resolved, resolved)


def load_located(located: Located) -> Any:
    """The model of ``located``; an adapter comes with its base (peft), unmerged."""
    if located.is_adapter:
        from peft import AutoPeftModelForCausalLM

        return AutoPeftModelForCausalLM.from_pretrained(located.model_dir)
    return load_model(located.model_dir)


def _locate_run(run: RunDir, name: str, checkpoint: str | None) -> Located:
    record = json.loads(run.config_path.read_text(encoding="utf-8"))
    config = TrainConfig.build(record["config"])
    directory = run.model_dir(checkpoint, name)
    # Checkpoints hold no tokenizer; training never changes it, so final/'s or the base's do.
    tokenizer = next((str(d) for d in (directory, run.final_path) if has_tokenizer(d)),
                     resolve_model(config.model))
    is_adapter = (directory / "adapter_config.json").exists()
    return Located(name, str(directory), tokenizer, config.model if is_adapter else None,
                   config)


def adapter_base(directory: Path) -> str:
    """The base model an adapter directory applies to."""
    config = json.loads((directory / "adapter_config.json").read_text(encoding="utf-8"))
    base = config.get("base_model_name_or_path")
    if not base:
        raise UsageError(f"{directory}/adapter_config.json names no base model "
                         "(base_model_name_or_path)", ["set it to the model it was trained on"])
    return str(base)


def has_tokenizer(directory: Path) -> bool:
    return any((directory / name).exists() for name in ("tokenizer.json",
                                                        "tokenizer_config.json"))
