"""``preftune validate`` and ``preftune sample``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from preftune.cli.common import out
from preftune.data.formats import FORMATS, FieldNames
from preftune.data.validate import LengthStats, ValidationReport, sample_hint, validate
from preftune.errors import DataError, UsageError

# kto: unpaired examples, the sample pairs split (the unpaired format).
SAMPLE_FORMATS = ("pairs", "flat", "conversational", "openai", "sharegpt", "implicit", "kto")

FormatOption = Annotated[str | None, typer.Option(
    "--format", "-f", help=f"Force a format: {', '.join(FORMATS)} (default: detect).")]
PromptField = Annotated[str, typer.Option(help="Prompt field of flat data.")]
ChosenField = Annotated[str, typer.Option(help="Chosen field of flat data.")]
RejectedField = Annotated[str, typer.Option(help="Rejected field of flat data.")]
CompletionField = Annotated[str, typer.Option(help="Completion field of unpaired data.")]
LabelField = Annotated[str, typer.Option(help="Label field of unpaired data.")]


def register(app: typer.Typer) -> None:
    app.command("validate")(validate_cmd)
    app.command("sample")(sample_cmd)


def validate_cmd(
    path: Annotated[str, typer.Argument(help="A data file, a save_to_disk directory or "
                                        "hf:NAME[:CONFIG][@SPLIT].")],
    format: FormatOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    tokenizer: Annotated[str | None, typer.Option(
        help="Count tokens with this tokenizer (a local directory or hub id).")] = None,
    prompt_field: PromptField = "prompt",
    chosen_field: ChosenField = "chosen",
    rejected_field: RejectedField = "rejected",
    completion_field: CompletionField = "completion",
    label_field: LabelField = "label",
    max_problems: Annotated[int, typer.Option(min=1, help="Problems to collect before "
                                              "stopping the list.")] = 20,
    strict: Annotated[bool, typer.Option(help="Treat duplicate and identical pairs (duplicate "
                                         "and conflicting examples) as errors.")] = False,
) -> None:
    """Check a preference dataset: format, counts, lengths, duplicates and every problem."""
    tok = None
    if tokenizer is not None:
        from preftune.models.load import load_tokenizer

        tok = load_tokenizer(tokenizer)
    fields = FieldNames(prompt_field, chosen_field, rejected_field, completion_field,
                        label_field)
    report, _ = validate(path, format, fields, tok, max_problems)
    if as_json:
        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        _print_report(report)
    if not report.valid:
        if as_json:
            raise typer.Exit(int(DataError.exit_code))
        noun = "problem" if report.problem_count == 1 else "problems"
        raise DataError(f"{report.source} is not valid: {report.problem_count} {noun} found",
                        [sample_hint(report.format)])
    if strict and (report.duplicate_pairs or report.identical_pairs):
        raise DataError(f"{report.source}: {report.duplicate_pairs} duplicate and "
                        f"{report.identical_pairs} identical pairs (--strict)",
                        ["remove them, or validate without --strict"])
    if strict and (report.duplicate_examples or report.conflicting_examples):
        raise DataError(f"{report.source}: {report.duplicate_examples} duplicate and "
                        f"{report.conflicting_examples} conflicting examples (--strict)",
                        ["remove them, or validate without --strict"])


def _print_report(report: ValidationReport) -> None:
    if report.format is not None:
        mode = "conversational" if report.conversational else "text"
        kind = f"{report.format} ({mode})" if report.valid else report.format
        out.print(f"[bold]{escape(report.source)}[/]: {kind} format, "
                  f"{_count(report.records, 'record')}"
                  + (f", {_rows(report)}" if report.valid else ""))
    else:
        out.print(f"[bold]{escape(report.source)}[/]: {_count(report.records, 'record')}")
    if not report.valid:
        out.print(f"[red]problems[/] ({report.problem_count}):")
        for problem in report.problems:
            out.print(f"  {escape(str(problem))}")
        more = report.problem_count - len(report.problems)
        if more > 0:
            out.print(f"  ... and {more} more")
        return
    if report.kind == "unpaired":
        out.print(f"  duplicate examples: {report.duplicate_examples}")
        out.print(f"  conflicting labels: {report.conflicting_examples}")
    else:
        out.print(f"  duplicate pairs: {report.duplicate_pairs}")
        out.print(f"  identical chosen/rejected: {report.identical_pairs}")
    if report.metadata_columns:
        out.print(f"  other columns: {', '.join(report.metadata_columns)}")
    _print_lengths("characters", report.chars)
    if report.tokens is not None:
        _print_lengths("tokens", report.tokens)
    for warning in report.warnings:
        out.print(f"[yellow]warning:[/] {escape(str(warning))}")
    out.print("[green]valid[/]")


def _rows(report: ValidationReport) -> str:
    """``12 pairs``, or ``10 examples (6 desirable, 4 undesirable)``."""
    if report.kind != "unpaired":
        return _count(report.pairs, "pair")
    return (f"{_count(report.examples, 'example')} ({report.desirable:,} desirable, "
            f"{report.undesirable:,} undesirable)")


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _print_lengths(unit: str, stats: dict[str, LengthStats]) -> None:
    table = Table(title=f"length ({unit})", title_justify="left", box=None, pad_edge=False)
    table.add_column("field")
    for name in ("min", "mean", "median", "p95", "max"):
        table.add_column(name, justify="right")
    for name, s in stats.items():
        table.add_row(name, str(s.min), f"{s.mean:g}", f"{s.median:g}", f"{s.p95:g}",
                      str(s.max))
    out.print(table)


def sample_cmd(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (.json, "
                                         ".jsonl, .parquet or .csv).")],
    num_samples: Annotated[int, typer.Option(min=1, help="Records to write.")] = 10,
    format: Annotated[str, typer.Option("--format", "-f",
                                        help=f"One of {', '.join(SAMPLE_FORMATS)}.")] = "pairs",
    seed: Annotated[int, typer.Option(help="Same seed, same data.")] = 0,
) -> None:
    """Write a valid, varied sample dataset: the shape preftune expects, ready to train on.

    ``kto`` writes unpaired examples (prompt, completion, label): sample pairs split into a
    desirable and an undesirable example each, shuffled with the seed."""
    from preftune.data.sample import iter_samples
    from preftune.data.writers import (
        dataset_from_samples,
        unpaired_from_samples,
        unpaired_records,
        write_dataset,
        write_records,
    )

    if format not in SAMPLE_FORMATS:
        raise UsageError(f"unknown sample format {format!r}",
                         [f"choose one of: {', '.join(SAMPLE_FORMATS)}"])
    if format == "kto":
        examples = unpaired_from_samples(iter_samples((num_samples + 1) // 2, seed),
                                         num_samples, seed)
        written = write_records(unpaired_records(examples), output)
        out.print(f"wrote {written} records ({examples.desirable} desirable and "
                  f"{examples.undesirable} undesirable examples, unpaired format) to "
                  f"{escape(str(output))}")
        out.print(f"next: preftune validate {escape(str(output))}")
        return
    dataset = dataset_from_samples(iter_samples(num_samples, seed), all_pairs=format == "pairs")
    written = write_dataset(dataset, output, format)
    out.print(f"wrote {written} records ({len(dataset)} pairs, {format} format) to "
              f"{escape(str(output))}")
    out.print(f"next: preftune validate {escape(str(output))}")
