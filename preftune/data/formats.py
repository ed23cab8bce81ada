"""Preference formats: recognise them and turn their records into canonical pairs.

Formats (``FORMATS``), detected from the first record's content or forced by name:

- ``pairs``: ``{prompt, responses: [..], pairs: [[preferred, rejected], ..], sft_target?}``;
  every index pair becomes one pair.
- ``flat``: ``{prompt, chosen, rejected}`` as text, field names configurable.
- ``implicit``: ``{chosen, rejected}`` whose shared leading text (or messages) is the prompt.
- ``conversational``: ``prompt`` as ``{role, content}`` messages, chosen/rejected as
  assistant messages (a plain string is taken as one assistant message).
- ``openai``: ``{input: {messages}, preferred_output: [..], non_preferred_output: [..]}``.
- ``sharegpt``: ``{conversations: [{from, value}], chosen: {from, value}, rejected: {..}}``.

Every problem names the record and field and says what was expected and found. A flat text
dataset in a columnar container (JSONL, parquet, CSV, a saved dataset) takes a vectorised
path over Arrow; whenever that path meets something it cannot vouch for (a null, a
non-string column) it falls back to the record-by-record path, which produces the exact
messages.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from preftune.data.records import (
    CORE_COLUMNS,
    ROLES,
    Message,
    PreferenceDataset,
    Problem,
    canonical_schema,
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

FORMATS = ("pairs", "flat", "implicit", "conversational", "openai", "sharegpt")
_SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
    "model": "assistant", "bot": "assistant", "chatgpt": "assistant", "system": "system",
    "tool": "tool", "function": "tool", "observation": "tool",
}
_CHUNK = 65536


@dataclass(frozen=True)
class FieldNames:
    """Column names of the flat and conversational formats."""

    prompt: str = "prompt"
    chosen: str = "chosen"
    rejected: str = "rejected"


@dataclass
class ReadResult:
    """What reading a source produced: the dataset when valid, and every problem found."""

    source: str
    format: str | None
    num_records: int
    dataset: PreferenceDataset | None
    problems: list[Problem] = field(default_factory=list)
    problem_count: int = 0  # may exceed len(problems): only the first max_problems are kept

    @property
    def ok(self) -> bool:
        return self.problem_count == 0


# --------------------------------------------------------------------------------- detection


def detect_format(record: Any, names: FieldNames) -> tuple[str | None, dict[str, str]]:
    """The format a record is in, or None and, for each format, why it does not fit."""
    if not isinstance(record, dict):
        why = f"a record must be a JSON object, found {describe(record)}"
        return None, dict.fromkeys(FORMATS, why)
    keys = set(record)
    if "pairs" in keys or "responses" in keys:
        return "pairs", {}
    if "input" in keys and ("preferred_output" in keys or "non_preferred_output" in keys):
        return "openai", {}
    if "conversations" in keys:
        return "sharegpt", {}
    if names.chosen in keys and names.rejected in keys:
        if names.prompt not in keys:
            return "implicit", {}
        values = (record[names.prompt], record[names.chosen], record[names.rejected])
        conversational = any(isinstance(v, list | dict) for v in values)
        return ("conversational" if conversational else "flat"), {}
    found = ", ".join(sorted(keys)) or "none"
    return None, {
        "pairs": "no 'responses' or 'pairs' field",
        "flat": f"no '{names.chosen}' and '{names.rejected}' fields",
        "implicit": f"no '{names.chosen}' and '{names.rejected}' fields",
        "conversational": f"no '{names.prompt}', '{names.chosen}' and '{names.rejected}' fields",
        "openai": "no 'input' and 'preferred_output' fields",
        "sharegpt": "no 'conversations' field",
        "found": f"fields {found}",
    }


def _no_format_problem(name: str, raw: RawRecord, reasons: dict[str, str]) -> Problem:
    found = reasons.pop("found", None)
    tried = "; ".join(f"{fmt}: {why}" for fmt, why in reasons.items())
    message = f"matches no preference format (tried {tried})"
    if found:
        message += f"; the record has {found}"
    return Problem(message, file=name, record=raw.index, line=raw.line,
                   expected="one of " + ", ".join(FORMATS), found=found)


# ------------------------------------------------------------------------------ one record


class _Record:
    """Checks the fields of one record, collecting issues instead of stopping at the first."""

    def __init__(self, value: dict[str, Any], conversational: bool) -> None:
        self.value = value
        self.conversational = conversational
        self.issues: list[tuple[str | None, str, str | None, str | None]] = []

    def issue(self, path: str | None, message: str, expected: str | None = None,
              found: str | None = None) -> None:
        self.issues.append((path, message, expected, found))

    def wrong(self, path: str, expected: str, value: Any) -> None:
        found = describe(value)
        self.issue(path, f"field '{path}': expected {expected}, found {found}", expected, found)

    def require(self, key: str) -> Any:
        if key not in self.value:
            self.issue(key, f"missing required field '{key}'", "present", "missing")
            return None
        return self.value[key]

    def text(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str):
            self.wrong(path, "text", value)
            return None
        if not value.strip():
            self.issue(path, f"field '{path}': empty text", "non-empty text", "empty text")
            return None
        return value

    def optional_text(self, key: str) -> str | None:
        """An optional text field; empty or null means absent (as in CSV and parquet)."""
        value = self.value.get(key)
        if value is None or isinstance(value, str) and not value.strip():
            return None
        return self.text(value, key)

    def content(self, value: Any, path: str) -> str | None:
        """Message content: a string, or OpenAI-style parts ``[{type: text, text}]``."""
        if isinstance(value, list) and all(isinstance(p, dict) for p in value):
            texts = [p.get("text") for p in value if p.get("type") in ("text", "input_text",
                                                                       "output_text")]
            if len(texts) != len(value) or not all(isinstance(t, str) for t in texts):
                self.wrong(path, "text or a list of text parts", value)
                return None
            value = "".join(t for t in texts if isinstance(t, str))
        return self.text(value, path)

    def messages(self, value: Any, path: str, role_key: str = "role",
                 content_key: str = "content") -> list[Message] | None:
        """A list of messages with known roles and non-empty content."""
        if isinstance(value, dict):
            value = [value]
        if not isinstance(value, list) or not value:
            self.wrong(path, f"a non-empty list of {{{role_key}, {content_key}}} messages", value)
            return None
        out: list[Message] = []
        ok = True
        for i, msg in enumerate(value):
            where = f"{path}[{i}]"
            if not isinstance(msg, dict):
                self.wrong(where, f"a {{{role_key}, {content_key}}} message", msg)
                ok = False
                continue
            role = self._role(msg, where, role_key)
            if content_key not in msg:
                self.issue(f"{where}.{content_key}",
                           f"field '{where}': missing required field '{content_key}'",
                           "present", "missing")
                ok = False
                continue
            content = self.content(msg[content_key], f"{where}.{content_key}")
            if role is None or content is None:
                ok = False
                continue
            out.append({"role": role, "content": content})
        return out if ok else None

    def _role(self, msg: dict[str, Any], where: str, role_key: str) -> str | None:
        if role_key not in msg:
            self.issue(f"{where}.{role_key}", f"field '{where}': missing required field "
                       f"'{role_key}'", "present", "missing")
            return None
        raw = msg[role_key]
        role = _SHAREGPT_ROLES.get(raw) if role_key == "from" and isinstance(raw, str) else raw
        if role not in ROLES:
            allowed = ", ".join(_SHAREGPT_ROLES if role_key == "from" else ROLES)
            found = repr(raw) if isinstance(raw, str) else describe(raw)
            self.issue(f"{where}.{role_key}", f"field '{where}.{role_key}': bad message role: "
                       f"expected one of {allowed}, found {found}", f"one of {allowed}", found)
            return None
        return str(role)

    def prompt_messages(self, msgs: list[Message], path: str) -> list[Message] | None:
        """Check a prompt conversation: system first if at all, alternating turns, user last."""
        roles = [m["role"] for m in msgs]
        shown = ", ".join(roles)
        for i, role in enumerate(roles):
            if role == "system" and i > 0:
                self.issue(f"{path}[{i}]", f"field '{path}[{i}]': bad message order: a 'system' "
                           f"message may only come first (roles: {shown})",
                           "system first", shown)
                return None
        turns = [r for r in roles if r != "system"]
        if not turns or turns[0] != "user":
            self.issue(path, f"field '{path}': bad message order: the first message after any "
                       f"system message must be 'user' (roles: {shown})", "user first", shown)
            return None
        for i in range(1, len(turns)):
            if turns[i] == turns[i - 1] and turns[i] in ("user", "assistant"):
                self.issue(path, f"field '{path}': bad message order: two '{turns[i]}' messages "
                           f"in a row (roles: {shown})", "alternating user and assistant", shown)
                return None
        if roles[-1] not in ("user", "tool"):
            self.issue(path, f"field '{path}': bad message order: a prompt must end with a "
                       f"'user' message, found '{roles[-1]}' last (roles: {shown})",
                       "user last", shown)
            return None
        return msgs

    def response_messages(self, msgs: list[Message], path: str) -> list[Message] | None:
        for i, msg in enumerate(msgs):
            if msg["role"] not in ("assistant", "tool"):
                self.issue(f"{path}[{i}].role", f"field '{path}[{i}].role': a response must be "
                           f"'assistant' messages, found '{msg['role']}'", "assistant",
                           msg["role"])
                return None
        if msgs[0]["role"] != "assistant" or msgs[-1]["role"] != "assistant":
            self.issue(path, f"field '{path}': a response must start and end with an "
                       "'assistant' message", "assistant", msgs[-1]["role"])
            return None
        return msgs

    # Shapes of the three texts of a pair, depending on the dataset's mode.

    def prompt(self, value: Any, path: str) -> str | list[Message] | None:
        if self.conversational:
            if isinstance(value, str):
                text = self.text(value, path)
                return None if text is None else [{"role": "user", "content": text}]
            msgs = self.messages(value, path)
            return None if msgs is None else self.prompt_messages(msgs, path)
        if isinstance(value, list):
            self.wrong(path, "text like the rest of this dataset (it is not conversational)",
                       value)
            return None
        return self.text(value, path)

    def response(self, value: Any, path: str) -> str | list[Message] | None:
        if self.conversational:
            if isinstance(value, str):
                text = self.text(value, path)
                return None if text is None else [{"role": "assistant", "content": text}]
            msgs = self.messages(value, path)
            return None if msgs is None else self.response_messages(msgs, path)
        if isinstance(value, list | dict):
            self.wrong(path, "text like the rest of this dataset (it is not conversational)",
                       value)
            return None
        return self.text(value, path)


Pair = dict[str, Any]
Parser = Callable[[_Record, FieldNames], list[Pair]]


def _with_system(rec: _Record, prompt: Any, system: str | None) -> Any:
    """Put a separate system prompt into a conversational prompt, unless it has one."""
    if system is not None and isinstance(prompt, list) and prompt[0]["role"] != "system":
        return [{"role": "system", "content": system}, *prompt]
    return prompt


def _parse_flat(rec: _Record, names: FieldNames) -> list[Pair]:
    values = [rec.require(names.prompt), rec.require(names.chosen), rec.require(names.rejected)]
    if rec.issues:
        return []
    prompt = rec.prompt(values[0], names.prompt)
    chosen = rec.response(values[1], names.chosen)
    rejected = rec.response(values[2], names.rejected)
    system = rec.optional_text("system")
    sft = rec.optional_text("sft_target")
    if rec.issues:
        return []
    return [_pair(rec, _with_system(rec, prompt, system), chosen, rejected, system, sft)]


def _pair(rec: _Record, prompt: Any, chosen: Any, rejected: Any, system: str | None,
          sft: str | None) -> Pair:
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected,
            "system": None if rec.conversational else system, "sft_target": sft}


def _parse_pairs(rec: _Record, names: FieldNames) -> list[Pair]:
    prompt_value = rec.require("prompt")
    responses = rec.require("responses")
    pairs = rec.require("pairs")
    if rec.issues:
        return []
    prompt = rec.prompt(prompt_value, "prompt")
    texts: list[str | None] = []
    if not isinstance(responses, list) or len(responses) < 2:
        rec.wrong("responses", "a list of at least 2 responses", responses)
    else:
        texts = [rec.text(r, f"responses[{i}]") for i, r in enumerate(responses)]
    index_pairs = _index_pairs(rec, pairs, len(texts))
    system = rec.optional_text("system")
    sft = rec.optional_text("sft_target")
    if rec.issues:
        return []
    prompt = _with_system(rec, prompt, system)
    out = []
    for i, j in index_pairs:
        chosen = rec.response(texts[i], f"responses[{i}]")
        rejected = rec.response(texts[j], f"responses[{j}]")
        out.append(_pair(rec, prompt, chosen, rejected, system, sft))
    return out


def _index_pairs(rec: _Record, pairs: Any, n: int) -> list[tuple[int, int]]:
    expected = "a non-empty list of [preferred, rejected] index pairs"
    if not isinstance(pairs, list) or not pairs:
        rec.wrong("pairs", expected, pairs)
        return []
    out = []
    for k, pair in enumerate(pairs):
        path = f"pairs[{k}]"
        if (not isinstance(pair, list) or len(pair) != 2
                or not all(isinstance(x, int) and not isinstance(x, bool) for x in pair)):
            rec.wrong(path, "a [preferred, rejected] pair of integer indices", pair)
            continue
        i, j = pair
        bad = [x for x in (i, j) if not 0 <= x < n]
        if n and bad:
            rec.issue(path, f"field '{path}': index {bad[0]} out of range: the record has "
                      f"{n} responses (indices 0 to {n - 1})", f"an index from 0 to {n - 1}",
                      str(bad[0]))
            continue
        if i == j:
            rec.issue(path, f"field '{path}': preferred and rejected are the same response "
                      f"(index {i})", "two different indices", f"[{i}, {j}]")
            continue
        out.append((i, j))
    return out


def _parse_openai(rec: _Record, names: FieldNames) -> list[Pair]:
    inp = rec.require("input")
    preferred = rec.require("preferred_output")
    non_preferred = rec.require("non_preferred_output")
    if rec.issues:
        return []
    if not isinstance(inp, dict) or "messages" not in inp:
        rec.wrong("input", "an object with a 'messages' list", inp)
        return []
    msgs = rec.messages(inp["messages"], "input.messages")
    prompt = rec.prompt_messages(msgs, "input.messages") if msgs is not None else None
    chosen = rec.messages(preferred, "preferred_output")
    rejected = rec.messages(non_preferred, "non_preferred_output")
    if chosen is not None:
        chosen = rec.response_messages(chosen, "preferred_output")
    if rejected is not None:
        rejected = rec.response_messages(rejected, "non_preferred_output")
    if rec.issues:
        return []
    return [_pair(rec, prompt, chosen, rejected, None, None)]


def _parse_sharegpt(rec: _Record, names: FieldNames) -> list[Pair]:
    conv = rec.require("conversations")
    chosen_value = rec.require("chosen")
    rejected_value = rec.require("rejected")
    if rec.issues:
        return []
    msgs = rec.messages(conv, "conversations", "from", "value")
    prompt = rec.prompt_messages(msgs, "conversations") if msgs is not None else None
    chosen = rec.messages(chosen_value, "chosen", "from", "value")
    rejected = rec.messages(rejected_value, "rejected", "from", "value")
    if chosen is not None:
        chosen = rec.response_messages(chosen, "chosen")
    if rejected is not None:
        rejected = rec.response_messages(rejected, "rejected")
    system = rec.optional_text("system")
    if rec.issues:
        return []
    return [_pair(rec, _with_system(rec, prompt, system), chosen, rejected, None, None)]


def _parse_implicit(rec: _Record, names: FieldNames) -> list[Pair]:
    chosen_value = rec.require(names.chosen)
    rejected_value = rec.require(names.rejected)
    if rec.issues:
        return []
    if rec.conversational:
        return _implicit_messages(rec, names, chosen_value, rejected_value)
    chosen = rec.response(chosen_value, names.chosen)
    rejected = rec.response(rejected_value, names.rejected)
    if rec.issues or not isinstance(chosen, str) or not isinstance(rejected, str):
        return []
    n = len(os.path.commonprefix([chosen, rejected]))
    # Start the responses at a word: back off to just after the last whitespace.
    while n > 0 and not chosen[n - 1].isspace():
        n -= 1
    if not chosen[:n].strip():
        rec.issue(names.chosen, f"fields '{names.chosen}' and '{names.rejected}' share no "
                  "leading text, so the prompt cannot be inferred", "a shared leading prompt",
                  "no shared text")
        return []
    prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
    for text, path in ((chosen, names.chosen), (rejected, names.rejected)):
        if not text.strip():
            rec.issue(path, f"field '{path}': empty response after the shared prompt",
                      "a response after the prompt", "nothing")
    if rec.issues:
        return []
    return [_pair(rec, prompt, chosen, rejected, rec.optional_text("system"), None)]


def _implicit_messages(rec: _Record, names: FieldNames, chosen_value: Any,
                       rejected_value: Any) -> list[Pair]:
    chosen = rec.messages(chosen_value, names.chosen)
    rejected = rec.messages(rejected_value, names.rejected)
    if chosen is None or rejected is None:
        return []
    n = 0
    while n < min(len(chosen), len(rejected)) and chosen[n] == rejected[n]:
        n += 1
    if n == 0:
        rec.issue(names.chosen, f"fields '{names.chosen}' and '{names.rejected}' share no "
                  "leading messages, so the prompt cannot be inferred",
                  "a shared leading conversation", "no shared messages")
        return []
    prompt = rec.prompt_messages(chosen[:n], names.chosen)
    responses = []
    for msgs, path in ((chosen[n:], names.chosen), (rejected[n:], names.rejected)):
        if not msgs:
            rec.issue(path, f"field '{path}': no response after the shared prompt",
                      "an assistant reply after the prompt", "nothing")
        else:
            responses.append(rec.response_messages(msgs, path))
    if rec.issues:
        return []
    return [_pair(rec, prompt, responses[0], responses[1], None, None)]


_PARSERS: dict[str, Parser] = {
    "pairs": _parse_pairs, "flat": _parse_flat, "conversational": _parse_flat,
    "implicit": _parse_implicit, "openai": _parse_openai, "sharegpt": _parse_sharegpt,
}
_CONSUMED = {
    "pairs": ("prompt", "responses", "pairs", "sft_target", "system"),
    "openai": ("input", "preferred_output", "non_preferred_output"),
    "sharegpt": ("conversations", "chosen", "rejected", "system"),
}


def _consumed(fmt: str, names: FieldNames) -> tuple[str, ...]:
    if fmt in ("flat", "conversational"):
        return (names.prompt, names.chosen, names.rejected, "system", "sft_target")
    if fmt == "implicit":
        return (names.chosen, names.rejected, "system")
    return _CONSUMED[fmt]


def _is_conversational(fmt: str, record: Any, names: FieldNames) -> bool:
    """Whether a dataset whose first record is ``record`` holds chat messages."""
    if fmt in ("openai", "sharegpt", "conversational"):
        return True
    if fmt == "flat" or not isinstance(record, dict):
        return False
    key = "prompt" if fmt == "pairs" else names.chosen
    return isinstance(record.get(key), list)


# ------------------------------------------------------------------------------ the builder


class _TableBuilder:
    """Accumulates pairs column by column and emits Arrow record batches of fixed size."""

    def __init__(self, conversational: bool) -> None:
        self.schema = canonical_schema(conversational)
        self.tables: list[pa.Table] = []
        self.columns: dict[str, list[Any]] = {n: [] for n in CORE_COLUMNS}
        self.meta: dict[str, list[Any]] = {}
        self.rows = 0

    def add(self, raw: RawRecord, pairs: list[Pair], metadata: dict[str, Any]) -> None:
        for pair in pairs:
            self.columns["record"].append(raw.index)
            self.columns["line"].append(raw.line)
            for key in ("prompt", "chosen", "rejected", "system", "sft_target"):
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
        names = list(CORE_COLUMNS)
        for key, values in self.meta.items():
            arrays.append(_scalar_array(values))
            names.append(key)
        self.tables.append(pa.Table.from_arrays(arrays, names=names))
        self.columns = {n: [] for n in CORE_COLUMNS}
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
            names = {n for t in self.tables for n in t.column_names} - set(CORE_COLUMNS)
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


def _metadata(value: dict[str, Any], consumed: tuple[str, ...]) -> dict[str, Any]:
    """Scalar fields the format does not use (e.g. a category), kept as columns."""
    out = {}
    for key, v in value.items():
        if key in consumed or not isinstance(v, str | int | float | bool):
            continue
        out[f"meta_{key}" if key in CORE_COLUMNS else key] = v
    return out


# --------------------------------------------------------------------------- reading a source


def read_preferences(source: str | os.PathLike[str], format: str | None = None,
                     fields: FieldNames | None = None, max_problems: int = 20) -> ReadResult:
    """Read any supported source into a ``PreferenceDataset``, collecting every problem.

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
        return _read_records(src, records, problems, format, names, max_problems,
                             fast=src.kind == "jsonl")
    table = _read_table(src)
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
                  fast: bool = False, table: pa.Table | None = None) -> ReadResult:
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
            problems.append(_no_format_problem(src.name, first, reasons))
            return _result(src, None, len(head), None, problems, max_problems)
    conversational = _is_conversational(fmt, first.value, names)
    if fmt == "flat" and not problems and (fast or table is not None):
        assert src.path is not None or table is not None
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
    parser = _PARSERS[fmt]
    consumed = _consumed(fmt, names)
    builder = _TableBuilder(conversational)
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
        rec = _Record(raw.value, conversational)
        pairs = parser(rec, names)
        for path, message, expected, got in rec.issues:
            if len(problems) < max_problems:
                problems.append(Problem(message, file=src.name, record=raw.index, line=raw.line,
                                        field=path, expected=expected, found=got))
            else:
                extra += 1
        if not problems:
            builder.add(raw, pairs, _metadata(raw.value, consumed))
    if problems:
        return _result(src, fmt, count, None, problems, max_problems, extra)
    return _result(src, fmt, count, PreferenceDataset(builder.finish(), fmt, src.name, count),
                   [], max_problems)


def _result(src: Source, fmt: str | None, count: int, dataset: PreferenceDataset | None,
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
        for name in (*text_columns, "system", "sft_target"):
            if name in table.column_names:
                table[name].validate(full=True)
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
