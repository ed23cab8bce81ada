"""Where records come from: files and datasets turned into raw records or Arrow tables.

This module knows containers (JSON array, JSON Lines, parquet, CSV, a ``save_to_disk``
directory, ``hf:NAME[:CONFIG][@SPLIT]``), not preference formats: it hands on plain values
with their record index and line, or syntax problems located by line and column.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from preftune.data.records import Problem
from preftune.errors import MissingError, UsageError

# Columns that writers add for a dataframe index; they are not data.
_INDEX_COLUMNS = ("", "__index_level_0__")


@dataclass(frozen=True)
class Source:
    """A resolved data source. ``kind`` is json, jsonl, parquet, csv, arrow_dir or hub."""

    kind: str
    path: Path | None
    name: str  # what messages call it: the file name, or the hub spec
    dataset: str | None = None  # hub dataset name
    config: str | None = None
    split: str | None = None


@dataclass(frozen=True)
class RawRecord:
    index: int
    line: int | None
    value: Any


def resolve_source(spec: str | os.PathLike[str]) -> Source:
    """Work out what kind of source ``spec`` names, from its content where that is reliable."""
    text = os.fspath(spec)
    if text.startswith("hf:"):
        return _hub_source(text)
    path = Path(text)
    split = None
    if not path.exists() and "@" in path.name:
        base, _, split = text.rpartition("@")
        if Path(base).is_dir():
            path = Path(base)
    if not path.exists():
        raise UsageError(
            f"dataset not found: {text}",
            ["check the path, or write a sample with: preftune sample --output data.json"],
        )
    if path.is_dir():
        if any((path / f).exists() for f in ("dataset_info.json", "state.json",
                                              "dataset_dict.json")):
            return Source("arrow_dir", path, path.name, split=split)
        raise UsageError(
            f"{text} is a directory but not a dataset saved with datasets' save_to_disk",
            ["pass a data file, or a directory written by Dataset.save_to_disk"],
        )
    suffix = path.suffix.lower()
    with path.open("rb") as f:
        head = f.read(4)
    if head == b"PAR1" or suffix == ".parquet":
        return Source("parquet", path, path.name)
    if suffix in (".csv", ".tsv"):
        return Source("csv", path, path.name)
    return Source(_json_kind(path), path, path.name)


def _hub_source(spec: str) -> Source:
    rest = spec[3:]
    rest, _, split = rest.partition("@")
    name, _, config = rest.partition(":")
    if not name:
        raise UsageError(f"empty dataset name in {spec!r}", ["write hf:NAME[:CONFIG][@SPLIT]"])
    return Source("hub", None, spec, dataset=name, config=config or None, split=split or None)


def _json_kind(path: Path) -> str:
    """'json' for a top-level array (or anything that is not one object per line), else 'jsonl'."""
    with path.open("rb") as f:
        chunk = f.read(1 << 16).lstrip(b"\xef\xbb\xbf").lstrip()
    if chunk.startswith(b"["):
        return "json"
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        return "jsonl"
    if chunk.startswith(b"{"):
        # One object per line, unless the first line is not a whole object (pretty-printed).
        first = chunk.split(b"\n", 1)[0]
        try:
            json.loads(first)
            return "jsonl"
        except ValueError:
            return "json"
    return "json"


# ----------------------------------------------------------------------------------- records


def iter_records(source: Source, problems: list[Problem]) -> Iterator[RawRecord]:
    """Yield each record of a JSON or JSONL source; syntax problems go to ``problems``."""
    assert source.path is not None
    if source.kind == "jsonl":
        yield from _iter_jsonl(source.path, source.name, problems)
    else:
        yield from _iter_json_array(source.path, source.name, problems)


def iter_table_records(table: pa.Table) -> Iterator[RawRecord]:
    index = 0
    for batch in table.to_batches(max_chunksize=8192):
        for row in batch.to_pylist():
            yield RawRecord(index, None, row)
            index += 1


def _decode(data: bytes, name: str, problems: list[Problem], line_offset: int = 0,
            record: int | None = None) -> str:
    """Decode UTF-8, reporting the first undecodable byte with its line and column."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        problems.append(Problem(
            f"invalid UTF-8: byte 0x{data[e.start]:02x} cannot be decoded "
            "(re-save the file as UTF-8)",
            file=name, record=record, line=line + line_offset, column=col,
            expected="UTF-8 text", found=f"byte 0x{data[e.start]:02x}",
        ))
        return data.decode("utf-8", errors="replace")


