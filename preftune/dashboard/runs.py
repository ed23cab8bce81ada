"""The runs a dashboard shows: found under its directories, summarised for the list, read in
full for a run's page.

A run's id is its path relative to the directory it was found under (with that directory's
name in front when the dashboard watches several), so URLs stay readable and a request can only
name a run the scan found: ids are looked up, never joined onto a path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preftune.errors import UsageError
from preftune.fsutil import read_json, read_jsonl
from preftune.models.export import model_card
from preftune.rundir import CONFIG, METRICS, STATUS, RunDir
from preftune.runs.compare import DIAGNOSIS, is_sweep_dir
from preftune.runs.diagnose import diagnose_run
from preftune.runs.diagnose_rl import diagnose_grpo_run
from preftune.runs.sweep import MANIFEST

# How deep under a watched directory runs are looked for: experiments/<sweep>/runs/<run> is 3.
MAX_DEPTH = 4
# The hyperparameters the runs list shows (when the run's config has them).
KEY_PARAMS = ("learning_rate", "beta", "epochs", "batch_size", "grad_accum", "lora_rank",
              "max_length", "preset", "group_size", "training_steps")
# The last values the runs list shows, by the first name a run logged.
LAST_METRICS = (("loss", ("loss",)), ("accuracy", ("accuracy",)),
                ("margin", ("margin",)), ("eval/loss", ("eval/loss",)),
                ("eval/accuracy", ("eval/accuracy",)), ("reward", ("mean_reward",)))


@dataclass(frozen=True)
class Found:
    id: str
    path: Path
    sweep: str | None  # the sweep directory's id, for runs a sweep made


def scan(roots: Sequence[Path]) -> dict[str, Found]:
    """Every run under ``roots`` by id, sweeps' runs marked with their sweep."""
    found: dict[str, Found] = {}
    several = len(roots) > 1
    for root in roots:
        prefix = f"{root.resolve().name}/" if several else ""
        if _is_run(root):
            found[prefix + root.resolve().name] = Found(prefix + root.resolve().name, root, None)
            continue
        for path, sweep in _walk(root, root, None, 0):
            rel = path.relative_to(root).as_posix()
            found[prefix + rel] = Found(
                prefix + rel, path,
                None if sweep is None else prefix + sweep.relative_to(root).as_posix())
    return found


def _is_run(path: Path) -> bool:
    """A directory training writes: config.json, and metrics or a status once it started."""
    return (path / CONFIG).is_file() and ((path / METRICS).exists() or (path / STATUS).exists())


def _walk(root: Path, path: Path, sweep: Path | None, depth: int
          ) -> Iterator[tuple[Path, Path | None]]:
    try:
        entries = sorted(e for e in path.iterdir() if e.is_dir() and not e.name.startswith("."))
    except OSError:
        return
    for entry in entries:
        if _is_run(entry):
            yield entry, sweep
        elif depth + 1 < MAX_DEPTH and entry.name not in ("checkpoints", "final"):
            inner = entry if sweep is None and is_sweep_dir(entry) else sweep
            yield from _walk(root, entry, inner, depth + 1)


def config_record(path: Path) -> dict[str, Any]:
    record = read_json(path / CONFIG)
    return record if isinstance(record, dict) else {}


