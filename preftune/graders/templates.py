"""OpenAI's grader templates: ``{{ item.field }}`` and ``{{ sample.output_text }}`` in strings.

A template is ``{{ namespace.path }}`` with optional spaces inside the braces. The namespaces are
``item`` (the dataset row) and ``sample`` (the model's answer: ``output_text``, ``output_json``,
``output_tools``, ``choices``). Paths are JSON-path-like: ``item.a.b`` for nested objects and
``item.steps[0]`` for list elements. A string value is substituted as it is; any other value
(number, list, object) as its JSON text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from preftune.errors import GraderError

NAMESPACES = ("item", "sample")

_TEMPLATE = re.compile(r"\{\{(.*?)\}\}")
_REF = re.compile(r"^\s*([A-Za-z_]\w*)((?:\.[A-Za-z_][\w-]*|\[\d+\])*)\s*$")
_STEP = re.compile(r"\.([A-Za-z_][\w-]*)|\[(\d+)\]")


@dataclass(frozen=True)
class Ref:
    """One ``{{ namespace.path }}``: ``raw`` as written, ``path`` the keys and indices after it."""

    raw: str
    namespace: str
    path: tuple[str | int, ...]

    @property
    def dotted(self) -> str:
        """The reference as ``item.a.b[0]``, for messages."""
        parts = [self.namespace]
        for step in self.path:
            parts.append(f"[{step}]" if isinstance(step, int) else f".{step}")
        return "".join(parts)


def parse_refs(text: str, where: str) -> list[Ref]:
    """Every template in ``text``; a malformed one or an unknown namespace is a GraderError."""
    refs = []
    for match in _TEMPLATE.finditer(text):
        raw = match.group(0)
        ref = _REF.match(match.group(1))
        if ref is None:
            raise GraderError(f"{where}: template {raw} is not of the form "
                              "{{ namespace.path }}, e.g. {{ item.answer }}")
        namespace, tail = ref.group(1), ref.group(2)
        if namespace not in NAMESPACES and not tail:
            raise GraderError(f"{where}: template {raw} has no namespace; write "
                              f"{{{{ item.{namespace} }}}} or {{{{ sample.{namespace} }}}}")
        if namespace not in NAMESPACES:
            raise GraderError(f"{where}: template {raw} uses namespace '{namespace}'; "
                              "the namespaces are item and sample")
        if not tail:
            raise GraderError(f"{where}: template {raw} names no field; "
                              f"write {{{{ {namespace}.<field> }}}}")
        path = tuple(key if key else int(index) for key, index in _STEP.findall(tail))
        refs.append(Ref(raw, namespace, path))
    return refs


def lookup(context: dict[str, Any], ref: Ref) -> tuple[bool, Any]:
    """``(found, value)`` for ``ref`` in ``{"item": ..., "sample": ...}``."""
    value = context.get(ref.namespace)
    for step in ref.path:
        if isinstance(step, int):
            if not isinstance(value, list) or step >= len(value):
                return False, None
        elif not isinstance(value, dict) or step not in value:
            return False, None
        value = value[step]  # type: ignore[index]
    return True, value


def render(text: str, context: dict[str, Any], where: str) -> str:
    """``text`` with each template replaced by its value; a missing field is a GraderError."""
    refs = parse_refs(text, where)
    if not refs:
        return text
    values = {}
    for ref in refs:
        found, value = lookup(context, ref)
        if not found or value is None:
            owner = "item" if ref.namespace == "item" else "sample"
            raise GraderError(f"{where}: template {ref.raw} refers to {ref.dotted}, "
                              f"which the {owner} lacks")
        values[ref.raw] = value if isinstance(value, str) else json.dumps(value)
    return _TEMPLATE.sub(lambda m: values[m.group(0)], text)
