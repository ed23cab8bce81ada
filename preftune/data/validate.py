"""Check a dataset and describe it: problems, duplicates, identical pairs, length statistics.

``validate`` is what ``preftune validate`` prints; ``load_preferences`` is what training and
the job service call: it returns the dataset or raises ``DataError`` listing every problem,
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

from preftune.data.formats import FieldNames
from preftune.data.reader import read_in_memory, read_preferences
from preftune.data.records import PreferenceDataset, Problem
from preftune.errors import DataError

TEXT_FIELDS = ("prompt", "chosen", "rejected")
_EXAMPLES = 5  # how many duplicate / identical pairs a report shows by location
SAMPLE_HINT = "see the expected shape with: preftune sample --output example.json --num-samples 3"


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
             fields: FieldNames | None = None, tokenizer: Any = None,
             max_problems: int = 20) -> tuple[ValidationReport, PreferenceDataset | None]:
    """Read and check ``source``; the dataset is returned only when it has no problems."""
    result = read_preferences(source, format, fields, max_problems)
    dataset = result.dataset
    report = ValidationReport(
        source=result.source, format=result.format, records=result.num_records,
        pairs=len(dataset) if dataset is not None else 0,
        conversational=dataset.conversational if dataset is not None else None,
        problems=result.problems, problem_count=result.problem_count,
    )
    if dataset is None:
        return report, None
    report.metadata_columns = dataset.metadata_columns
    duplicates, report.duplicate_pairs = _duplicates(dataset)
    identical, report.identical_pairs = _identical(dataset)
    report.warnings = duplicates + identical
    report.chars = {name: _stats(_char_lengths(dataset.table[name])) for name in TEXT_FIELDS}
    if tokenizer is not None:
        report.tokens = token_stats(dataset, tokenizer)
    return report, dataset


def load_preferences(source: Any, format: str | None = None,
                     fields: FieldNames | None = None) -> PreferenceDataset:
    """Read a dataset for training; raise ``DataError`` naming every problem if it is invalid.

    ``source`` is a path or ``hf:`` spec, a list of record dicts, a ``datasets.Dataset``, or
    a ``PreferenceDataset`` (returned as it is).
    """
    if isinstance(source, PreferenceDataset):
        return source
    if isinstance(source, str | os.PathLike):
        result = read_preferences(source, format, fields)
    else:
        result = read_in_memory(source, format, fields)
    if result.dataset is None:
        raise data_error(result.source, result.problems, result.problem_count)
    return result.dataset


def data_error(source: str, problems: list[Problem], count: int) -> DataError:
    more = count - len(problems)
    details = [str(p) for p in problems] + ([f"... and {more} more"] if more > 0 else [])
    noun = "problem" if count == 1 else "problems"
    return DataError(f"{source}: {count} {noun} found", [SAMPLE_HINT], details)


# ------------------------------------------------------------------------------- pair checks


def _row_keys(dataset: PreferenceDataset) -> pa.Table:
    """A table whose rows compare equal exactly when the pairs do (texts, or message digests)."""
    table = dataset.table
    if not dataset.conversational:
        return table.select(list(TEXT_FIELDS))
    digests: dict[str, list[str]] = {name: [] for name in TEXT_FIELDS}
    for batch in table.select(list(TEXT_FIELDS)).to_batches(max_chunksize=8192):
        for name in TEXT_FIELDS:
            digests[name].extend(
                hashlib.blake2b(json.dumps(v, ensure_ascii=False).encode(), digest_size=16)
                .hexdigest() for v in batch.column(name).to_pylist())
    return pa.table(digests)


def _duplicates(dataset: PreferenceDataset) -> tuple[list[Problem], int]:
    """Count pairs that repeat an earlier pair, and locate the first few repeats."""
    keys = _row_keys(dataset)
    keys = keys.append_column("row", pa.array(range(keys.num_rows), type=pa.int64()))
    groups = keys.group_by(list(TEXT_FIELDS), use_threads=False).aggregate(
        [("row", "count"), ("row", "list")])
    repeated = groups.filter(pc.greater(groups["row_count"], 1))
    total = pc.sum(pc.subtract(repeated["row_count"], 1)).as_py() or 0
    repeats = sorted((row, rows[0]) for rows in map(sorted, repeated["row_list"].to_pylist())
                     for row in rows[1:])
    table = dataset.table
    examples = [
        Problem(f"duplicate pair: same prompt, chosen and rejected as record "
                f"{table['record'][first].as_py()}", file=dataset.source,
                record=table["record"][row].as_py(), line=table["line"][row].as_py())
        for row, first in repeats[:_EXAMPLES]
    ]
    return examples, int(total)


def _identical(dataset: PreferenceDataset) -> tuple[list[Problem], int]:
    keys = _row_keys(dataset)
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


def token_stats(dataset: PreferenceDataset, tokenizer: Any) -> dict[str, LengthStats]:
    """Token counts per field; conversational prompts through the tokenizer's chat template."""
    lengths: dict[str, list[int]] = {name: [] for name in TEXT_FIELDS}
    use_template = dataset.conversational and getattr(tokenizer, "chat_template", None)
    for batch in dataset.table.select(list(TEXT_FIELDS)).to_batches(max_chunksize=2048):
        for name in TEXT_FIELDS:
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
