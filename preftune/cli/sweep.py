"""``preftune sweep``: a grid of training runs under one directory, resumable."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape

from preftune.cli.common import out
from preftune.cli.options import config_flags
from preftune.cli.train import ConsoleReporter, gather_values
from preftune.config import TrainConfig


def register(app: typer.Typer) -> None:
    app.command("sweep")(sweep_cmd)


@config_flags(TrainConfig, skip=("output_dir",))
def sweep_cmd(
    overrides: Annotated[list[str] | None, typer.Argument(
        help="Options shared by every run, as key=value.")] = None,
    grid: Annotated[list[str] | None, typer.Option(
        help="OPTION=V1,V2,... (repeatable): the runs are every combination.")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="A YAML file of "
                                                "options, with grid: lists and a name:.")] = None,
    sweep_dir: Annotated[Path | None, typer.Option(help="The sweep directory (default: "
                                                   "experiments/<name>_<date>).")] = None,
    name: Annotated[str | None, typer.Option(help="A name for the sweep.")] = None,
    flags: dict[str, Any] | None = None,
) -> None:
    """Train every combination of a grid, one run after another; rerun to resume."""
    from preftune.engine.loop import train
    from preftune.runs.artifacts import RunArtifacts
    from preftune.runs.sweep import (
        Sweep,
        absolute_paths,
        default_sweep_dir,
        expand,
        parse_grid,
        read_sweep_yaml,
    )

    file_values: dict[str, Any] = {}
    axes: dict[str, list[Any]] = {}
    if config is not None:
        file_values, axes, file_name = read_sweep_yaml(config)
        name = name or file_name
    axes.update(parse_grid(grid or []))
    base = absolute_paths(gather_values(file_values, flags, overrides))
    base.pop("output_dir", None)  # every run has its own, inside the sweep
    axes = absolute_paths(axes)
    runs = expand(base, axes)
    path = sweep_dir or default_sweep_dir(axes, name)
    sweep = Sweep(path)
    sweep.create(name or path.name, base, axes, runs)
    out.print(f"sweep {escape(str(path))}: {len(runs)} runs over "
              f"{' × '.join(f'{k} ({len(v)})' for k, v in axes.items())}")

    def announce(row: dict[str, Any], what: str) -> None:
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items())
        out.print(f"[bold]{escape(row['name'])}[/] ({escape(params)}): {what}")

    statuses = sweep.run_all(lambda cfg, resume=None: train(cfg, resume=resume,
                                                             reporter=ConsoleReporter(),
                                                             hooks=RunArtifacts()),
                             announce)
    done = sum(1 for s in statuses.values() if s == "done")
    out.print(f"sweep finished: {done} of {len(statuses)} runs done")
    if done:
        _report(path)
    failed = [n for n, s in statuses.items() if s == "failed"]
    if failed:
        from preftune.errors import TrainingError

        raise TrainingError(f"{len(failed)} runs failed: {', '.join(failed)}",
                            [f"see {path / 'sweep.json'}; rerun the same command to retry them"])


def _report(path: Path) -> None:
    """The comparison of the finished runs: the best sentence here, the report in compare/."""
    from preftune.runs.compare import best_sentence, compare_runs, write_report

    comparison = compare_runs([path])
    files = write_report(comparison, path / "compare")
    out.print(best_sentence(comparison))
    out.print(f"report: {escape(str(files['report']))}")
