"""Preference formats: what each looks like, how to recognise it, how to check a record.

Formats (``FORMATS``), detected from the first record's content or forced by name. All but
the last give preference pairs:

- ``pairs``: ``{prompt, responses: [..], pairs: [[preferred, rejected], ..], sft_target?}``;
  every index pair becomes one pair.
- ``flat``: ``{prompt, chosen, rejected}`` as text, field names configurable.
- ``implicit``: ``{chosen, rejected}`` whose shared leading text (or messages) is the prompt.
- ``conversational``: ``prompt`` as ``{role, content}`` messages, chosen/rejected as
  assistant messages (a plain string is taken as one assistant message).
- ``openai``: ``{input: {messages}, preferred_output: [..], non_preferred_output: [..]}``.
- ``sharegpt``: ``{conversations: [{from, value}], chosen: {from, value}, rejected: {..}}``.
- ``unpaired``: TRL's unpaired preference format, ``{prompt, completion, label}`` with the
  label a boolean (true: desirable), the prompt and completion text or messages; what KTO
  trains on. Field names configurable.

Each format's parser turns one raw record into canonical pairs, or into issues that name the
field and say what was expected and found. Reading whole sources is ``reader``'s job.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from preftune.data.records import (
    ROLES,
    Message,
    Problem,
)
from preftune.data.sources import (
    RawRecord,
    describe,
)

FORMATS = ("pairs", "flat", "implicit", "conversational", "openai", "sharegpt", "unpaired")
UNPAIRED_FORMATS = ("unpaired",)
# How a label may be written: JSON has booleans; CSV has only text, and 0/1 is common in both.
_LABEL_TEXT = {"true": True, "false": False, "1": True, "0": False}
LABEL_EXPECTED = "a boolean (true or false; 1 and 0 are read as true and false)"
_SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
    "model": "assistant", "bot": "assistant", "chatgpt": "assistant", "system": "system",
    "tool": "tool", "function": "tool", "observation": "tool",
}


@dataclass(frozen=True)
class FieldNames:
    """Column names of the flat, conversational and unpaired formats."""

    prompt: str = "prompt"
    chosen: str = "chosen"
    rejected: str = "rejected"
    completion: str = "completion"
    label: str = "label"


def format_kind(fmt: str) -> str:
    """``paired`` (prompt, chosen, rejected) or ``unpaired`` (prompt, completion, label)."""
    return "unpaired" if fmt in UNPAIRED_FORMATS else "paired"


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
    if names.completion in keys or (names.label in keys and names.chosen not in keys
                                    and names.rejected not in keys):
        return "unpaired", {}
    found = ", ".join(sorted(keys)) or "none"
    return None, {
        "pairs": "no 'responses' or 'pairs' field",
        "flat": f"no '{names.chosen}' and '{names.rejected}' fields",
        "implicit": f"no '{names.chosen}' and '{names.rejected}' fields",
        "conversational": f"no '{names.prompt}', '{names.chosen}' and '{names.rejected}' fields",
        "openai": "no 'input' and 'preferred_output' fields",
        "sharegpt": "no 'conversations' field",
        "unpaired": f"no '{names.completion}' and '{names.label}' fields",
        "found": f"fields {found}",
    }


def no_format_problem(name: str, raw: RawRecord, reasons: dict[str, str]) -> Problem:
    found = reasons.pop("found", None)
    tried = "; ".join(f"{fmt}: {why}" for fmt, why in reasons.items())
    message = f"matches no preference format (tried {tried})"
    if found:
        message += f"; the record has {found}"
    return Problem(message, file=name, record=raw.index, line=raw.line,
                   expected="one of " + ", ".join(FORMATS), found=found)


# ------------------------------------------------------------------------------ one record


class RecordChecker:
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

    def label(self, value: Any, path: str) -> bool | None:
        """A desirable (true) or undesirable (false) label; see ``LABEL_EXPECTED``."""
        if isinstance(value, bool):
            return value
        if isinstance(value, int | float) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _LABEL_TEXT:
            return _LABEL_TEXT[value.strip().lower()]
        self.wrong(path, LABEL_EXPECTED, value)
        return None

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
Parser = Callable[[RecordChecker, FieldNames], list[Pair]]


def _with_system(rec: RecordChecker, prompt: Any, system: str | None) -> Any:
    """Put a separate system prompt into a conversational prompt, unless it has one."""
    if system is not None and isinstance(prompt, list) and prompt[0]["role"] != "system":
        return [{"role": "system", "content": system}, *prompt]
    return prompt


def _parse_flat(rec: RecordChecker, names: FieldNames) -> list[Pair]:
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


def _pair(rec: RecordChecker, prompt: Any, chosen: Any, rejected: Any, system: str | None,
          sft: str | None) -> Pair:
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected,
            "system": None if rec.conversational else system, "sft_target": sft}


def _parse_pairs(rec: RecordChecker, names: FieldNames) -> list[Pair]:
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


def _index_pairs(rec: RecordChecker, pairs: Any, n: int) -> list[tuple[int, int]]:
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


def _parse_openai(rec: RecordChecker, names: FieldNames) -> list[Pair]:
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


def _parse_sharegpt(rec: RecordChecker, names: FieldNames) -> list[Pair]:
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


def _parse_implicit(rec: RecordChecker, names: FieldNames) -> list[Pair]:
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


def _implicit_messages(rec: RecordChecker, names: FieldNames, chosen_value: Any,
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


def _parse_unpaired(rec: RecordChecker, names: FieldNames) -> list[Pair]:
    """One example: ``{prompt, completion, label}`` (TRL's unpaired preference format)."""
    values = [rec.require(names.prompt), rec.require(names.completion), rec.require(names.label)]
    if rec.issues:
        return []
    prompt = rec.prompt(values[0], names.prompt)
    completion = rec.response(values[1], names.completion)
    label = rec.label(values[2], names.label)
    system = rec.optional_text("system")
    if rec.issues:
        return []
    return [{"prompt": _with_system(rec, prompt, system), "completion": completion,
             "label": label, "system": None if rec.conversational else system}]


PARSERS: dict[str, Parser] = {
    "pairs": _parse_pairs, "flat": _parse_flat, "conversational": _parse_flat,
    "implicit": _parse_implicit, "openai": _parse_openai, "sharegpt": _parse_sharegpt,
    "unpaired": _parse_unpaired,
}
_CONSUMED = {
    "pairs": ("prompt", "responses", "pairs", "sft_target", "system"),
    "openai": ("input", "preferred_output", "non_preferred_output"),
    "sharegpt": ("conversations", "chosen", "rejected", "system"),
}


def consumed_fields(fmt: str, names: FieldNames) -> tuple[str, ...]:
    if fmt in ("flat", "conversational"):
        return (names.prompt, names.chosen, names.rejected, "system", "sft_target")
    if fmt == "implicit":
        return (names.chosen, names.rejected, "system")
    if fmt == "unpaired":
        return (names.prompt, names.completion, names.label, "system")
    return _CONSUMED[fmt]


def is_conversational(fmt: str, record: Any, names: FieldNames) -> bool:
    """Whether a dataset whose first record is ``record`` holds chat messages."""
    if fmt in ("openai", "sharegpt", "conversational"):
        return True
    if fmt == "flat" or not isinstance(record, dict):
        return False
    if fmt == "unpaired":
        return any(isinstance(record.get(k), list | dict)
                   for k in (names.prompt, names.completion))
    key = "prompt" if fmt == "pairs" else names.chosen
    return isinstance(record.get(key), list)
