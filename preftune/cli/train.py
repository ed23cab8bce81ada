"""``preftune train``: flags, YAML and key=value into one TrainConfig, then the loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from preftune import settings
from preftune.cli.common import out, warn_lone_accelerate_process
from preftune.cli.options import config_flags
from preftune.config import TrainConfig, as_overrides, parse_overrides, read_yaml
from preftune.engine.report import Reporter, RunResult


def register(app: typer.Typer) -> None:
    app.command("train", context_settings={"allow_interspersed_args": True})(train_cmd)


@config_flags(TrainConfig)
def train_cmd(
    overrides: Annotated[list[str] | None, typer.Argument(
        help="More options as key=value (any TrainConfig field or alias).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c",
                                                help="A YAML file of options.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run in this directory "
                                                "from its last checkpoint.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Validate data, tokenize, read the model's "
                                          "config and estimate memory; do not train.")]
    = False,
    flags: dict[str, Any] | None = None,
) -> None:
    """Train a model on preference data (DPO and TRL's DPO loss family, SimPO, ORPO, KTO,
    SFT: preftune algorithms); every option is a flag, a key=value or a line of --config."""
    from preftune.engine.loop import train
    from preftune.runs.artifacts import RunArtifacts

    worker = settings.worker_pid()
    if worker is not None:
        from preftune.engine.stop import watch_worker

        watch_worker(worker)
    warn_lone_accelerate_process()
    if resume is not None:
        train(None, resume=resume, reporter=ConsoleReporter(), hooks=RunArtifacts())
        return
    cfg = TrainConfig.build(gather_values(read_yaml(config) if config else {}, flags,
                                          overrides))
    if dry_run:
        from preftune.engine.dryrun import dry_run as plan

        print(json.dumps(plan(cfg), indent=2))
        return
    train(cfg, reporter=ConsoleReporter(), hooks=RunArtifacts())


def gather_values(file_values: dict[str, Any], flags: dict[str, Any] | None,
                  overrides: list[str] | None) -> dict[str, Any]:
    """Options in order of precedence: the config file, then flags given, then key=value;
    flags and key=value through the same parser."""
    values = dict(file_values)
    values.update(parse_overrides(as_overrides(flags or {})))
    values.update(parse_overrides(overrides or []))
    return values


class ConsoleReporter(Reporter):
    """Progress bar with loss, accuracy and tokens/s; a summary at the end."""

    def __init__(self) -> None:
        self.progress: Progress | None = None
        self.task: Any = None

    def data(self, data: Any) -> None:
        from preftune.engine.data import describe_stats

        out.print(f"data: {escape(data.source)}: {describe_stats(data.train.stats)}")
        if data.eval is not None:
            out.print(f"eval: {describe_stats(data.eval.stats)}")

    def reference(self, pairs: int, cached: bool) -> None:
        what = "cache hit" if cached else "computing once"
        out.print(f"reference log-probs for {pairs} pairs: {what}")

    def start(self, total_steps: int, done_steps: int) -> None:
        self.progress = Progress(
            TextColumn("step {task.completed}/{task.total}"), BarColumn(),
            TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
            console=out, disable=not out.is_terminal, transient=True)
        self.task = self.progress.add_task("train", total=total_steps, completed=done_steps,
                                           status="")
        self.progress.start()
        if done_steps:
            out.print(f"resuming at step {done_steps} of {total_steps}")

    def step(self, row: dict[str, float]) -> None:
        status = (f"loss {row['loss']:.4f}  acc {row['accuracy']:.2f}  "
                  f"{row['tokens_per_second']:,.0f} tok/s")
        if self.progress is not None and out.is_terminal:
            self.progress.update(self.task, completed=row["step"], status=status)
        else:
            out.print(f"step {int(row['step'])}: {status}")

    def evaluation(self, row: dict[str, float]) -> None:
        out.print(f"eval at step {int(row['step'])}: loss {row['eval/loss']:.4f}, "
                  f"accuracy {row['eval/accuracy']:.2f}, margin {row['eval/margin']:.3f}")

    def warning(self, finding: Any) -> None:
        out.print(f"[bold yellow]warning:[/] {escape(finding.evidence)}")
        for line in finding.advice:
            out.print(f"  [yellow]advice:[/] {escape(line)}")

    def finish(self, result: RunResult) -> None:
        if self.progress is not None:
            self.progress.stop()
        first, last = result.first_metrics, result.metrics
        table = Table(title=f"done: {result.steps} steps in {result.seconds:.0f} s",
                      title_justify="left", box=None, pad_edge=False)
        for name in ("", "first", "last"):
            table.add_column(name, justify="right" if name else "left")
        for key in ("loss", "accuracy", "margin", "chosen_reward", "rejected_reward"):
            if key in first and key in last:
                table.add_row(key, f"{first[key]:.4f}", f"{last[key]:.4f}")
        for key in ("eval/loss", "eval/accuracy", "eval/margin"):
            if key in last:
                table.add_row(key, "", f"{last[key]:.4f}")
        out.print(table)
        if result.diagnosis is not None:
            verdict, summary = result.diagnosis["verdict"], result.diagnosis["summary"]
            line = summary if summary.startswith(verdict) else f"{verdict}: {summary}"
            out.print(f"diagnosis: {escape(line)}")
        if result.phases:
            out.print("time by phase: " + ", ".join(f"{name} {seconds:.1f} s"
                                                    for name, seconds in result.phases.items()))
        out.print(f"run directory: {escape(str(result.run_dir))}")
        out.print(f"final model: {escape(str(result.run_dir / 'final'))}")
