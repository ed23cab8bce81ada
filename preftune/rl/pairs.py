"""Scored groups to a preference dataset: the best completion of each group against the worst.

Reads the JSONL that ``Environment.process`` writes (one group per line, with ``prompt``,
``system``, ``completions`` and ``scores``; ``messages`` when sampled through chat) and writes
records ``preftune train --dataset`` reads: flat ``prompt``/``chosen``/``rejected`` (plus
``system``) for completion-API groups, conversational messages for chat groups.

Groups written by other Atropos tools carry only ``tokens``/``masks``/``scores``; given a
tokenizer, their prompt is decoded from the masked (-100) positions and each completion from
the rest.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from preftune.data.writers import write_records
from preftune.errors import DataError
from preftune.rl.envs.base import PROMPT_MASK


@dataclass
class PairsSummary:
    groups: int = 0
    pairs: int = 0
    equal_scores: int = 0  # groups skipped: nothing to prefer
    same_text: int = 0  # groups skipped: best and worst completions read the same


def to_pairs(scored_jsonl: str | os.PathLike[str], output: str | os.PathLike[str],
             tokenizer: Any = None) -> PairsSummary:
    """Write one (best, worst) pair per group with unequal scores; returns the counts."""
    summary = PairsSummary()

    def pairs() -> Iterator[dict[str, Any]]:
        for line, group in _groups(scored_jsonl):
            summary.groups += 1
            completions = _completions(group, tokenizer, scored_jsonl, line)
            scores = group["scores"]
            best = max(range(len(scores)), key=scores.__getitem__)
            worst = min(range(len(scores)), key=scores.__getitem__)
            if scores[best] == scores[worst]:
                summary.equal_scores += 1
                continue
            if completions[best].strip() == completions[worst].strip():
                summary.same_text += 1
                continue
            summary.pairs += 1
            yield _record(group, completions[best], completions[worst])

    records = list(pairs())
    if not records:
        raise DataError(f"{scored_jsonl}: none of its {summary.groups} groups has completions "
                        "with different scores, so there is no pair to write",
                        ["sample more completions per group (group_size) or at a higher "
                         "temperature, or use rewards that tell completions apart"])
    write_records(records, output)
    return summary


def _groups(path: str | os.PathLike[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    with open(path, encoding="utf-8") as f:
        for line, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                group = json.loads(text)
            except json.JSONDecodeError as e:
                raise DataError(f"{path} line {line}: not valid JSON ({e.msg})",
                                ["each line must be one scored group as process writes it"]
                                ) from e
            scores = group.get("scores") if isinstance(group, dict) else None
            if not isinstance(scores, list) or not scores:
                raise DataError(f"{path} line {line}: expected a group with a non-empty "
                                "'scores' list", ["is this a file written by process?"])
            yield line, group


def _completions(group: dict[str, Any], tokenizer: Any, path: Any, line: int) -> list[str]:
    texts = group.get("completions")
    if texts is None and tokenizer is not None and "tokens" in group:
        texts = [tokenizer.decode([t for t, m in zip(tokens, mask, strict=True)
                                   if m != PROMPT_MASK], skip_special_tokens=True)
                 for tokens, mask in zip(group["tokens"], group["masks"], strict=True)]
        group["prompt"] = tokenizer.decode(
            [t for t, m in zip(group["tokens"][0], group["masks"][0], strict=True)
             if m == PROMPT_MASK], skip_special_tokens=True)
    if texts is None:
        raise DataError(f"{path} line {line}: the group has no 'completions' texts",
                        ["pass a tokenizer to decode them from tokens and masks"])
    if not isinstance(group.get("prompt"), str) and not group.get("messages"):
        raise DataError(f"{path} line {line}: the group has no 'prompt' text",
                        ["is this a file written by process?"])
    if len(texts) != len(group["scores"]):
        raise DataError(f"{path} line {line}: {len(texts)} completions but "
                        f"{len(group['scores'])} scores")
    return [str(t) for t in texts]


def _record(group: dict[str, Any], chosen: str, rejected: str) -> dict[str, Any]:
    messages = group.get("messages")
    if messages:
        return {"prompt": messages,
                "chosen": [{"role": "assistant", "content": chosen}],
                "rejected": [{"role": "assistant", "content": rejected}]}
    record = {"prompt": group["prompt"], "chosen": chosen, "rejected": rejected}
    if group.get("system"):
        record["system"] = group["system"]
    return record
