"""``preftune diagnose``: what went right or wrong in a run, and what to change."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from preftune.cli.common import out
from preftune.runs.diagnose import DIAGNOSIS, Diagnosis, diagnose_run
from preftune.runs.diagnose_rl import diagnose_grpo_run
from preftune.runs.plots import GRPO, run_kind

_SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def register(app: typer.Typer) -> None:
    app.command("diagnose")(diagnose_cmd)


def diagnose_cmd(
    run_dir: Annotated[Path, typer.Argument(metavar="RUN_DIR",
                                            help="A run directory (it holds metrics.jsonl).")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the diagnosis as JSON.")]
    = False,
) -> None:
    """Diagnose a run from its metrics: healthy, diverging, oscillating, plateaued, not
    learning, NaN, overfitting, falling rewards, growing memory or falling throughput, each
    with advice in the run's own hyperparameters. A GRPO run is judged by its own curves:
    reward, KL, clip fraction, entropy. Writes RUN_DIR/diagnosis.json."""
    diagnosis = _diagnose(run_dir)
    if as_json:
        print(json.dumps(diagnosis.to_dict(), indent=2, ensure_ascii=False))
        return
    verdict, summary = diagnosis.verdict, diagnosis.summary
    style = "bold green" if verdict == "healthy" else "bold red"
    out.print(f"[{style}]{escape(verdict)}[/]: {escape(summary.removeprefix(verdict + ': '))}")
    for finding in diagnosis.findings:
        steps = _step_range(finding.steps)
        severity = _SEVERITY_STYLE.get(finding.severity, "bold")
        out.print(f"\n[{severity}]{finding.severity}[/] [bold]{finding.condition}[/]{steps}")
        out.print(f"  {escape(finding.evidence)}")
        for line in finding.advice:
            out.print(f"  - {escape(line)}")
    out.print(f"\nwrote {escape(str(Path(run_dir) / DIAGNOSIS))}")


def _diagnose(run_dir: Path) -> Diagnosis:
    """By config.json's kind: a GRPO run has no preference loss curve to judge."""
    return diagnose_grpo_run(run_dir) if run_kind(run_dir) == GRPO else diagnose_run(run_dir)


def _step_range(steps: tuple[int, int] | None) -> str:
    if steps is None:
        return ""
    first, last = steps
    return f" (step {first})" if first == last else f" (steps {first}-{last})"
