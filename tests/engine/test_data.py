"""prepare_data: the rows the loop reads, for paired and unpaired algorithms."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

from preftune.config import TrainConfig
from preftune.engine import data as engine_data
from preftune.engine.data import balance_advice, prepare_data
from preftune.engine.logprobs import TokenRows
from preftune.errors import DataError
from preftune.losses.table import ALGORITHMS

WORDS = ["<pad>", "<s>", "</s>", "<unk>", *"q0 q1 q2 q3 q4 q5 q6 q7 yes no fine bad".split()]
PAIRS = [{"prompt": f"q{i}", "chosen": " yes", "rejected": " no"} for i in range(6)]
EXAMPLES = [{"prompt": f"q{i}", "completion": " fine" if i % 4 else " bad",
             "label": i % 4 != 0} for i in range(8)]  # 6 desirable, 2 undesirable
IN_RANGE = {"undesirable_weight": 2.5}  # 6 / (2.5 * 2) = 1.2: EXAMPLES draw no warning


@pytest.fixture(scope="module")
def tokenizer() -> PreTrainedTokenizerFast:
    """Whitespace words; a BOS on each prompt."""
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.post_processor = processors.TemplateProcessing(single="<s> $A",
                                                       special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                   pad_token="<pad>", unk_token="<unk>")


@pytest.fixture
def unpaired(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the run's algorithm an unpaired one, whatever the table holds today."""
    monkeypatch.setattr(engine_data, "data_kind", lambda names: "unpaired")


def _jsonl(tmp_path: Path, name: str, records: list[dict[str, Any]]) -> str:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def _cfg(dataset: str, **values: Any) -> TrainConfig:
    return TrainConfig(dataset=dataset, batch_size=3, max_length=16, max_prompt_length=8,
                       **values)


def _ids(word: str) -> list[int]:
    return [WORDS.index(word), 2]  # the word, then EOS


# ------------------------------------------------------------------------ pairs, split for KTO


def test_pairs_for_an_unpaired_algorithm_are_split_in_two(tmp_path, tokenizer, unpaired):
    data = prepare_data(_cfg(_jsonl(tmp_path, "pairs.jsonl", PAIRS)), tokenizer)

    rows = data.train.rows.to_dict()
    assert data.train.stats.examples == 12
    assert (data.train.stats.desirable, data.train.stats.undesirable) == (6, 6)
    # Each pair gives a desirable and an undesirable example pointing back to it.
    examples = sorted(zip(rows["record"], rows["label"], rows["chosen_ids"], rows["line"],
                          strict=True))
    assert examples == sorted([(r, True, _ids("yes"), r + 1) for r in range(6)]
                              + [(r, False, _ids("no"), r + 1) for r in range(6)])
    record_one = rows["record"].index(1)
    assert rows["prompt_ids"][record_one] == [1, WORDS.index("q1")]
    # Shuffled once, by the seed: the split's order (every desirable example first) would cut
    # batches of one label.
    assert rows["label"] != [True] * 6 + [False] * 6
    again = prepare_data(_cfg(_jsonl(tmp_path, "pairs.jsonl", PAIRS)), tokenizer)
    assert again.train.rows.to_dict()["record"] == rows["record"]
    other = prepare_data(_cfg(_jsonl(tmp_path, "pairs.jsonl", PAIRS), seed=7), tokenizer)
    assert other.train.rows.to_dict()["record"] != rows["record"]


def test_kl_completions_rotate_within_chunks_of_batch_size(tmp_path, tokenizer, unpaired):
    data = prepare_data(_cfg(_jsonl(tmp_path, "pairs.jsonl", PAIRS)), tokenizer)

    rows = data.train.rows.to_dict()
    completions, kl = rows["chosen_ids"], rows["rejected_ids"]
    for start in range(0, 12, 3):  # batch_size 3: each chunk [a, b, c] lends [c, a, b]
        a, b, c = completions[start:start + 3]
        assert kl[start:start + 3] == [c, a, b]


def test_the_loop_reads_unpaired_rows_with_their_labels(tmp_path, tokenizer, unpaired):
    data = prepare_data(_cfg(_jsonl(tmp_path, "kto.jsonl", EXAMPLES), **IN_RANGE), tokenizer)

    rows = TokenRows.from_dataset(data.train.rows)

    assert len(rows) == 8
    by_completion = {tuple(_ids(e["completion"].strip())): e["label"] for e in EXAMPLES}
    assert rows.labels == [by_completion[tuple(ids)] for ids in rows.chosen_ids]


def test_n_examples_and_eval_split_count_pairs_before_the_split(tmp_path, tokenizer,
                                                                unpaired):
    source = _jsonl(tmp_path, "pairs.jsonl", PAIRS)

    first = prepare_data(_cfg(source, n_examples=2), tokenizer)
    held_out = prepare_data(_cfg(source, eval_split=0.5, seed=1), tokenizer)

    assert (first.train.stats.desirable, first.train.stats.undesirable) == (2, 2)
    assert held_out.eval is not None
    train, evaluation = held_out.train.rows.to_dict(), held_out.eval.rows.to_dict()
    assert len(train["label"]) + len(evaluation["label"]) == 12
    assert evaluation["label"].count(True) == evaluation["label"].count(False)
    # Both answers to a prompt stay on one side.
    assert not set(train["record"]) & set(evaluation["record"])


