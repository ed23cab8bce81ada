"""Opening a run directory: a new one for a new run, the same one (and its config) to resume."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from preftune.config import TrainConfig
from preftune.engine.data import PreparedData
from preftune.errors import ConfigError, UsageError
from preftune.rundir import RunDir, default_run_dir

_LIBRARIES = ("preftune", "torch", "transformers", "peft", "accelerate", "datasets")


def open_run(cfg: TrainConfig | None, resume: str | Path | None
             ) -> tuple[RunDir, TrainConfig, dict[str, Any] | None]:
    """The run directory, the config to run, and the checkpoint to continue from (if any).

    A new run's directory is only named here; the loop creates it once model and data are
    known to be good, so a run that fails on bad input leaves nothing behind.
    """
    if resume is not None:
        run = RunDir(Path(resume))
        if not run.config_path.exists():
            raise UsageError(f"{resume} is not a run directory: it has no config.json",
                             ["pass the directory a previous `preftune train` wrote"])
        run.remove_partial_writes()
        saved = json.loads(run.config_path.read_text(encoding="utf-8"))["config"]
        checkpoints = run.checkpoints()
        return run, TrainConfig.build(saved), (checkpoints[-1] if checkpoints else None)
    if cfg is None:
        raise UsageError("nothing to train: give a config, or a run directory to resume")
    path = Path(cfg.output_dir) if cfg.output_dir else default_run_dir(
        cfg.dataset, cfg.model, cfg.learning_rate, cfg.beta, cfg.exp_name)
    if (path / "config.json").exists():
        raise ConfigError(f"run directory {path} already holds a run", [
            f"continue it with: preftune train --resume {path}",
            "or choose another --output-dir",
        ])
    return RunDir(path), cfg, None


def run_record(cfg: TrainConfig, data: PreparedData) -> dict[str, Any]:
    """What config.json holds: the resolved config, library versions, the data it saw."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    stats = {"train": data.train.stats.__dict__,
             "eval": data.eval.stats.__dict__ if data.eval is not None else None}
    return {
        "config": cfg.model_dump(mode="json"),
        "data": {"source": data.source, "fingerprint": data.fingerprint, **stats},
        "versions": versions,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
