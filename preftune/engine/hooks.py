"""``RunHooks``: what the layer above the engine does with a run while ``train`` writes it.

The engine writes the run directory (config.json, metrics.jsonl, checkpoints, final/) and
nothing else: trackers, live warnings, charts and diagnosis.json belong to ``preftune.runs``
(``runs.artifacts.RunArtifacts``), which the CLI and the Python API hand to ``train``. The
engine calls these methods and never learns what they draw or write.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol


class HookedConfig(Protocol):
    """What hooks read from a run's config: a preference run's TrainConfig, GRPO's config."""

    @property
    def report_to(self) -> Sequence[str]: ...
    @property
    def wandb_project(self) -> str | None: ...
    @property
    def wandb_name(self) -> str | None: ...
    def model_dump(self, *, mode: str) -> dict[str, Any]: ...


class RunHooks:
    """Called by ``train`` in this order; each does nothing unless a subclass says otherwise.

    ``check`` runs on every process; the others on the main process only.
    """

    def check(self, cfg: HookedConfig) -> None:
        """Before any work: refuse what cannot be served (a tracker package not installed)."""

    def start(self, cfg: HookedConfig, run_dir: Path) -> None:
        """Before the first step, with the run directory in place (a resumed run's too)."""

    def log(self, row: dict[str, float]) -> Any:
        """Each row just appended to metrics.jsonl (training and evaluation); returns a finding
        to warn the person watching about (``Reporter.warning``), or None."""
        return None

    def close(self) -> None:
        """After the last step, or when training failed or stopped: always."""

    def finish(self, run_dir: Path) -> dict[str, Any] | None:
        """After final/ is saved: the run's diagnosis, for ``RunResult.diagnosis``."""
        return None