def test_eval_data_gets_the_same_layout(tmp_path, tokenizer, unpaired):
    cfg = _cfg(_jsonl(tmp_path, "kto.jsonl", EXAMPLES),
               eval_dataset=_jsonl(tmp_path, "eval.jsonl", PAIRS[:2]), **IN_RANGE)

    data = prepare_data(cfg, tokenizer)

    assert data.eval is not None
    assert data.eval.rows.column_names == data.train.rows.column_names == [
        "record", "line", "prompt_ids", "chosen_ids", "rejected_ids", "label"]
    assert sorted(data.eval.rows.to_dict()["label"]) == [False, False, True, True]
    assert data.eval.stats.examples == 4


def test_the_fingerprint_covers_the_labels(tmp_path, tokenizer, unpaired):
    flipped = [{**e, "label": not e["label"]} for e in EXAMPLES]

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the balance is not what this is about
        a = prepare_data(_cfg(_jsonl(tmp_path, "a.jsonl", EXAMPLES)), tokenizer)
        b = prepare_data(_cfg(_jsonl(tmp_path, "b.jsonl", flipped)), tokenizer)

    assert a.fingerprint != b.fingerprint


@pytest.mark.skipif("kto" not in ALGORITHMS, reason="algo=kto is not in the table yet")
def test_algo_kto_trains_on_unpaired_rows(tmp_path, tokenizer):
    data = prepare_data(_cfg(_jsonl(tmp_path, "pairs.jsonl", PAIRS), algo="kto"), tokenizer)

    assert "label" in data.train.rows.column_names
    assert data.train.stats.examples == 12


# ------------------------------------------------------------------- unpaired data, paired algo


def test_unpaired_data_for_a_paired_algorithm_is_a_data_error(tmp_path, tokenizer):
    cfg = _cfg(_jsonl(tmp_path, "kto.jsonl", EXAMPLES), algo="dpo")

    with pytest.raises(DataError) as info:
        prepare_data(cfg, tokenizer)

    assert info.value.exit_code == 3
    assert info.value.message == (
        "kto.jsonl: 8 unpaired examples (prompt, completion, label), but algo=dpo trains on "
        "preference pairs (prompt, chosen, rejected)")
    assert info.value.hints[0] == "train on unpaired examples with algo=kto"
    assert "preftune sample" in info.value.hints[1]


def test_the_cli_exits_3_before_writing_a_run(tmp_path, cli):
    out = tmp_path / "run"
    result = cli("train", "--model", "tiny", "--algo", "dpo", "--dataset",
                 _jsonl(tmp_path, "kto.jsonl", EXAMPLES), "--output-dir", out)

    assert result.code == 3
    assert "error: " in result.err and "algo=dpo trains on preference pairs" in result.err
    assert "hint: train on unpaired examples with algo=kto" in result.err
    assert "Traceback" not in result.err + result.out
    assert not out.exists()


# -------------------------------------------------------------------------------- class balance


def test_balance_advice_by_hand():
    # 120 desirable, 40 undesirable, weights 1: the ratio is 3. desirable_weight * 120 / 40
    # lies in [1, 4/3] for desirable_weight in [1/3, 4/9]; 120 / (undesirable_weight * 40)
    # does for undesirable_weight in [3 / (4/3), 3] = [2.25, 3].
    advice = balance_advice(120, 40, 1.0, 1.0)

    assert advice == (
        "KTO class balance: 120 desirable and 40 undesirable training examples with "
        "desirable_weight=1 and undesirable_weight=1 give desirable_weight * n_desirable / "
        "(undesirable_weight * n_undesirable) = 3, outside [1, 4/3]; set desirable_weight in "
        "[0.333, 0.444] or undesirable_weight in [2.25, 3] (not both)")
    assert "\n" not in advice


@pytest.mark.parametrize(("desirable", "undesirable", "w_d", "w_u"), [
    (100, 100, 1.0, 1.0), (130, 100, 1.0, 1.0), (40, 120, 3.5, 1.0), (100, 100, 1.0, 0.8)])
def test_balance_in_range_gives_no_advice(desirable, undesirable, w_d, w_u):
    assert balance_advice(desirable, undesirable, w_d, w_u) is None


def test_balance_out_of_range_either_way_and_one_kind_missing():
    assert "= 0.5, outside" in balance_advice(50, 100, 1.0, 1.0)
    assert "= 0.5, outside" in balance_advice(100, 100, 1.0, 2.0)  # equal counts, unequal weights
    assert balance_advice(5, 0, 1.0, 1.0) == (
        "KTO class balance: all 5 training examples are desirable and none undesirable; KTO "
        "learns from both kinds")


def test_prepare_data_warns_once_with_the_runs_counts(tmp_path, tokenizer, unpaired):
    cfg = _cfg(_jsonl(tmp_path, "kto.jsonl", EXAMPLES), desirable_weight=1.0,
               undesirable_weight=1.0)

    with pytest.warns(UserWarning) as caught:
        prepare_data(cfg, tokenizer)

    messages = [str(w.message) for w in caught if "KTO class balance" in str(w.message)]
    assert messages == [balance_advice(6, 2, 1.0, 1.0)]
    assert "6 desirable and 2 undesirable" in messages[0]
    assert "undesirable_weight in [2.25, 3]" in messages[0]


def test_weights_in_range_give_no_warning(tmp_path, tokenizer, unpaired):
    cfg = _cfg(_jsonl(tmp_path, "kto.jsonl", EXAMPLES), **IN_RANGE)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        prepare_data(cfg, tokenizer)