def summary(found: Found) -> dict[str, Any]:
    """One row of the runs list."""
    run = RunDir(found.path)
    record = config_record(found.path)
    config = record.get("config")
    if not isinstance(config, dict):
        config = {}
    status = run.status()
    rows = read_jsonl(run.metrics_path)
    train = [r for r in rows if not any(k.startswith("eval/") for k in r)]
    last: dict[str, float] = {}
    for label, names in LAST_METRICS:
        for row in reversed(rows):
            value = next((row[n] for n in names if isinstance(row.get(n), int | float)), None)
            if value is not None:
                last[label] = value
                break
    diagnosis = _verdict(found.path, status.status, record.get("kind"))
    return {
        "id": found.id, "name": found.path.name, "sweep": found.sweep,
        "status": status.status, "error": status.error,
        "kind": record.get("kind") or "preference",
        "algo": config.get("algo_label") or _algo(config, record),
        "model": config.get("model") or config.get("model_name"),
        "dataset": config.get("dataset"),
        "params": {k: config[k] for k in KEY_PARAMS if config.get(k) is not None},
        "step": max((r.get("step", 0) for r in rows if isinstance(r.get("step"), int)),
                    default=0),
        "epoch": next((r["epoch"] for r in reversed(train) if "epoch" in r), None),
        "last": last,
        "verdict": diagnosis.get("verdict") if diagnosis else None,
        "summary": diagnosis.get("summary") if diagnosis else None,
        "created": record.get("created"),
        "updated": _mtime(run.metrics_path) or status.updated,
    }


def _algo(config: dict[str, Any], record: dict[str, Any]) -> str | None:
    if record.get("kind") == "grpo":
        return "grpo"
    algo = config.get("algo")
    if isinstance(algo, list):
        return "+".join(str(a) for a in algo)
    return str(algo) if algo is not None else None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


# Diagnoses of runs still writing metrics, by (path, metrics size): recomputed when they grow.
_LIVE: dict[Path, tuple[int, dict[str, Any] | None]] = {}


def _verdict(path: Path, status: str, kind: str | None) -> dict[str, Any] | None:
    """diagnosis.json of a finished run; a running (or interrupted) run's diagnosis so far,
    computed from its metrics (by GRPO's rules for a GRPO run) and never written."""
    written = read_json(path / DIAGNOSIS)
    if isinstance(written, dict) and status != "running":
        return written
    size = os.path.getsize(path / METRICS) if (path / METRICS).exists() else 0
    cached = _LIVE.get(path)
    if cached is not None and cached[0] == size:
        return cached[1]
    try:
        diagnose = diagnose_grpo_run if kind == "grpo" else diagnose_run
        result: dict[str, Any] | None = diagnose(path, write=False).to_dict()
    except (UsageError, ValueError, KeyError, TypeError):
        result = written if isinstance(written, dict) else None
    _LIVE[path] = (size, result)
    return result


def details(found: Found) -> dict[str, Any]:
    """Everything a run's page shows but its curves: summary, diagnosis with advice, config,
    checkpoints, the sweep it belongs to, and its model card."""
    run = RunDir(found.path)
    record = config_record(found.path)
    out = summary(found)
    out["diagnosis"] = _verdict(found.path, out["status"], record.get("kind"))
    out["config"] = record
    out["checkpoints"] = read_jsonl(run.checkpoints_path)
    out["has_final"] = run.final_path.is_dir()
    out["card"] = _card(run, record) if out["has_final"] else None
    return out


def _card(run: RunDir, record: dict[str, Any]) -> str | None:
    """The model card ``preftune export`` would write for the run."""
    config = record.get("config")
    if not isinstance(config, dict) or "model" not in config:
        return None
    try:
        return model_card(record, run.metrics(), "adapter" if config.get("lora") else "full",
                          run.path.name)
    except (KeyError, TypeError, ValueError):
        return None


def metrics_since(found: Found, offset: int) -> dict[str, Any]:
    """Rows of metrics.jsonl from row ``offset`` on. A resumed run rewrites the file shorter;
    then ``reset`` is true and every row is sent again."""
    rows = read_jsonl(RunDir(found.path).metrics_path)
    reset = offset > len(rows)
    start = 0 if reset else offset
    return {"rows": rows[start:], "next": len(rows), "reset": reset,
            "status": RunDir(found.path).status().status}


def sweep_manifest(path: Path) -> dict[str, Any] | None:
    manifest = read_json(path / MANIFEST)
    return manifest if isinstance(manifest, dict) else None


def dumps(value: Any) -> str:
    return json.dumps(value, default=str)
