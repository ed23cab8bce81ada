"""A run is a directory any tool can read; the engine writes it, every other layer reads it.

    config.json         the resolved config, library versions, dataset fingerprint
    metrics.jsonl       one JSON object per logged step (eval rows carry ``eval/`` names)
    checkpoints.jsonl   one row per durable checkpoint: name, epoch (null for GRPO, which has no
                        epochs), step, state_path, model_path
    checkpoints/<name>/ model/ (weights or adapter), trainer_state.pt (optimizer, scheduler,
                        RNG states, data position)
    final/              loadable with from_pretrained (or peft), tokenizer included
    status.json         running, finished, failed or stopped; who trains it (pid, host), and
                        the error of a failed or stopped run
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from preftune.errors import MissingError, UsageError
from preftune.fsutil import (
    append_jsonl,
    read_json,
    read_jsonl,
    repair_jsonl,
    write_json,
    write_jsonl,
)

CONFIG = "config.json"
METRICS = "metrics.jsonl"
CHECKPOINTS = "checkpoints.jsonl"
STATUS = "status.json"
# A run without status.json (written before it existed, or by another tool) counts as running
# while its metrics grew this recently.
QUIET_S = 120.0


@dataclass(frozen=True)
class RunStatus:
    """Where a run stands: running, finished, failed or stopped (SIGTERM, or its process
    ended without a word), with the error that ended it and when it was last written."""

    status: str
    error: str | None = None
    updated: float | None = None


@dataclass(frozen=True)
class RunDir:
    path: Path

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG

    @property
    def metrics_path(self) -> Path:
        return self.path / METRICS

    @property
    def checkpoints_path(self) -> Path:
        return self.path / CHECKPOINTS

    @property
    def final_path(self) -> Path:
        return self.path / "final"

    def checkpoint_dir(self, name: str) -> Path:
        return self.path / "checkpoints" / name

    def write_config(self, record: dict[str, Any]) -> None:
        write_json(self.config_path, record)

    def log(self, row: dict[str, Any]) -> None:
        append_jsonl(self.metrics_path, row)

    def metrics(self) -> list[dict[str, Any]]:
        return read_jsonl(self.metrics_path)

    def mark(self, status: str, error: str | None = None) -> None:
        """Record that the run is ``status`` now, by this process on this host."""
        write_json(self.path / STATUS, {"status": status, "error": error, "pid": os.getpid(),
                                        "host": socket.gethostname(), "updated": time.time()})

    def status(self) -> RunStatus:
        """The run's status. A run marked running whose process on this host is gone was
        killed (SIGKILL, out of memory, power): it is stopped, and resumable. Runs without
        status.json: finished with final/, running while metrics grow, else stopped."""
        record = read_json(self.path / STATUS)
        if isinstance(record, dict) and record.get("status") in RUN_STATUSES:
            updated = record.get("updated")
            if (record["status"] == "running" and record.get("host") == socket.gethostname()
                    and not _alive(record.get("pid"))):
                return RunStatus("stopped", "the process training it ended without a word "
                                 "(killed, or out of memory)", updated)
            return RunStatus(record["status"], record.get("error"), updated)
        if self.final_path.exists():
            return RunStatus("finished")
        try:
            updated = self.metrics_path.stat().st_mtime
        except OSError:
            return RunStatus("stopped")
        return RunStatus("running" if time.time() - updated < QUIET_S else "stopped",
                         updated=updated)

    def model_dir(self, checkpoint: str | None = None, name: str | None = None) -> Path:
        """The model the run stands for: final/, or a checkpoint from ``checkpoints.jsonl`` (by
        name, or "latest"; the newest one when the run has no final model yet). ``name`` is the
        run as the user wrote it, for messages."""
        name = name or str(self.path)
        if checkpoint is None and self.final_path.exists():
            return self.final_path
        rows = self.checkpoints()
        if not rows:
            raise MissingError(f"{name} has no final model and no checkpoint yet",
                               [f"resume it: preftune train --resume {name}"])
        if checkpoint in (None, "latest"):
            row = rows[-1]
        else:
            named = [r for r in rows if r["name"] == checkpoint]
            if not named:
                raise UsageError(f"{name} has no checkpoint {checkpoint!r}",
                                 ["checkpoints: " + ", ".join(r["name"] for r in rows)])
            row = named[0]
        return self.path / row["model_path"]

    def checkpoints(self) -> list[dict[str, Any]]:
        """Manifest rows whose checkpoint is still on disk, oldest first."""
        return [r for r in read_jsonl(self.checkpoints_path)
                if (self.path / r["state_path"]).exists()]

    def add_checkpoint(self, row: dict[str, Any], keep: int | None) -> None:
        """Record a checkpoint already durable on disk; prune the oldest beyond ``keep``."""
        append_jsonl(self.checkpoints_path, row)
        rows = self.checkpoints()
        if keep is not None and len(rows) > keep:
            for old in rows[:-keep]:
                shutil.rmtree(self.path / old["state_path"], ignore_errors=True)
            write_jsonl(self.checkpoints_path, rows[-keep:])

    def remove_partial_writes(self) -> None:
        """Undo what a crash left half-written, before a resumed run writes anything:
        temporary directories (their names start '.'), and a torn last line of the
        manifests, onto which the resumed run's first row would be glued and lost."""
        for parent in (self.path, self.path / "checkpoints"):
            if parent.is_dir():
                for entry in parent.iterdir():
                    if entry.name.startswith(".") and entry.is_dir():
                        shutil.rmtree(entry, ignore_errors=True)
        for manifest in (self.metrics_path, self.checkpoints_path):
            repair_jsonl(manifest)

    def truncate_metrics(self, step: int) -> None:
        """Forget rows logged after ``step`` (a resumed run logs them again)."""
        rows = self.metrics()
        kept = [r for r in rows if r.get("step", 0) <= step]
        if len(kept) != len(rows):
            write_jsonl(self.metrics_path, kept)


RUN_STATUSES = ("running", "finished", "failed", "stopped")


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_run_dir(path: Path) -> bool:
    """Whether ``path`` is a directory ``preftune train`` wrote."""
    return (path / CONFIG).exists() and (path / METRICS).exists()


def default_run_dir(dataset: str | None, model: str, learning_rate: float, beta: float,
                    exp_name: str | None = None, root: Path = Path("experiments"),
                    today: date | None = None) -> Path:
    """``experiments/<dataset>_<model>_lr<lr>_beta<beta>_<date>`` (``<exp_name>`` instead of
    ``<dataset>`` when given), with a numeric suffix if the name is taken."""
    data = slug(exp_name if exp_name else
                 Path(dataset).stem if dataset and not dataset.startswith("hf:")
                 else (dataset or "data").removeprefix("hf:"))
    name = (f"{data}_{slug(model.rstrip('/').split('/')[-1])}_lr{learning_rate:g}"
            f"_beta{beta:g}_{(today or date.today()).isoformat()}")
    path, n = root / name, 1
    while path.exists():
        n += 1
        path = root / f"{name}_{n}"
    return path


def slug(text: str) -> str:
    """A name safe in a path: letters, digits, dots and dashes, lower case."""
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-").lower() or "run"
