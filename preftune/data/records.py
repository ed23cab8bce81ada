"""The shapes data takes between reading and tokenizing.

A ``PreferencePair`` is one comparison: a prompt and two responses, the chosen one preferred.
Each of the three is either plain text or a list of chat messages (``{role, content}``).

A ``PreferenceDataset`` holds many pairs as one Arrow table in a canonical schema, so that a
million pairs cost one columnar buffer rather than a million Python objects:

    record   int64    index of the source record the pair came from (a record may give many pairs)
    line     int64    1-based line where that record starts (JSON/JSONL), else null
    prompt   string | list<struct<role, content>>
    chosen   string | list<struct<role, content>>
    rejected string | list<struct<role, content>>
    system   string   (text datasets; a conversational dataset keeps it as the first message)
    sft_target string  the target response for SFT (defaults to chosen downstream)
    ...      any scalar metadata columns of the source (e.g. a category)

An ``UnpairedExample`` is one judged answer, as KTO trains on (TRL's unpaired preference
format): a prompt, a completion and a label, true when the completion is desirable. An
``UnpairedDataset`` holds many in the same way:

    record     int64    index of the source record (a split pair gives two examples)
    line       int64    1-based line where that record starts (JSON/JSONL), else null
    prompt     string | list<struct<role, content>>
    completion string | list<struct<role, content>>
    label      bool     true: desirable, false: undesirable
    system     string   (text datasets; a conversational dataset keeps it as the first message)
    ...        any scalar metadata columns of the source

A ``Problem`` is one thing wrong with a file, located by file, record, line and field.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self, TypedDict

import pyarrow as pa
import pyarrow.compute as pc


class Message(TypedDict):
    role: str
    content: str


Text = str | list[Message]

ROLES = ("system", "user", "assistant", "tool")
CORE_COLUMNS = ("record", "line", "prompt", "chosen", "rejected", "system", "sft_target")
UNPAIRED_COLUMNS = ("record", "line", "prompt", "completion", "label", "system")
MESSAGES_TYPE = pa.list_(pa.struct([("role", pa.string()), ("content", pa.string())]))


def canonical_schema(conversational: bool) -> pa.Schema:
    text = MESSAGES_TYPE if conversational else pa.string()
    return pa.schema([
        ("record", pa.int64()),
        ("line", pa.int64()),
        ("prompt", text),
        ("chosen", text),
        ("rejected", text),
        ("system", pa.string()),
        ("sft_target", pa.string()),
    ])


def unpaired_schema(conversational: bool) -> pa.Schema:
    text = MESSAGES_TYPE if conversational else pa.string()
    return pa.schema([
        ("record", pa.int64()),
        ("line", pa.int64()),
        ("prompt", text),
        ("completion", text),
        ("label", pa.bool_()),
        ("system", pa.string()),
    ])


@dataclass(frozen=True)
class PreferencePair:
    """One comparison: ``chosen`` is preferred over ``rejected`` as an answer to ``prompt``."""

    prompt: Text
    chosen: Text
    rejected: Text
    system: str | None = None
    sft_target: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def conversational(self) -> bool:
        return isinstance(self.prompt, list)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset, located as precisely as the file allows.

    ``str(problem)`` reads like a compiler message: ``data.jsonl:4: record 3: field 'chosen':
    expected text, found a number (42)``.
    """

    message: str
    file: str | None = None
    record: int | None = None
    line: int | None = None
    column: int | None = None
    field: str | None = None
    expected: str | None = None
    found: str | None = None

    def __str__(self) -> str:
        where = self.file or "<data>"
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        if self.record is not None:
            where += f": record {self.record}"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None} | {"text": str(self)}


@dataclass
class ArrowDataset:
    """Rows of one Arrow table in a canonical schema, with where they came from."""

    table: pa.Table
    format: str
    source: str
    num_records: int

    core_columns: ClassVar[tuple[str, ...]] = CORE_COLUMNS

    @property
    def conversational(self) -> bool:
        return pa.types.is_list(self.table.schema.field("prompt").type)

    @property
    def metadata_columns(self) -> list[str]:
        return [n for n in self.table.column_names if n not in self.core_columns]

    def __len__(self) -> int:
        return self.table.num_rows

    def select(self, indices: list[int] | pa.Array) -> Self:
        """A new dataset with the rows at ``indices``, in that order."""
        return type(self)(self.table.take(indices), self.format, self.source, self.num_records)

    def to_hf(self) -> Any:
        """The rows as a ``datasets.Dataset`` (zero-copy over the same Arrow table)."""
        import datasets

        return datasets.Dataset(self.table)


@dataclass
class PreferenceDataset(ArrowDataset):
    """Pairs in the canonical Arrow schema (see the module docstring), with where they came from."""

    def __iter__(self) -> Iterator[PreferencePair]:
        meta = self.metadata_columns
        for batch in self.table.to_batches(max_chunksize=4096):
            for row in batch.to_pylist():
                yield PreferencePair(
                    prompt=row["prompt"], chosen=row["chosen"], rejected=row["rejected"],
                    system=row["system"], sft_target=row["sft_target"],
                    metadata={k: row[k] for k in meta},
                )


@dataclass(frozen=True)
class UnpairedExample:
    """One judged answer: ``completion`` to ``prompt`` is desirable when ``label`` is true."""

    prompt: Text
    completion: Text
    label: bool
    system: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def conversational(self) -> bool:
        return isinstance(self.prompt, list)


@dataclass
class UnpairedDataset(ArrowDataset):
    """Unpaired examples in their Arrow schema (see the module docstring)."""

    core_columns: ClassVar[tuple[str, ...]] = UNPAIRED_COLUMNS

    @property
    def desirable(self) -> int:
        return int(pc.sum(self.table["label"]).as_py() or 0)

    @property
    def undesirable(self) -> int:
        return len(self) - self.desirable

    def __iter__(self) -> Iterator[UnpairedExample]:
        meta = self.metadata_columns
        for batch in self.table.to_batches(max_chunksize=4096):
            for row in batch.to_pylist():
                yield UnpairedExample(
                    prompt=row["prompt"], completion=row["completion"], label=row["label"],
                    system=row["system"], metadata={k: row[k] for k in meta},
                )
