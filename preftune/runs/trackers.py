"""Experiment trackers (W&B, TensorBoard, MLflow) that get the rows of ``metrics.jsonl``.

Each backend is a small class behind the ``Tracker`` protocol, picked by name from
``TRACKERS``; its library is imported only when the tracker starts. Every tracker receives
the same values: the row's numeric entries except ``step`` (``epoch`` included), at the
row's ``step``.
"""

from __future__ import annotations

import importlib
import json
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

from preftune import settings
from preftune.errors import ConfigError, MissingError


@dataclass(frozen=True)
class TrackerSetup:
    """What a tracker needs to start a run."""

    run_dir: Path
    run_name: str
    config: dict[str, Any]
    project: str       # W&B project, MLflow experiment
    display_name: str  # W&B run name


class Tracker(Protocol):
    """One backend: starts a run in ``__init__``, takes metrics at steps, then closes."""

    module: ClassVar[str]  # the package to import, for check_available
    hint: ClassVar[str]    # what to do when the tracker cannot start

    def __init__(self, setup: TrackerSetup) -> None: ...

    def log(self, metrics: dict[str, float], step: int) -> None: ...

    def finish(self) -> None: ...


class TensorBoardTracker:
    """Event files in ``<run_dir>/tensorboard``; the config as a text summary."""

    module: ClassVar[str] = "tensorboard"
    hint: ClassVar[str] = "check that the run directory is writable"

    def __init__(self, setup: TrackerSetup) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self._writer = SummaryWriter(log_dir=str(setup.run_dir / "tensorboard"))
        text = json.dumps(setup.config, indent=2, default=str)
        # Indented, the JSON renders as a code block in TensorBoard's markdown.
        self._writer.add_text("config", "\n".join("    " + line for line in text.splitlines()))

    def log(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self._writer.add_scalar(name, value, step)

    def finish(self) -> None:
        self._writer.close()


class MLflowTracker:
    """One run named after the run directory in the experiment ``project``.

    The store is MLFLOW_TRACKING_URI's server or else ``<run_dir>/mlruns`` (a file store,
    which MLflow 3 uses only when opted in: preftune opts in for that default). Metric names go
    through unchanged: MLflow allows ``/``, so ``eval/loss`` stays ``eval/loss``; characters
    MLflow rejects (none in metrics.jsonl) become ``_``. Params are the flattened config
    (``parent.child``), stringified and cut to 500 characters, the limit of older servers.
    """

    module: ClassVar[str] = "mlflow"
    hint: ClassVar[str] = (
        "set MLFLOW_TRACKING_URI to your tracking server, or leave it unset to keep the run "
        "in <run_dir>/mlruns")

    def __init__(self, setup: TrackerSetup) -> None:
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        uri = settings.mlflow_tracking_uri()
        if uri is None:  # preftune's own default: a file store inside the run directory
            settings.allow_mlflow_file_store()
            uri = (setup.run_dir.resolve() / "mlruns").as_uri()
        self._client = MlflowClient(tracking_uri=uri)
        experiment = self._client.get_experiment_by_name(setup.project)
        experiment_id = (experiment.experiment_id if experiment is not None
                         else self._client.create_experiment(setup.project))
        self._run_id = self._client.create_run(experiment_id, run_name=setup.run_name).info.run_id
        params = [Param(key, value) for key, value in _flat_params(setup.config).items()]
        for start in range(0, len(params), 100):  # MLflow takes at most 100 params a request
            self._client.log_batch(self._run_id, params=params[start:start + 100])

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        timestamp = int(time.time() * 1000)
        self._client.log_batch(self._run_id, metrics=[
            Metric(_mlflow_name(name), value, timestamp, step) for name, value in metrics.items()])

    def finish(self) -> None:
        self._client.set_terminated(self._run_id)


class WandbTracker:
    """A W&B run; WANDB_MODE, WANDB_API_KEY and the rest are read by wandb itself.

    W&B steps only go forward. A train row and an eval row at the same step both land in
    that step's history row: with ``step=`` given, ``log`` merges into the open row, which
    W&B writes when a later step arrives or at ``finish``.
    """

    module: ClassVar[str] = "wandb"
    hint: ClassVar[str] = (
        "log in with `wandb login` or set WANDB_API_KEY; WANDB_MODE=offline logs to the run "
        "directory without an account")

    def __init__(self, setup: TrackerSetup) -> None:
        import wandb

        # create_new: a run the caller already has open stays open and untouched.
        self._run = wandb.init(project=setup.project, name=setup.display_name,
                               dir=str(setup.run_dir), config=setup.config, reinit="create_new")

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._run.log(metrics, step=step)

    def finish(self) -> None:
        self._run.finish()


TRACKERS: dict[str, type[Tracker]] = {
    "wandb": WandbTracker,
    "tensorboard": TensorBoardTracker,
    "mlflow": MLflowTracker,
}


class Trackers:
    """Sends every metrics row to the configured trackers (none by default).

    A tracker that fails while logging is dropped with one warning; training goes on.
    """

    def __init__(self, trackers: dict[str, Tracker]) -> None:
        self._trackers = dict(trackers)
        self._failed: set[str] = set()

    @classmethod
    def open(cls, report_to: Sequence[str], run_dir: Path, run_name: str, config: dict[str, Any],
             wandb_project: str | None = None, wandb_name: str | None = None) -> Trackers:
        """Start a run in each tracker of ``report_to``, before training.

        Raises ValueError for an unknown name, MissingError for a missing package and
        ConfigError when a tracker cannot start (no login, a store that refuses); the
        trackers already started are then finished.
        """
        names = list(dict.fromkeys(report_to))
        check_available(names)
        setup = TrackerSetup(Path(run_dir), run_name, config, wandb_project or "preftune",
                             wandb_name or run_name)
        opened = cls({})
        for name in names:
            kind = TRACKERS[name]
            try:
                opened._trackers[name] = kind(setup)
            except Exception as e:
                opened.finish()
                raise ConfigError(f"cannot start the {name} tracker: {e}", [kind.hint]) from e
        return opened

    def log(self, row: dict[str, float]) -> None:
        """Send the row's numeric values except ``step`` to every tracker, at ``row["step"]``."""
        step = int(row["step"])
        metrics = {name: float(value) for name, value in row.items()
                   if name != "step" and isinstance(value, int | float)
                   and not isinstance(value, bool)}
        for name, tracker in self._trackers.items():
            if name in self._failed:
                continue
            try:
                tracker.log(metrics, step)
            except Exception as e:
                self._failed.add(name)
                warnings.warn(f"the {name} tracker failed at step {step} and gets no more "
                              f"metrics: {type(e).__name__}: {e}", RuntimeWarning, stacklevel=2)

    def finish(self) -> None:
        """Flush and close every tracker; calling it again does nothing."""
        trackers, self._trackers = self._trackers, {}
        for name, tracker in trackers.items():
            try:
                tracker.finish()
            except Exception as e:
                warnings.warn(f"the {name} tracker failed to finish: {type(e).__name__}: {e}",
                              RuntimeWarning, stacklevel=2)


def check_available(report_to: Sequence[str]) -> None:
    """Raise MissingError (exit 4) naming the first tracker whose package is not installed.

    Called before training starts, so that nothing runs in vain. Raises ValueError for a
    name that is no tracker.
    """
    for name in report_to:
        if name not in TRACKERS:
            raise ValueError(f"unknown tracker {name!r}; choose from {', '.join(TRACKERS)}")
        module = TRACKERS[name].module
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise MissingError(f"report_to includes {name}, but the {module} package is not "
                               "installed", [f"pip install 'preftune[{name}]'",
                                             f"or drop {name} from report_to"]) from e


def _flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """``{"a": {"b": 1}}`` → ``{"a.b": "1"}``, in MLflow's key and value limits."""
    out: dict[str, str] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(_flat_params(value, f"{name}."))
        else:
            out[_mlflow_name(name)[:250]] = str(value)[:500]
    return out


def _mlflow_name(name: str) -> str:
    return re.sub(r"[^\w./\- ]", "_", name)
