"""Sweeps: a grid of options expanded into runs under one directory, run one after another.

    SWEEP/sweep.json        name, base options, grid, and one row per run: name, path, params,
                            status (pending | running | done | failed), error
    SWEEP/runs/<name>/      an ordinary run directory per grid point

The grid is a product over any ``TrainConfig`` options: ``beta=0.05,0.1,0.2`` ×
``learning_rate=1e-5,5e-5``, or ``dataset`` × ``model`` for a matrix of datasets and models.
Running a sweep again skips finished runs and resumes an interrupted one from its last
checkpoint. Runs that share model, data and tokenization share the reference log-prob cache.
"""

from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from preftune.config import TrainConfig, canonical_keys, parse_overrides, read_yaml
from preftune.errors import ConfigError, PreftuneError, UsageError
from preftune.fsutil import write_json
from preftune.rundir import slug

MANIFEST = "sweep.json"
# Short names for run directories; other options use their own name.
_SHORT = {"learning_rate": "lr", "epochs": "ep", "batch_size": "bs", "grad_accum": "ga",
          "warmup_steps": "wu", "label_smoothing": "ls", "lora_rank": "r"}


@dataclass(frozen=True)
class SweepRun:
    name: str
    params: dict[str, Any]


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    """``["beta=0.05,0.1", "model=tiny,gpt2"]`` → ``{"beta": ["0.05", "0.1"], ...}``."""
    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        parsed = parse_overrides([f"{key}=x"]) if sep else {}
        if not sep or not values.strip():
            raise UsageError(f"cannot read --grid {item!r}: expected OPTION=V1,V2,...",
                             ["for example: --grid beta=0.05,0.1,0.2"])
        name = next(iter(parsed))
        if name in grid:
            raise UsageError(f"--grid names {name!r} twice", ["give each option once"])
        grid[name] = [v.strip() for v in values.split(",") if v.strip()]
    return grid


def read_sweep_yaml(path: Path) -> tuple[dict[str, Any], dict[str, list[Any]], str | None]:
    """A sweep file: options as in a training config, plus ``grid:`` lists and ``name:``."""
    values = read_yaml(path)
    grid = values.pop("grid", None) or {}
    name = values.pop("name", None)
    if not isinstance(grid, dict) or not all(isinstance(v, list) and v for v in grid.values()):
        raise ConfigError(f"{path}: 'grid' must map options to non-empty lists",
                          ["grid:\n  beta: [0.05, 0.1, 0.2]"])
    return values, canonical_keys(grid), name


def absolute_paths(values: dict[str, Any]) -> dict[str, Any]:
    """Data paths made absolute, so a sweep resumes from any working directory."""
    def fix(value: Any) -> Any:
        return str(Path(value).resolve()) if isinstance(value, str) and Path(value).exists() \
            else value

    out = dict(values)
    for key in ("dataset", "eval_dataset"):
        if key in out:
            out[key] = [fix(v) for v in out[key]] if isinstance(out[key], list) else fix(out[key])
    return out


def expand(base: dict[str, Any], grid: dict[str, list[Any]]) -> list[SweepRun]:
    """Every grid point, each validated as a full config before anything runs."""
    if not grid:
        raise UsageError("a sweep needs a grid", ["for example: --grid beta=0.05,0.1,0.2"])
    keys = list(grid)
    runs: list[SweepRun] = []
    names: set[str] = set()
    for values in itertools.product(*(grid[k] for k in keys)):
        params = dict(zip(keys, values, strict=True))
        TrainConfig.build({**base, **params})  # a bad value fails before the first run
        name = "_".join(f"{_SHORT.get(k, k)}{_value_slug(v)}" for k, v in params.items())
        while name in names:
            name += "_"
        names.add(name)
        runs.append(SweepRun(name, params))
    return runs


def _value_slug(value: Any) -> str:
    if isinstance(value, list):  # a mixture's parts: algo=[dpo, sft]
        return slug("+".join(str(v) for v in value))
    text = str(value)
    if "/" in text or "." in text and not re.fullmatch(r"[-+0-9.e]+", text):
        text = Path(text.rstrip("/")).stem or text  # a path or hub id: its last part
    return slug(text)


def default_sweep_dir(grid: dict[str, list[Any]], name: str | None,
                      root: Path = Path("experiments")) -> Path:
    label = slug(name) if name else "sweep-" + "-".join(_SHORT.get(k, k) for k in grid)
    path, n = root / f"{label}_{date.today().isoformat()}", 1
    base = path
    while path.exists() and not (path / MANIFEST).exists():
        n += 1
        path = Path(f"{base}_{n}")
    return path


class Sweep:
    """A sweep directory and its manifest."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.manifest_path = path / MANIFEST

    def create(self, name: str, base: dict[str, Any], grid: dict[str, list[Any]],
               runs: list[SweepRun]) -> None:
        """Write the manifest; a sweep that exists must be the same grid (then it continues)."""
        rows = [{"name": r.name, "path": f"runs/{r.name}", "params": r.params,
                 "status": "pending", "error": None} for r in runs]
        if self.manifest_path.exists():
            old = self.manifest()
            if [r["name"] for r in old["runs"]] != [r["name"] for r in rows] or \
                    old["base"] != base:
                raise UsageError(f"{self.path} holds a different sweep",
                                 ["choose another --sweep-dir, or rerun it with the same grid"])
            return
        write_json(self.manifest_path, {"name": name, "base": base, "grid": grid,
                                        "runs": rows})

    def manifest(self) -> dict[str, Any]:
        if not self.manifest_path.exists():
            raise UsageError(f"{self.path} is not a sweep directory: no {MANIFEST}")
        data: dict[str, Any] = json.loads(self.manifest_path.read_text(encoding="utf-8"))
        return data

    def set_status(self, name: str, status: str, error: str | None = None) -> None:
        data = self.manifest()
        for row in data["runs"]:
            if row["name"] == name:
                row["status"], row["error"] = status, error
        write_json(self.manifest_path, data)

    def run_all(self, train: Callable[..., Any],
                announce: Callable[[dict[str, Any], str], None] | None = None) -> dict[str, str]:
        """Run every run that is not done, in order; the final status of each run.

        ``train(cfg_or_None, resume=path_or_None)`` trains one run. A failed run is recorded
        and the sweep goes on to the next.
        """
        data = self.manifest()
        for row in data["runs"]:
            run_dir = self.path / row["path"]
            if row["status"] == "done" and (run_dir / "final").exists():
                if announce:
                    announce(row, "done already: skipped")
                continue
            resume = (run_dir / "config.json").exists()
            if announce:
                announce(row, "resuming" if resume else "starting")
            self.set_status(row["name"], "running")
            try:
                if resume:
                    train(None, resume=run_dir)
                else:
                    cfg = TrainConfig.build({**data["base"], **row["params"],
                                             "output_dir": str(run_dir)})
                    train(cfg)
            except PreftuneError as e:
                self.set_status(row["name"], "failed", e.message)
                continue
            self.set_status(row["name"], "done")
        return {r["name"]: r["status"] for r in self.manifest()["runs"]}
