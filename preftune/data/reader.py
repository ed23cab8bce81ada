"""Read a source into a ``PreferenceDataset`` (or an ``UnpairedDataset`` when its records are
unpaired examples), collecting every problem on the way.

Records go through the format's parser one by one (``formats``) and into Arrow in chunks.
A flat text dataset in a columnar container (JSONL, parquet, CSV, a saved dataset) takes a
vectorised path over Arrow instead; whenever that path meets something it cannot vouch for
(a null, a non-string column, bad UTF-8, a line that is not one object) it falls back to the
record path, which produces the exact messages.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from preftune.data.formats import (
    FORMATS,
    PARSERS,
    FieldNames,
    Pair,
    RecordChecker,
    consumed_fields,
    detect_format,
    format_kind,
    is_conversational,
    no_format_problem,
)
from preftune.data.records import (
    CORE_COLUMNS,
    PreferenceDataset,
    Problem,
    UnpairedDataset,
    canonical_schema,
    unpaired_schema,
)
from preftune.data.sources import (
    INVALID,
    RawRecord,
    Source,
    describe,
    iter_records,
    iter_table_records,
    jsonl_line_numbers,
    read_table,
    resolve_source,
)
from preftune.errors import DataError, UsageError

_CHUNK = 65536


@dataclass
class ReadResult:
    """What reading a source produced: the dataset when valid, and every problem found.

    ``dataset`` is an ``UnpairedDataset`` when the format is an unpaired one."""

    source: str
    format: str | None
    num_records: int
    dataset: PreferenceDataset | UnpairedDataset | None
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0  # may exceed len(problems): only the first max_problems are kept


# ------------------------------------------------------------------------------ the builder


class _TableBuilder:
    """Accumulates rows (pairs or unpaired examples) column by column and emits Arrow record
    batches of fixed size."""

    def __init__(self, schema: pa.Schema) -> None:
        self.schema = schema
        self.core = tuple(schema.names)
        self.tables: list[pa.Table] = []
        self.columns: dict[str, list[Any]] = {n: [] for n in self.core}
        self.meta: dict[str, list[Any]] = {}
        self.rows = 0

    def add(self, raw: RawRecord, pairs: list[Pair], metadata: dict[str, Any]) -> None:
        for pair in pairs:
            self.columns["record"].append(raw.index)
            self.columns["line"].append(raw.line)
            for key in self.core[2:]:
                self.columns[key].append(pair[key])
            for key in metadata:
                if key not in self.meta:
                    self.meta[key] = [None] * self.rows
            for key, values in self.meta.items():
                values.append(metadata.get(key))
            self.rows += 1
        if self.rows >= _CHUNK:
            self._flush()

    def _flush(self) -> None:
        if not self.rows:
            return
        arrays = [pa.array(self.columns[f.name], type=f.type) for f in self.schema]
        names = list(self.core)
        for key, values in self.meta.items():
            arrays.append(_scalar_array(values))
            names.append(key)
        self.tables.append(pa.Table.from_arrays(arrays, names=names))
        self.columns = {n: [] for n in self.core}
        self.meta = {k: [] for k in self.meta}
        self.rows = 0

    def finish(self) -> pa.Table:
        self._flush()
        if not self.tables:
            return self.schema.empty_table()
        try:
            return pa.concat_tables(self.tables, promote_options="permissive")
        except (pa.ArrowInvalid, pa.ArrowTypeError):
            # A metadata column whose type differs between chunks: keep it as text.
            names = {n for t in self.tables for n in t.column_names} - set(self.core)
            return pa.concat_tables([_stringify(t, names) for t in self.tables],
                                    promote_options="permissive")


def _scalar_array(values: list[Any]) -> pa.Array:
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _stringify(table: pa.Table, names: set[str]) -> pa.Table:
    for name in names & set(table.column_names):
        i = table.column_names.index(name)
        table = table.set_column(i, name, pc.cast(table[name], pa.string()))
    return table


def _metadata(value: dict[str, Any], consumed: tuple[str, ...],
              core: tuple[str, ...]) -> dict[str, Any]:
    """Scalar fields the format does not use (e.g. a category), kept as columns."""
    out = {}
    for key, v in value.items():
        if key in consumed or not isinstance(v, str | int | float | bool):
            continue
        out[f"meta_{key}" if key in core else key] = v
    return out


# --------------------------------------------------------------------------- reading a source


def read_preferences(source: str | os.PathLike[str], format: str | None = None,
                     fields: FieldNames | None = None, max_problems: int = 20) -> ReadResult:
    """Read any supported source into a ``PreferenceDataset`` (an ``UnpairedDataset`` for
    unpaired examples), collecting every problem.

    Returns a ``ReadResult`` whose ``dataset`` is None when any problem was found; at most
    ``max_problems`` problems are kept, ``problem_count`` counts them all.
    """
    if format is not None and format not in FORMATS:
        raise UsageError(f"unknown format {format!r}",
                         [f"choose one of: {', '.join(FORMATS)}, or leave it out to detect"])
    names = fields or FieldNames()
    src = resolve_source(source)
    if src.kind in ("json", "jsonl"):
        problems: list[Problem] = []
        records = iter_records(src, problems)
        return _read_records(src, records, problems, format, names, max_problems)
    table = _read_table(src)
    return _read_records(src, iter_table_records(table), [], format, names, max_problems,
                         table=table)


def read_in_memory(data: Any, format: str | None = None, fields: FieldNames | None = None,
                   max_problems: int = 20, name: str = "<data>") -> ReadResult:
    """Like ``read_preferences``, for a list of record dicts or a ``datasets.Dataset``."""
    names = fields or FieldNames()
    if isinstance(data, list):
        src = Source("records", None, name)
        records = (RawRecord(i, None, value) for i, value in enumerate(data))
        return _read_records(src, records, [], format, names, max_problems)
    table = getattr(getattr(data, "data", None), "table", None)
    if not isinstance(table, pa.Table):
        raise UsageError(f"cannot read {type(data).__name__} as preference data",
                         ["pass a path, a list of dicts or a datasets.Dataset"])
    if getattr(data, "_indices", None) is not None:  # a select/shuffle view of the table
        table = data.flatten_indices().data.table
    src = Source("table", None, name)
    return _read_records(src, iter_table_records(table), [], format, names, max_problems,
                         table=table)


def _read_table(src: Source) -> pa.Table:
    try:
        return read_table(src)
    except (pa.ArrowInvalid, OSError, UnicodeDecodeError) as e:
        raise DataError(f"{src.name}: cannot read the file: {e}",
                        [f"check that it is a valid {src.kind} file"]) from e


def _read_records(src: Source, records: Iterator[RawRecord], problems: list[Problem],
                  format: str | None, names: FieldNames, max_problems: int,
                  table: pa.Table | None = None) -> ReadResult:
    head: list[RawRecord] = []
    first: RawRecord | None = None
    for raw in records:
        head.append(raw)
        if raw.value is not INVALID:
            first = raw
            break
    if first is None:
        if not head and not problems:
            problems.append(_no_records(src))
        return _result(src, format, len(head), None, problems, max_problems)
    fmt = format
    if fmt is None:
        fmt, reasons = detect_format(first.value, names)
        if fmt is None:
            problems.append(no_format_problem(src.name, first, reasons))
            return _result(src, None, len(head), None, problems, max_problems)
    conversational = is_conversational(fmt, first.value, names)
    if fmt == "flat" and not problems and (table is not None or src.kind == "jsonl"):
        result = _fast_flat(src, names, max_problems, table)
        if result is not None:
            return result
        # The fast path could not vouch for the file; read it record by record instead.
        problems = []
        records = iter_records(src, problems) if table is None else iter_table_records(table)
        head = []
    return _parse_all(src, chain(head, records), problems, fmt, conversational, names,
                      max_problems)


def _no_records(src: Source) -> Problem:
    if src.kind in ("json", "jsonl") and src.path is not None:
        with src.path.open("rb") as f:
            has_text = bool(f.read(1 << 16).strip())
        message = "no records: the array is empty" if has_text else "file is empty"
    else:
        message = "no records"
    return Problem(message, file=src.name, expected="preference records", found="no records")


def _parse_all(src: Source, records: Iterable[RawRecord], problems: list[Problem], fmt: str,
               conversational: bool, names: FieldNames, max_problems: int) -> ReadResult:
    parser = PARSERS[fmt]
    consumed = consumed_fields(fmt, names)
    unpaired = format_kind(fmt) == "unpaired"
    builder = _TableBuilder(unpaired_schema(conversational) if unpaired
                            else canonical_schema(conversational))
    count = 0
    extra = 0  # problems beyond max_problems: counted, not kept
    for raw in records:
        count += 1
        if raw.value is INVALID:
            continue
        if not isinstance(raw.value, dict):
            found = describe(raw.value)
            problems.append(Problem(f"expected a JSON object, found {found}", file=src.name,
                                    record=raw.index, line=raw.line, expected="an object",
                                    found=found))
            continue
        rec = RecordChecker(raw.value, conversational)
        pairs = parser(rec, names)
        for path, message, expected, got in rec.issues:
            if len(problems) < max_problems:
                problems.append(Problem(message, file=src.name, record=raw.index, line=raw.line,
                                        field=path, expected=expected, found=got))
            else:
                extra += 1
        if not problems:
            builder.add(raw, pairs, _metadata(raw.value, consumed, builder.core))
    if problems:
        return _result(src, fmt, count, None, problems, max_problems, extra)
    table = builder.finish()
    dataset = (UnpairedDataset(table, fmt, src.name, count) if unpaired
               else PreferenceDataset(table, fmt, src.name, count))
    return _result(src, fmt, count, dataset, [], max_problems)


def _result(src: Source, fmt: str | None, count: int,
            dataset: PreferenceDataset | UnpairedDataset | None,
            problems: list[Problem], max_problems: int, extra: int = 0) -> ReadResult:
    return ReadResult(src.name, fmt, count, dataset, problems[:max_problems],
                      len(problems) + extra)


# ---------------------------------------------------------------------- the vectorised path


def _fast_flat(src: Source, names: FieldNames, max_problems: int,
               table: pa.Table | None) -> ReadResult | None:
    """Read a flat text dataset column-wise; None when the record path must decide."""
    text_columns = (names.prompt, names.chosen, names.rejected)
    if table is None:
        table = _read_jsonl_table(src, text_columns)
        if table is None:
            return None
    for name in (*text_columns, "system", "sft_target"):
        if name not in table.column_names:
            if name in text_columns:
                return None
            continue
        column = table[name]
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            return None
        if name in text_columns and column.null_count:
            return None
    n = table.num_rows
    lines = None
    if src.kind == "jsonl":
        assert src.path is not None
        numbers = jsonl_line_numbers(src.path)
        if numbers is None or len(numbers) != n:
            return None
        lines = pa.array(numbers, type=pa.int64())
    try:  # Arrow's JSON reader does not check UTF-8; the record path reports where it breaks
        table.validate(full=True)
    except pa.ArrowInvalid:
        return None
    problems, total = _empty_text_problems(src, table, text_columns, lines, max_problems)
    if total:
        return ReadResult(src.name, "flat", n, None, problems, total)
    columns = {
        "record": pa.array(range(n), type=pa.int64()),
        "line": lines if lines is not None else pa.nulls(n, pa.int64()),
        "prompt": table[names.prompt], "chosen": table[names.chosen],
        "rejected": table[names.rejected],
        "system": _optional_text(table, "system"),
        "sft_target": _optional_text(table, "sft_target"),
    }
    schema = canonical_schema(False)
    arrays = [pc.cast(columns[f.name], f.type) for f in schema]
    out = pa.Table.from_arrays(arrays, schema=schema)
    consumed = (*text_columns, "system", "sft_target")
    for name in table.column_names:
        column = table[name]
        if name in consumed or pa.types.is_nested(column.type):
            continue
        out = out.append_column(f"meta_{name}" if name in CORE_COLUMNS else name, column)
    return ReadResult(src.name, "flat", n, PreferenceDataset(out, "flat", src.name, n))


def _read_jsonl_table(src: Source, text_columns: tuple[str, ...]) -> pa.Table | None:
    import pyarrow.json as pjson

    schema = pa.schema([(name, pa.string()) for name in dict.fromkeys(text_columns)])
    try:
        return pjson.read_json(
            src.path,
            read_options=pjson.ReadOptions(block_size=16 << 20),
            parse_options=pjson.ParseOptions(explicit_schema=schema,
                                              unexpected_field_behavior="infer"),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError, UnicodeDecodeError):
        return None


def _optional_text(table: pa.Table, name: str) -> pa.ChunkedArray | pa.Array:
    """An optional text column; blank cells become nulls, as the record path reads them."""
    if name not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    column = table[name]
    return pc.if_else(_blank(column), pa.scalar(None, column.type), column)


def _blank(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """True where a string is empty or only whitespace (without copying the strings)."""
    return pc.or_(pc.equal(pc.utf8_length(column), 0), pc.utf8_is_space(column))


def _empty_text_problems(src: Source, table: pa.Table, text_columns: tuple[str, ...],
                         lines: pa.Array | None, max_problems: int) -> tuple[list[Problem], int]:
    """Problems for blank text, in record order as the record path reports them."""
    found: list[tuple[int, str]] = []
    total = 0
    columns = list(dict.fromkeys(text_columns))
    for name in columns:
        indices = pc.indices_nonzero(_blank(table[name]))
        total += len(indices)
        found.extend((int(i), name) for i in indices[:max_problems].to_pylist())
    found.sort(key=lambda item: (item[0], columns.index(item[1])))
    problems = [
        Problem(f"field '{name}': empty text", file=src.name, record=i,
                line=None if lines is None else lines[i].as_py(), field=name,
                expected="non-empty text", found="empty text")
        for i, name in found[:max_problems]
    ]
    return problems, total
