import json
from collections import Counter

import pytest

from preftune.data.reader import read_preferences
from preftune.data.transforms import balance, normalize, parse_targets, split
from preftune.errors import UsageError


def _dataset(tmp_path, records, name="d.jsonl"):
    path = tmp_path / name
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records),
                    encoding="utf-8")
    result = read_preferences(path)
    assert result.dataset is not None, [str(p) for p in result.problems]
    return result.dataset


def test_nfkc_folds_compatibility_characters(tmp_path):
    ds = _dataset(tmp_path, [{"prompt": "ﬁnd Ｘ²", "chosen": "ｆｕｌｌ", "rejected": "①"}])
    row = normalize(ds, ["nfkc"]).table.to_pylist()[0]
    assert (row["prompt"], row["chosen"], row["rejected"]) == ("find X2", "full", "1")


def test_arabic_strips_diacritics_and_tatweel_and_unifies_alef(tmp_path):
    ds = _dataset(tmp_path, [{"prompt": "مَرْحَبًا بِكُم", "chosen": "أهلاً وسهـــلاً",
                              "rejected": "إلى آخر ٱلكلام"}])
    row = normalize(ds, ["arabic"]).table.to_pylist()[0]
    assert row["prompt"] == "مرحبا بكم"
    assert row["chosen"] == "اهلا وسهلا"
    assert row["rejected"] == "الى اخر الكلام"


def test_normalize_reaches_message_contents(tmp_path):
    ds = _dataset(tmp_path, [{
        "prompt": [{"role": "system", "content": "كُن مفيدًا"},
                   {"role": "user", "content": "ﬁx"}],
        "chosen": [{"role": "assistant", "content": "أجل"}],
        "rejected": [{"role": "assistant", "content": "لا"}]}])
    row = normalize(ds, ["nfkc", "arabic"]).table.to_pylist()[0]
    assert row["prompt"] == [{"role": "system", "content": "كن مفيدا"},
                             {"role": "user", "content": "fix"}]
    assert row["chosen"] == [{"role": "assistant", "content": "اجل"}]


def test_unknown_normalization():
    with pytest.raises(UsageError, match="unknown normalization 'lower'"):
        normalize(None, ["lower"])  # type: ignore[arg-type]


def _many(tmp_path, n_prompts=50, per_prompt=3):
    records = [{"prompt": f"question {p}", "chosen": f"good {p}.{k}", "rejected": f"bad {p}.{k}",
                "category": "a" if p % 4 else "b"}
               for p in range(n_prompts) for k in range(per_prompt)]
    return _dataset(tmp_path, records)


def test_split_is_deterministic_and_keeps_prompts_together(tmp_path):
    ds = _many(tmp_path)
    train, evaluation = split(ds, 0.2, seed=3)
    again_train, again_eval = split(ds, 0.2, seed=3)
    assert train.table.equals(again_train.table) and evaluation.table.equals(again_eval.table)
    assert len(train) + len(evaluation) == len(ds) == 150
    assert len(evaluation) == 30  # 10 whole prompts of 3 pairs
    assert not set(train.table["prompt"].to_pylist()) & set(evaluation.table["prompt"].to_pylist())
    other_train, _ = split(ds, 0.2, seed=4)
    assert not other_train.table.equals(train.table)


def test_split_rejects_bad_fraction(tmp_path):
    with pytest.raises(UsageError, match="between 0 and 1, got 1.5"):
        split(_many(tmp_path), 1.5)


def test_parse_targets():
    assert parse_targets("msa=0.3, egyptian=0.7") == {"msa": 0.3, "egyptian": 0.7}
    with pytest.raises(UsageError, match="sum to 1, they sum to 0.9"):
        parse_targets("a=0.3,b=0.6")
    with pytest.raises(UsageError, match="cannot read target 'a:0.5'"):
        parse_targets("a:0.5,b=0.5")


def test_balance_downsample_hits_the_target_without_repeats(tmp_path):
    ds = _many(tmp_path)  # a: 111 pairs, b: 39 pairs
    balanced, summary = balance(ds, "category", {"a": 0.5, "b": 0.5}, seed=0)
    counts = Counter(balanced.table["category"].to_pylist())
    assert counts == {"a": 39, "b": 39}
    assert summary.before == {"a": 111, "b": 39} and summary.oversampled == {}
    rows = list(zip(balanced.table["chosen"].to_pylist(), balanced.table["rejected"].to_pylist(),
                    strict=True))
    assert len(set(rows)) == len(rows)


def test_balance_resample_reaches_the_size(tmp_path):
    ds = _many(tmp_path)
    balanced, summary = balance(ds, "category", {"a": 0.3, "b": 0.7}, seed=1, size=200,
                                mode="resample")
    assert Counter(balanced.table["category"].to_pylist()) == {"a": 60, "b": 140}
    assert summary.oversampled == {"b": 101}
    again, _ = balance(ds, "category", {"a": 0.3, "b": 0.7}, seed=1, size=200, mode="resample")
    assert again.table.equals(balanced.table)


