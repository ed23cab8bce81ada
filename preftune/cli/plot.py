"""``preftune plot``: PNG training curves of one run, or of several runs overlaid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from preftune.cli.common import err
from preftune.errors import UsageError


def register(app: typer.Typer) -> None:
    app.command("plot")(plot_cmd)


def plot_cmd(
    run_dirs: Annotated[list[Path], typer.Argument(
        metavar="RUN_DIR", help="Run directories (each holds metrics.jsonl).")],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where to write the PNGs; default RUN_DIR/plots for one run, "
        "required for several.")] = None,
    smoothing: Annotated[float, typer.Option(
        "--smoothing", help="EMA weight in [0, 1) for the train curves, like TensorBoard's "
        "slider; 0 draws them raw.")] = 0.0,
) -> None:
    """Chart loss, accuracy, margin, rewards and learning rate against the optimizer step.

    One run: charts in RUN_DIR/plots. Several: every run on the same charts, in --output.
    """
    from preftune.runs.plots import plot_run, plot_runs  # matplotlib loads only when plotting

    if len(run_dirs) == 1:
        written = plot_run(run_dirs[0], output, smoothing)
    elif output is None:
        raise UsageError(f"{len(run_dirs)} runs to overlay, but no --output directory",
                         ["add --output DIR, e.g. --output plots/compare"])
    else:
        written = plot_runs(run_dirs, output, smoothing)
    if not written:
        err.print("nothing to plot yet: no metrics have been logged")
    for path in written:
        print(path)
