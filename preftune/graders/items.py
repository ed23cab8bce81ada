"""Reinforcement fine-tuning items: a row's ``messages`` checked as a chat prompt, and turned
into the ``{role, content}`` text messages a chat server takes. The job service checks an RFT
file with these before any sampling; the RL dataset environment samples with them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ROLES = ("system", "developer", "user", "assistant")


def messages_problem(row: Mapping[str, Any], field: str) -> str | None:
    """What is wrong with ``row[field]`` as a chat prompt, naming the message and key; None
    when it is a non-empty list of ``{role, content}`` with a user message in it. Content is
    text, or OpenAI's list of ``{"type": "text", "text": ...}`` parts."""
    if field not in row:
        return f"field {field!r} is missing (the row has {', '.join(row) or 'no fields'})"
    messages = row[field]
    if not isinstance(messages, list) or not messages:
        return f"field {field!r}: expected a non-empty list of messages, found {messages!r:.60}"
    for j, message in enumerate(messages):
        where = f"{field}[{j}]"
        if not isinstance(message, Mapping):
            return f"{where}: expected an object with role and content"
        if message.get("role") not in ROLES:
            return f"{where}.role: expected one of {', '.join(ROLES)}, found " \
                   f"{message.get('role')!r}"
        if _text(message.get("content")) is None:
            return f"{where}.content: expected text (or a list of text parts), found " \
                   f"{message.get('content')!r:.60}"
    if not any(m["role"] == "user" for m in messages):
        return f"field {field!r}: no message has role 'user'"
    return None


def chat_messages(messages: list[Mapping[str, Any]]) -> list[dict[str, str]]:
    """``{role, content}`` dicts with text content (text parts joined); checked beforehand
    by ``messages_problem``. OpenAI's ``developer`` role is sent as ``system``."""
    out = []
    for m in messages:
        role = "system" if m["role"] == "developer" else str(m["role"])
        out.append({"role": role, "content": _text(m["content"]) or ""})
    return out


def _text(content: Any) -> str | None:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and content and all(
            isinstance(p, Mapping) and p.get("type") in ("text", "input_text")
            and isinstance(p.get("text"), str) for p in content):
        return "".join(p["text"] for p in content)
    return None
