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
