"""``preftune compare``: runs side by side, the best picked by one metric, and an HTML report."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from preftune.cli.common import out


def register(app: typer.Typer) -> None:
    app.command("compare")(compare_cmd)


def compare_cmd(
    paths: Annotated[list[Path], typer.Argument(
        metavar="RUN_DIR... | SWEEP_DIR",
        help="Run directories, or one sweep directory (its runs that have logged metrics).")],
    metric: Annotated[str, typer.Option(
        "--metric", help="What ranks the runs: its final value, e.g. eval/accuracy, eval/loss, "
        "loss.")] = "eval/accuracy",
    maximize: Annotated[bool | None, typer.Option(
        "--maximize/--minimize", help="Whether higher is better; default: lower for losses, "
        "higher for anything else.", show_default=False)] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Where to write the charts and report.html; default "
        "SWEEP_DIR/compare for a sweep, ./compare-<YYYYmmdd-HHMMSS> for run directories.",
        show_default=False)] = None,
    smoothing: Annotated[float, typer.Option(
        "--smoothing", help="EMA weight in [0, 1) for the train curves; 0 draws them raw.")]
    = 0.0,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the comparison, and the files written, as JSON.")] = False,
) -> None:
    """Compare runs: the hyperparameters that differ, final and best eval scores, wall time,
    throughput and diagnosis, then which run is best by --metric and by how much.

    Writes overlay charts and a self-contained report.html (charts embedded) to --output.
    """
    from preftune.runs.compare import (  # matplotlib loads only when comparing
        best_sentence,
        compare_runs,
        is_sweep_dir,
        table_rows,
        write_report,
    )

    comparison = compare_runs(paths, metric, maximize)
    if output is None:
        sweep = len(paths) == 1 and is_sweep_dir(paths[0])
        output = (paths[0] / "compare" if sweep
                  else Path(f"compare-{datetime.now():%Y%m%d-%H%M%S}"))
    files = write_report(comparison, output, smoothing)
    if as_json:
        print(json.dumps({**comparison.to_dict(), "files": {k: str(p) for k, p in files.items()}},
                         indent=2, ensure_ascii=False))
        return
    header, rows = table_rows(comparison)
    table = Table(*(escape(h) for h in header))
    for run, cells in zip(comparison.runs, rows, strict=True):
        table.add_row(*(escape(c) for c in cells),
                      style="bold green" if run is comparison.best else None)
    out.print(table)
    out.print(escape(best_sentence(comparison)))
    for path in files.values():
        print(path)