def _iter_jsonl(path: Path, name: str, problems: list[Problem]) -> Iterator[RawRecord]:
    index = 0
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1:
                raw = raw.removeprefix(b"\xef\xbb\xbf")
            if not raw.strip():
                continue
            text = _decode(raw.rstrip(b"\r\n"), name, problems, lineno - 1, index)
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                problems.append(Problem(
                    f"invalid JSON: {e.msg} (each line must be one JSON object)",
                    file=name, record=index, line=lineno, column=e.colno,
                    expected="a JSON object", found=_snippet(text),
                ))
                value = INVALID
            yield RawRecord(index, lineno, value)
            index += 1


INVALID = object()  # stands for a record whose syntax already produced a problem


def _iter_json_array(path: Path, name: str, problems: list[Problem]) -> Iterator[RawRecord]:
    text = _decode(path.read_bytes(), name, problems).removeprefix("\ufeff")
    # An undecodable byte is found before records are; it is credited to its record below.
    bad_byte = len(problems) - 1 if problems else None
    decoder = json.JSONDecoder()
    pos = _skip_ws(text, 0)
    if not text.startswith("[", pos):
        problems.append(_top_level_problem(text, pos, name))
        return
    pos = _skip_ws(text, pos + 1)
    line, counted = 1, 0
    index = 0
    if text.startswith("]", pos):
        return
    while True:
        line += text.count("\n", counted, pos)
        counted = pos
        try:
            value, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as e:
            problems.append(_json_problem(e, name, index))
            return
        if bad_byte is not None:
            bad_line = problems[bad_byte].line or 0
            if line <= bad_line <= line + text.count("\n", pos, end):
                problems[bad_byte] = dataclasses.replace(problems[bad_byte], record=index)
        yield RawRecord(index, line, value)
        index += 1
        pos = _skip_ws(text, end)
        if text.startswith(",", pos):
            pos = _skip_ws(text, pos + 1)
            continue
        if text.startswith("]", pos):
            break
        err = json.JSONDecodeError("Expecting ',' delimiter or ']'", text, pos)
        problems.append(_json_problem(err, name, index))
        return
    pos = _skip_ws(text, pos + 1)
    if pos < len(text):
        problems.append(_json_problem(json.JSONDecodeError("Extra data after the array", text,
                                                           pos), name, None))


def _skip_ws(text: str, pos: int) -> int:
    n = len(text)
    while pos < n and text[pos] in " \t\r\n":
        pos += 1
    return pos


def _json_problem(e: json.JSONDecodeError, name: str, record: int | None) -> Problem:
    return Problem(f"invalid JSON: {e.msg}", file=name, record=record, line=e.lineno,
                   column=e.colno, expected="valid JSON", found=_snippet(e.doc[e.pos:e.pos + 30]))


def _top_level_problem(text: str, pos: int, name: str) -> Problem:
    if pos >= len(text):
        return Problem("file is empty", file=name, expected="preference records", found="no data")
    try:
        value, _ = json.JSONDecoder().raw_decode(text, pos)
    except json.JSONDecodeError as e:
        return _json_problem(e, name, None)
    found = describe(value)
    return Problem(
        f"wrong top-level type: expected an array of records or one JSON object per line, "
        f"found {found}",
        file=name, line=text.count("\n", 0, pos) + 1, expected="an array of records",
        found=found,
    )


def _snippet(text: str, limit: int = 40) -> str:
    text = text.strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")


