"""Scored groups to preference pairs that preftune's own reader accepts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from preftune.data.validate import load_preferences
from preftune.errors import DataError
from preftune.rl.pairs import to_pairs


def write_groups(path: Path, groups: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(g) + "\n" for g in groups), encoding="utf-8")
    return path


def test_best_against_worst_and_equal_groups_skipped(tmp_path):
    groups = [
        {"prompt": "Name a colour.", "system": "Be brief.",
         "completions": ["red", "blue, I think", "no idea"], "scores": [0.5, 1.0, -0.5]},
        {"prompt": "Tie?", "system": None, "completions": ["a", "b"], "scores": [0.3, 0.3]},
        {"prompt": "Same text?", "system": None, "completions": ["x ", "x"],
         "scores": [1.0, 0.0]},
        {"prompt": "Count to two.", "system": None, "completions": ["1 2", "1"],
         "scores": [2.0, 0.0]},
    ]
    summary = to_pairs(write_groups(tmp_path / "g.jsonl", groups), tmp_path / "pairs.jsonl")
    assert (summary.groups, summary.pairs, summary.equal_scores, summary.same_text) == (4, 2, 1, 1)
    rows = [json.loads(line) for line in (tmp_path / "pairs.jsonl").read_text().splitlines()]
    assert rows == [
        {"prompt": "Name a colour.", "chosen": "blue, I think", "rejected": "no idea",
         "system": "Be brief."},
        {"prompt": "Count to two.", "chosen": "1 2", "rejected": "1"}]
    dataset = load_preferences(str(tmp_path / "pairs.jsonl"))
    assert len(dataset) == 2


def test_chat_groups_become_conversational_pairs(tmp_path):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Name a colour."}]
    groups = [{"prompt": "Name a colour.", "system": "Be brief.", "messages": messages,
               "completions": ["red", "I cannot say"], "scores": [1.0, 0.0]}]
    to_pairs(write_groups(tmp_path / "g.jsonl", groups), tmp_path / "pairs.jsonl")
    row = json.loads((tmp_path / "pairs.jsonl").read_text())
    assert row == {"prompt": messages, "chosen": [{"role": "assistant", "content": "red"}],
                   "rejected": [{"role": "assistant", "content": "I cannot say"}]}
    dataset = load_preferences(str(tmp_path / "pairs.jsonl"))
    assert len(dataset) == 1 and dataset.conversational


def test_token_only_groups_are_decoded_with_a_tokenizer(tmp_path):
    from preftune.models.load import load_tokenizer

    tokenizer = load_tokenizer("tiny")
    prompt = tokenizer("Name a colour.")["input_ids"]
    answers = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in ("red", "blue sky")]
    groups = [{"tokens": [prompt + a for a in answers],
               "masks": [[-100] * len(prompt) + a for a in answers], "scores": [0.0, 1.0]}]
    path = write_groups(tmp_path / "g.jsonl", groups)
    with pytest.raises(DataError, match="line 1: the group has no 'completions'"):
        to_pairs(path, tmp_path / "pairs.jsonl")
    to_pairs(path, tmp_path / "pairs.jsonl", tokenizer)
    row = json.loads((tmp_path / "pairs.jsonl").read_text())
    assert row == {"prompt": "Name a colour.", "chosen": "blue sky", "rejected": "red"}


def test_no_pairs_or_a_bad_line_is_a_data_error(tmp_path):
    flat = [{"prompt": "p", "completions": ["a", "b"], "scores": [1.0, 1.0]}]
    with pytest.raises(DataError, match="none of its 1 groups"):
        to_pairs(write_groups(tmp_path / "g.jsonl", flat), tmp_path / "pairs.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"completions": ["a", "b"], "scores": [1, 0]}\n'
                                        '{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 1: the group has no 'prompt'"):
        to_pairs(tmp_path / "bad.jsonl", tmp_path / "pairs.jsonl")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "p", "completions": ["a", "b"], '
                                        '"scores": [1, 0]}\n{oops\n', encoding="utf-8")
    with pytest.raises(DataError, match="line 2: not valid JSON"):
        to_pairs(tmp_path / "bad.jsonl", tmp_path / "pairs.jsonl")
    assert not (tmp_path / "pairs.jsonl").exists()  # nothing half-written