def test_balance_errors(tmp_path):
    ds = _many(tmp_path)
    with pytest.raises(UsageError, match="no column 'dialect'"):
        balance(ds, "dialect", {"a": 1.0})
    with pytest.raises(UsageError, match="category 'c' has no pairs"):
        balance(ds, "category", {"a": 0.5, "c": 0.5})


# ---------------------------------------------------------------------------------- unpair


def test_unpair_gives_a_desirable_and_an_undesirable_example_per_pair(tmp_path):
    from preftune.data.records import UnpairedDataset
    from preftune.data.transforms import unpair

    ds = _dataset(tmp_path, [
        {"prompt": "p0", "chosen": "good 0", "rejected": "bad 0", "sft_target": "t", "cat": "a"},
        {"prompt": "p1", "chosen": "good 1", "rejected": "bad 1", "system": "s", "cat": "b"}])

    examples = unpair(ds)

    assert isinstance(examples, UnpairedDataset)
    assert (len(examples), examples.desirable, examples.undesirable) == (4, 2, 2)
    assert examples.table.to_pylist() == [
        {"record": 0, "line": 1, "prompt": "p0", "completion": "good 0", "label": True,
         "system": None, "cat": "a"},
        {"record": 1, "line": 2, "prompt": "p1", "completion": "good 1", "label": True,
         "system": "s", "cat": "b"},
        {"record": 0, "line": 1, "prompt": "p0", "completion": "bad 0", "label": False,
         "system": None, "cat": "a"},
        {"record": 1, "line": 2, "prompt": "p1", "completion": "bad 1", "label": False,
         "system": "s", "cat": "b"},
    ]


def test_unpair_orders_examples_as_trl_does(tmp_path):
    """TRL unpairs in blocks of 1,000 pairs (datasets.map's batch size), chosen ones first."""
    import datasets
    from trl.data_utils import unpair_preference_dataset

    from preftune.data.transforms import unpair

    rows = [{"prompt": f"q{i}", "chosen": f"yes {i}", "rejected": f"no {i}"}
            for i in range(1500)]
    ours = unpair(_dataset(tmp_path, rows)).table
    trl = unpair_preference_dataset(datasets.Dataset.from_list(rows))

    assert ours["completion"].to_pylist() == trl["completion"]
    assert ours["label"].to_pylist() == trl["label"]
    assert ours["prompt"].to_pylist() == trl["prompt"]
    assert ours["completion"][999].as_py() == "yes 999"
    assert ours["completion"][1000].as_py() == "no 0"


def test_unpair_of_conversational_pairs_keeps_messages(tmp_path):
    from preftune.data.transforms import unpair

    ds = _dataset(tmp_path, [{"prompt": [{"role": "user", "content": "hi"}],
                              "chosen": [{"role": "assistant", "content": "hello"}],
                              "rejected": [{"role": "assistant", "content": "go away"}]}])

    examples = unpair(ds)

    assert examples.conversational
    assert examples.table["completion"].to_pylist() == [
        [{"role": "assistant", "content": "hello"}],
        [{"role": "assistant", "content": "go away"}]]


def test_unpair_of_no_pairs_has_the_unpaired_columns(tmp_path):
    import pyarrow as pa

    from preftune.data.records import UNPAIRED_COLUMNS
    from preftune.data.transforms import unpair

    empty = _dataset(tmp_path, [{"prompt": "p", "chosen": "c", "rejected": "r"}]).select(
        pa.array([], type=pa.int64()))

    examples = unpair(empty)

    assert len(examples) == 0
    assert tuple(examples.table.column_names) == UNPAIRED_COLUMNS
    assert str(examples.table.schema.field("label").type) == "bool"


def test_split_and_normalize_take_unpaired_examples(tmp_path):
    from preftune.data.records import UnpairedDataset

    path = tmp_path / "kto.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"ﬁ {i // 2}", "completion": f"c{i}",
                                        "label": i % 2 == 0}) + "\n" for i in range(40)),
                    encoding="utf-8")
    ds = read_preferences(path).dataset

    train, held_out = split(normalize(ds, ["nfkc"]), 0.25, seed=3)

    assert isinstance(train, UnpairedDataset) and isinstance(held_out, UnpairedDataset)
    assert len(train) + len(held_out) == 40 and len(held_out) == 10
    assert set(train.table["prompt"].to_pylist()).isdisjoint(held_out.table["prompt"].to_pylist())
    assert all(p.startswith("fi ") for p in train.table["prompt"].to_pylist())
