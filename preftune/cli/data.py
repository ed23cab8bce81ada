"""``preftune data split|convert|balance``: dataset-to-dataset commands."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from preftune.cli.common import out
from preftune.cli.dataset import ChosenField, FormatOption, PromptField, RejectedField
from preftune.data.formats import FieldNames
from preftune.data.records import PreferenceDataset
from preftune.data.transforms import NORMALIZERS, balance, normalize, parse_targets, split
from preftune.data.validate import load_preferences
from preftune.data.writers import WRITABLE_FORMATS, write_dataset

app = typer.Typer(help="Split, convert and balance datasets.", no_args_is_help=True)

Source = Annotated[str, typer.Argument(help="A data file, a save_to_disk directory or "
                                       "hf:NAME[:CONFIG][@SPLIT].")]
ToFormat = Annotated[str | None, typer.Option(
    "--to", help=f"Output format: {', '.join(WRITABLE_FORMATS)} (default: the input's).")]
Normalize = Annotated[str | None, typer.Option(
    help=f"Comma-separated text normalisations: {', '.join(NORMALIZERS)}.")]
Seed = Annotated[int, typer.Option(help="Same seed, same result.")]


def _load(path: str, format: str | None, prompt_field: str, chosen_field: str,
          rejected_field: str, normalization: str | None) -> PreferenceDataset:
    dataset = load_preferences(path, format, FieldNames(prompt_field, chosen_field,
                                                        rejected_field))
    kinds = [k.strip() for k in (normalization or "").split(",") if k.strip()]
    return normalize(dataset, kinds)


def _write(dataset: PreferenceDataset, path: Path, to: str | None) -> None:
    format = to or dataset.format
    records = write_dataset(dataset, path, format)
    out.print(f"wrote {len(dataset)} pairs ({records} records, {format}) to "
              f"{escape(str(path))}")


@app.command("split")
def split_cmd(
    path: Source,
    train_output: Annotated[Path, typer.Option(help="Where the training part goes.")],
    eval_output: Annotated[Path, typer.Option(help="Where the evaluation part goes.")],
    eval_fraction: Annotated[float, typer.Option(help="Share of pairs for evaluation.")] = 0.1,
    seed: Seed = 0,
    to: ToFormat = None,
    format: FormatOption = None,
    prompt_field: PromptField = "prompt",
    chosen_field: ChosenField = "chosen",
    rejected_field: RejectedField = "rejected",
    normalize: Normalize = None,
) -> None:
    """Deterministic train/eval split; all pairs of one prompt stay on the same side."""
    dataset = _load(path, format, prompt_field, chosen_field, rejected_field, normalize)
    train, evaluation = split(dataset, eval_fraction, seed)
    _write(train, train_output, to)
    _write(evaluation, eval_output, to)


@app.command("convert")
def convert_cmd(
    path: Source,
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (.json, "
                                         ".jsonl, .parquet or .csv).")],
    to: ToFormat = None,
    format: FormatOption = None,
    prompt_field: PromptField = "prompt",
    chosen_field: ChosenField = "chosen",
    rejected_field: RejectedField = "rejected",
    normalize: Normalize = None,
) -> None:
    """Convert any readable format to any writable one, optionally normalising the text."""
    dataset = _load(path, format, prompt_field, chosen_field, rejected_field, normalize)
    _write(dataset, output, to)


@app.command("balance")
def balance_cmd(
    path: Source,
    by: Annotated[str, typer.Option(help="The category column, e.g. dialect.")],
    target: Annotated[str, typer.Option(help="Target shares, e.g. a=0.3,b=0.7.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    size: Annotated[int | None, typer.Option(min=1, help="Pairs to draw (default: as many "
                                             "as the mode allows).")] = None,
    mode: Annotated[str, typer.Option(help="downsample: never repeat a pair; resample: reach "
                                      "--size, repeating pairs of short categories.")]
    = "downsample",
    seed: Seed = 0,
    to: ToFormat = None,
    format: FormatOption = None,
    prompt_field: PromptField = "prompt",
    chosen_field: ChosenField = "chosen",
    rejected_field: RejectedField = "rejected",
    normalize: Normalize = None,
) -> None:
    """Resample a dataset to a target distribution over a category column."""
    dataset = _load(path, format, prompt_field, chosen_field, rejected_field, normalize)
    targets = parse_targets(target)
    balanced, summary = balance(dataset, by, targets, seed, size, mode)
    total_before = sum(summary.before.values()) or 1
    total_after = sum(summary.after.values()) or 1
    for category in sorted(set(summary.before) | set(summary.after)):
        before = summary.before.get(category, 0)
        after = summary.after.get(category, 0)
        extra = summary.oversampled.get(category)
        note = f" ({extra} repeated)" if extra else ""
        out.print(f"  {escape(category)}: {before} ({before / total_before:.1%}) → {after} "
                  f"({after / total_after:.1%}){note}")
    _write(balanced, output, to)
