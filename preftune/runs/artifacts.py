"""``RunArtifacts``: the engine's ``RunHooks`` filled in with what a run produces beyond its
weights and metrics: tracker logs, live warnings, charts and diagnosis.json.

    train(cfg, hooks=RunArtifacts())   # as the CLI (and so the service) and preftune.Trainer run

``train(cfg)`` alone writes only what the engine owns.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from preftune.engine.hooks import HookedConfig, RunHooks
from preftune.runs.diagnose import Finding, LiveMonitor, diagnose_run
from preftune.runs.plots import plot_run
from preftune.runs.trackers import Trackers, check_available


class RunArtifacts(RunHooks):
    def __init__(self) -> None:
        self.trackers: Trackers | None = None
        self.monitor: LiveMonitor | None = None

    def check(self, cfg: HookedConfig) -> None:
        check_available(cfg.report_to)  # a missing tracker package fails before any work

    def start(self, cfg: HookedConfig, run_dir: Path) -> None:
        config = cfg.model_dump(mode="json")
        self.trackers = Trackers.open(cfg.report_to, run_dir, cfg.wandb_name or run_dir.name,
                                      config, cfg.wandb_project, cfg.wandb_name)
        self.monitor = LiveMonitor(config)

    def log(self, row: dict[str, float]) -> Finding | None:
        """The row to every tracker; a finding the first time the curves show divergence,
        NaN or oscillation (evaluation rows never raise one)."""
        if self.trackers is not None:
            self.trackers.log(row)
        return self.monitor.update(row) if self.monitor is not None else None

    def close(self) -> None:
        if self.trackers is not None:
            self.trackers.finish()
            self.trackers = None

    def finish(self, run_dir: Path) -> dict[str, Any]:
        draw_plots(run_dir)
        return diagnose_run(run_dir).to_dict()  # also written to diagnosis.json


def draw_plots(run_dir: Path) -> None:
    """The run's charts; a run that trained well is not failed by a chart that would not draw."""
    try:
        plot_run(run_dir)
    except Exception as e:  # matplotlib and fonts fail in many ways; the metrics are safe
        warnings.warn(f"could not draw the charts of {run_dir}: {e}", stacklevel=2)
