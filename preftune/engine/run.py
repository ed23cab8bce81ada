"""Opening a run directory: a new one for a new run, the same one (and its config) to resume."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from preftune.config import TrainConfig
from preftune.engine.data import PreparedData
from preftune.errors import ConfigError, StoppedError, UsageError
from preftune.rundir import RunDir, default_run_dir

C = TypeVar("C")
_LIBRARIES = ("preftune", "torch", "transformers", "peft", "accelerate", "datasets")


def open_run(cfg: TrainConfig | None, resume: str | Path | None
             ) -> tuple[RunDir, TrainConfig, dict[str, Any] | None]:
    """The run directory, the config to run, and the checkpoint to continue from (if any).

    A new run's directory is only named here; the loop creates it once model and data are
    known to be good, so a run that fails on bad input leaves nothing behind.
    """
    if resume is not None:
        return resume_run(resume, TrainConfig.build, "preftune train")
    if cfg is None:
        raise UsageError("nothing to train: give a config, or a run directory to resume")
    path = Path(cfg.output_dir) if cfg.output_dir else default_run_dir(
        cfg.dataset, cfg.model, cfg.learning_rate, cfg.beta, cfg.exp_name)
    return new_run(path, "preftune train"), cfg, None


def resume_run(resume: str | Path, build: Callable[[dict[str, Any]], C], command: str
               ) -> tuple[RunDir, C, dict[str, Any] | None]:
    """The run in ``resume`` (half-written temporary directories removed), its config as
    ``build`` makes it from config.json, and its last durable checkpoint (None: none yet).
    ``command`` is what wrote such runs, for the hint."""
    run = RunDir(Path(resume))
    if not run.config_path.exists():
        raise UsageError(f"{resume} is not a run directory: it has no config.json",
                         [f"pass the directory a previous `{command}` wrote"])
    run.remove_partial_writes()
    saved = json.loads(run.config_path.read_text(encoding="utf-8"))["config"]
    checkpoints = run.checkpoints()
    return run, build(saved), (checkpoints[-1] if checkpoints else None)


def new_run(path: Path, command: str) -> RunDir:
    """A new run's directory at ``path``, only named (nothing is written); an error when a
    run is already there. ``command`` is what continues it, for the hint."""
    if (path / "config.json").exists():
        raise ConfigError(f"run directory {path} already holds a run", [
            f"continue it with: {command} --resume {path}",
            "or choose another --output-dir",
        ])
    return RunDir(path)


def run_record(cfg: TrainConfig, data: PreparedData) -> dict[str, Any]:
    """What config.json holds: the resolved config, library versions, the data it saw."""
    stats = {"train": data.train.stats.__dict__,
             "eval": data.eval.stats.__dict__ if data.eval is not None else None}
    return config_record(cfg.model_dump(mode="json"),
                         data={"source": data.source, "fingerprint": data.fingerprint, **stats})


def config_record(config: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """config.json's record: ``config``, then ``extra`` (the data a run saw, its kind), the
    library versions and the time it was created."""
    return {"config": config, **extra, "versions": library_versions(),
            "created": datetime.now(UTC).isoformat(timespec="seconds")}


def library_versions() -> dict[str, str | None]:
    """Python's version and each library's (None: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


class StatusMarks:
    """Keeps a run's status.json true: ``running`` once its directory exists, ``finished``
    after its final model is saved, and ``stopped`` or ``failed`` (with the error) when the
    block it guards ends by an exception. Only the main process marks."""

    def __init__(self) -> None:
        self.run: RunDir | None = None

    def running(self, run: RunDir) -> None:
        self.run = run
        run.mark("running")

    def finished(self) -> None:
        if self.run is not None:
            self.run.mark("finished")
            self.run = None

    def __enter__(self) -> StatusMarks:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> None:
        if error is None or self.run is None or not self.run.config_path.exists():
            return
        stopped = isinstance(error, StoppedError | KeyboardInterrupt)
        self.run.mark("stopped" if stopped else "failed", str(error) or type(error).__name__)
