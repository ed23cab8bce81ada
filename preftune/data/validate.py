"""Check a dataset and describe it: problems, duplicates, identical pairs, length statistics;
for unpaired examples, desirable and undesirable counts and conflicting labels.

``validate`` is what ``preftune validate`` prints; ``load_preferences`` (pairs),
``load_unpaired`` (examples; pairs are split) and ``load_data`` (either) are what training and
the job service call: they return the dataset or raise ``DataError`` listing every problem,
so bad data never reaches a model.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from preftune.data.formats import FieldNames, format_kind
from preftune.data.reader import ReadResult, read_in_memory, read_preferences
from preftune.data.records import PreferenceDataset, Problem, UnpairedDataset
from preftune.data.transforms import unpair
from preftune.errors import DataError

TEXT_FIELDS = ("prompt", "chosen", "rejected")
UNPAIRED_TEXT_FIELDS = ("prompt", "completion")
_EXAMPLES = 5  # how many duplicate / identical pairs a report shows by location
SAMPLE_HINT = "see the expected shape with: preftune sample --output example.json --num-samples 3"
UNPAIRED_SAMPLE_HINT = ("see the expected shape with: preftune sample --format kto "
                        "--output example.jsonl --num-samples 4")


@dataclass(frozen=True)
class LengthStats:
    min: int
    mean: float
    median: float
    p95: float
    max: int


@dataclass
class ValidationReport:
    source: str
    format: str | None
    records: int
    pairs: int
    conversational: bool | None
    problems: list[Problem]
    problem_count: int
    duplicate_pairs: int = 0
    identical_pairs: int = 0
    warnings: list[Problem] = field(default_factory=list)
    chars: dict[str, LengthStats] = field(default_factory=dict)
    tokens: dict[str, LengthStats] | None = None
    metadata_columns: list[str] = field(default_factory=list)
    # Unpaired data (kind "unpaired"): examples and their labels; pairs stays 0.
    kind: str | None = None  # paired or unpaired, once the format is known
    examples: int = 0
    desirable: int = 0
    undesirable: int = 0
    duplicate_examples: int = 0  # same prompt, completion and label as an earlier example
    conflicting_examples: int = 0  # same prompt and completion as an earlier one, other label

    @property
    def valid(self) -> bool:
        return self.problem_count == 0

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["valid"] = self.valid
        out["problems"] = [p.to_dict() for p in self.problems]
        out["warnings"] = [p.to_dict() for p in self.warnings]
        return out


def validate(source: str | os.PathLike[str], format: str | None = None,
             fields: FieldNames | None = None, tokenizer: Any = None, max_problems: int = 20
             ) -> tuple[ValidationReport, PreferenceDataset | UnpairedDataset | None]:
    """Read and check ``source``; the dataset is returned only when it has no problems."""
    result = read_preferences(source, format, fields, max_problems)
    dataset = result.dataset
    report = ValidationReport(
        source=result.source, format=result.format, records=result.num_records,
        pairs=len(dataset) if isinstance(dataset, PreferenceDataset) else 0,
        conversational=dataset.conversational if dataset is not None else None,
        problems=result.problems, problem_count=result.problem_count,
        kind=format_kind(result.format) if result.format is not None else None,
    )
    if dataset is None:
        return report, None
    report.metadata_columns = dataset.metadata_columns
    fields_checked: tuple[str, ...]
    if isinstance(dataset, UnpairedDataset):
        _check_unpaired(report, dataset)
        fields_checked = UNPAIRED_TEXT_FIELDS
    else:
        duplicates, report.duplicate_pairs = _duplicates(dataset, TEXT_FIELDS, "pair")
        identical, report.identical_pairs = _identical(dataset)
        report.warnings = duplicates + identical
        fields_checked = TEXT_FIELDS
    report.chars = {name: _stats(_char_lengths(dataset.table[name])) for name in fields_checked}
    if tokenizer is not None:
        report.tokens = token_stats(dataset, tokenizer)
    return report, dataset


def load_data(source: Any, format: str | None = None,
              fields: FieldNames | None = None) -> PreferenceDataset | UnpairedDataset:
    """Read a dataset of pairs or of unpaired examples, whichever it holds; raise
    ``DataError`` naming every problem if it is invalid.

    ``source`` is a path or ``hf:`` spec, a list of record dicts, a ``datasets.Dataset``, or
    a ``PreferenceDataset`` or ``UnpairedDataset`` (returned as it is).
    """
    if isinstance(source, PreferenceDataset | UnpairedDataset):
        return source
    result: ReadResult
    if isinstance(source, str | os.PathLike):
        result = read_preferences(source, format, fields)
    else:
        result = read_in_memory(source, format, fields)
    if result.dataset is None:
        raise data_error(result.source, result.problems, result.problem_count,
                         sample_hint(result.format))
    return result.dataset


def load_preferences(source: Any, format: str | None = None,
                     fields: FieldNames | None = None) -> PreferenceDataset:
    """Read preference pairs for training (``load_data``); unpaired examples are a
    ``DataError``."""
    dataset = load_data(source, format, fields)
    if isinstance(dataset, UnpairedDataset):
        raise unpaired_error(dataset)
    return dataset


def load_unpaired(source: Any, format: str | None = None,
                  fields: FieldNames | None = None) -> UnpairedDataset:
    """Read unpaired examples for training (``load_data``); pairs are split into a
    desirable and an undesirable example each (``transforms.unpair``)."""
    dataset = load_data(source, format, fields)
    return dataset if isinstance(dataset, UnpairedDataset) else unpair(dataset)


def unpaired_error(dataset: UnpairedDataset, needed_by: str | None = None) -> DataError:
    """Unpaired examples where pairs are needed (``needed_by``, e.g. ``algo=dpo``)."""
    who = f"{needed_by} trains on" if needed_by else "this needs"
    return DataError(
        f"{dataset.source}: {len(dataset)} unpaired examples (prompt, completion, label), but "
        f"{who} preference pairs (prompt, chosen, rejected)",
        ["train on unpaired examples with algo=kto",
         "or provide pairs: " + SAMPLE_HINT.removeprefix("see the expected shape with: ")])


def sample_hint(fmt: str | None) -> str:
    """The ``preftune sample`` command that shows the shape of data in format ``fmt``."""
    return UNPAIRED_SAMPLE_HINT if fmt is not None and format_kind(fmt) == "unpaired" \
        else SAMPLE_HINT


def data_error(source: str, problems: list[Problem], count: int,
               hint: str = SAMPLE_HINT) -> DataError:
    more = count - len(problems)
    details = [str(p) for p in problems] + ([f"... and {more} more"] if more > 0 else [])
    noun = "problem" if count == 1 else "problems"
    return DataError(f"{source}: {count} {noun} found", [hint], details)


# ------------------------------------------------------------------------------- pair checks


def _row_keys(dataset: PreferenceDataset | UnpairedDataset, names: tuple[str, ...]) -> pa.Table:
    """The columns ``names`` of the dataset, such that rows compare equal exactly when the
    data do (texts and labels, or digests of messages)."""
    table = dataset.table.select(list(names))
    if not dataset.conversational:
        return table
    for i, name in enumerate(names):
        if not pa.types.is_list(table.schema.field(name).type):
            continue
        digests = [hashlib.blake2b(json.dumps(v, ensure_ascii=False).encode(), digest_size=16)
                   .hexdigest() for v in table[name].to_pylist()]
        table = table.set_column(i, name, pa.array(digests, type=pa.string()))
    return table


def _repeats(dataset: PreferenceDataset | UnpairedDataset,
             names: tuple[str, ...]) -> list[list[int]]:
    """Rows that agree on ``names``, as sorted lists of two or more row indices."""
    keys = _row_keys(dataset, names)
    keys = keys.append_column("row", pa.array(range(keys.num_rows), type=pa.int64()))
    groups = keys.group_by(list(names), use_threads=False).aggregate(
        [("row", "count"), ("row", "list")])
    repeated = groups.filter(pc.greater(groups["row_count"], 1))
    return [sorted(rows) for rows in repeated["row_list"].to_pylist()]


def _duplicates(dataset: PreferenceDataset | UnpairedDataset, names: tuple[str, ...],
                noun: str) -> tuple[list[Problem], int]:
    """Count rows that repeat an earlier one on ``names``, and locate the first few repeats."""
    groups = _repeats(dataset, names)
    repeats = sorted((row, rows[0]) for rows in groups for row in rows[1:])
    table = dataset.table
    fields = ", ".join(names[:-1]) + " and " + names[-1]
    examples = [
        Problem(f"duplicate {noun}: same {fields} as record "
                f"{table['record'][first].as_py()}", file=dataset.source,
                record=table["record"][row].as_py(), line=table["line"][row].as_py())
        for row, first in repeats[:_EXAMPLES]
    ]
    return examples, len(repeats)


def _identical(dataset: PreferenceDataset) -> tuple[list[Problem], int]:
    keys = _row_keys(dataset, TEXT_FIELDS)
    same = pc.equal(keys["chosen"], keys["rejected"])
    rows = pc.indices_nonzero(same)
    table = dataset.table
    examples = [
        Problem("identical chosen and rejected: this pair carries no preference signal",
                file=dataset.source, record=table["record"][i].as_py(),
                line=table["line"][i].as_py(), field="chosen")
        for i in rows[:_EXAMPLES].to_pylist()
    ]
    return examples, len(rows)


# --------------------------------------------------------------------------- example checks


def _check_unpaired(report: ValidationReport, dataset: UnpairedDataset) -> None:
    """Counts, duplicates and conflicting labels of unpaired examples, into ``report``."""
    report.examples = len(dataset)
    report.desirable = dataset.desirable
    report.undesirable = dataset.undesirable
    duplicates, report.duplicate_examples = _duplicates(
        dataset, (*UNPAIRED_TEXT_FIELDS, "label"), "example")
    conflicts, report.conflicting_examples = _conflicts(dataset)
    report.warnings = duplicates + conflicts


def _conflicts(dataset: UnpairedDataset) -> tuple[list[Problem], int]:
    """Examples whose prompt and completion came earlier with the other label."""
    table = dataset.table
    labels = table["label"].to_pylist()
    found = sorted((row, rows[0]) for rows in _repeats(dataset, UNPAIRED_TEXT_FIELDS)
                   for row in rows[1:] if labels[row] != labels[rows[0]])
    examples = [
        Problem(f"conflicting labels: same prompt and completion as record "
                f"{table['record'][first].as_py()}, which is labelled "
                f"{str(labels[first]).lower()}", file=dataset.source,
                record=table["record"][row].as_py(), line=table["line"][row].as_py(),
                field="label")
        for row, first in found[:_EXAMPLES]
    ]
    return examples, len(found)


# ---------------------------------------------------------------------------------- lengths


def _char_lengths(column: pa.ChunkedArray) -> pa.Array:
    """Characters per row; for messages, the characters of all their contents."""
    if not pa.types.is_list(column.type):
        return pc.utf8_length(column)
    column = column.combine_chunks()
    contents = pc.list_flatten(column).field("content")
    parents = pc.list_parent_indices(column)
    sums = pa.table({"row": parents, "n": pc.utf8_length(contents)}).group_by(
        "row", use_threads=False).aggregate([("n", "sum")]).sort_by("row")
    return sums["n_sum"]


def _stats(lengths: pa.Array | pa.ChunkedArray) -> LengthStats:
    if len(lengths) == 0:
        return LengthStats(0, 0.0, 0.0, 0.0, 0)
    bounds = pc.min_max(lengths)
    median, p95 = pc.quantile(lengths, q=[0.5, 0.95]).to_pylist()
    return LengthStats(
        min=int(bounds["min"].as_py()), mean=round(float(pc.mean(lengths).as_py()), 1),
        median=float(median), p95=round(float(p95), 1), max=int(bounds["max"].as_py()),
    )


def token_stats(dataset: PreferenceDataset | UnpairedDataset,
                tokenizer: Any) -> dict[str, LengthStats]:
    """Token counts per field; conversational prompts through the tokenizer's chat template."""
    names = UNPAIRED_TEXT_FIELDS if isinstance(dataset, UnpairedDataset) else TEXT_FIELDS
    lengths: dict[str, list[int]] = {name: [] for name in names}
    use_template = dataset.conversational and getattr(tokenizer, "chat_template", None)
    for batch in dataset.table.select(list(names)).to_batches(max_chunksize=2048):
        for name in names:
            values = batch.column(name).to_pylist()
            if name == "prompt" and use_template:
                # Render, then tokenize: with tokenize=True transformers 5 returns a dict.
                values = [tokenizer.apply_chat_template(v, tokenize=False,
                                                        add_generation_prompt=True)
                          for v in values]
            elif dataset.conversational:
                values = ["".join(m["content"] for m in v) for v in values]
            ids = tokenizer(values, add_special_tokens=False)["input_ids"]
            lengths[name].extend(len(x) for x in ids)
    return {name: _stats(pa.array(v, type=pa.int64())) for name, v in lengths.items()}