def describe(value: Any) -> str:
    """A short description of a JSON value for messages: 'a number (42)', 'null', ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return "empty text" if not value.strip() else f"text {_snippet(value, 30)}"
    if isinstance(value, list):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, dict):
        keys = ", ".join(list(value)[:6]) or "no keys"
        return f"an object with keys {keys}"
    return type(value).__name__


# ------------------------------------------------------------------------------------ tables


def read_table(source: Source) -> pa.Table:
    """Read a columnar source (parquet, CSV, save_to_disk directory, hub) as one Arrow table."""
    if source.kind == "parquet":
        import pyarrow.parquet as pq

        assert source.path is not None
        # One file's reader, not read_table's dataset scanner: under a memory limit (the
        # service's validation child) a failed allocation in the scanner can leave it
        # waiting forever, where this reader raises MemoryError.
        table = pq.ParquetFile(source.path, memory_map=True).read()
    elif source.kind == "csv":
        table = _read_csv(source)
    elif source.kind in ("arrow_dir", "hub"):
        table = _read_hf(source)
    else:
        raise ValueError(f"not a columnar source: {source.kind}")
    drop = [c for c in table.column_names
            if c in _INDEX_COLUMNS or c.startswith("Unnamed: ")]
    return table.drop_columns(drop) if drop else table


def _read_csv(source: Source) -> pa.Table:
    import pyarrow.csv as pcsv

    assert source.path is not None
    delimiter = "\t" if source.path.suffix.lower() == ".tsv" else ","
    # Every column is read as text: a prompt of digits must stay a string.
    with source.path.open("rb") as f:
        header = f.readline().decode("utf-8", errors="replace").lstrip("\ufeff")
    names: list[str] = next(csv.reader([header], delimiter=delimiter), [])
    return pcsv.read_csv(
        source.path,
        parse_options=pcsv.ParseOptions(delimiter=delimiter, newlines_in_values=True),
        convert_options=pcsv.ConvertOptions(column_types={n: pa.string() for n in names}),
    )


def _read_hf(source: Source) -> pa.Table:
    try:
        import datasets
    except ImportError as e:  # pragma: no cover - datasets is a core dependency
        raise MissingError("the 'datasets' package is needed to read this source",
                           ["pip install datasets"]) from e
    if source.kind == "arrow_dir":
        loaded = datasets.load_from_disk(str(source.path))
    else:
        try:
            loaded = datasets.load_dataset(source.dataset, source.config,
                                           split=source.split or "train")
        except Exception as e:  # the hub raises many types: connection, not found, auth
            raise MissingError(
                f"could not load {source.name} from the Hugging Face hub: {e}",
                ["check the dataset name and your network access",
                 "or save the dataset locally with save_to_disk and pass that directory"],
            ) from e
    if isinstance(loaded, datasets.DatasetDict):
        split = source.split or ("train" if "train" in loaded else None)
        if split is None and len(loaded) == 1:
            split = next(iter(loaded))
        if split not in loaded:
            raise UsageError(
                f"{source.name}: no split {split!r}; the dataset has {', '.join(loaded)}",
                [f"name a split: {source.path}@{next(iter(loaded))}"],
            )
        loaded = loaded[split]
    if loaded._indices is not None:  # a select/shuffle view: materialise the order it shows
        loaded = loaded.flatten_indices()
    table: pa.Table = loaded.data.table
    return table


def jsonl_line_numbers(path: Path) -> list[int] | None:
    """1-based line number of each record of a JSONL file whose lines each hold one object.

    Blank lines are skipped as ``_iter_jsonl`` skips them. None when some line does not look
    like exactly one object (a record split over lines, or two on one line), so that a reader
    which ignores line breaks cannot silently disagree with the record path.
    """
    lines: list[int] = []
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            text = raw.strip()
            if not text:
                continue
            if lineno == 1:
                text = text.removeprefix(b"\xef\xbb\xbf")
            if not (text.startswith(b"{") and text.endswith(b"}")):
                return None
            lines.append(lineno)
    return lines
