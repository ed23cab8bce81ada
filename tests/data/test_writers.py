import json

import pytest

from preftune.data.reader import read_preferences
from preftune.data.writers import WRITABLE_FORMATS, write_dataset
from preftune.errors import DataError, UsageError

RECORDS = [
    {"prompt": "How do I boil an egg?", "chosen": "Place it in boiling water for 9 minutes.",
     "rejected": "Eggs are overrated.", "system": "You are a cook.", "category": "cooking"},
    {"prompt": "How do I boil an egg?", "chosen": "Place it in boiling water for 9 minutes.",
     "rejected": "Microwave it for 10 minutes in its shell.", "category": "cooking"},
    {"prompt": "Translate 'thank you' to French.", "chosen": "Merci.", "rejected": "Danke.",
     "category": "language"},
    {"prompt": "¿Qué hora es en Tokio?", "chosen": "Depende de tu zona: Tokio usa UTC+9.",
     "rejected": "No sé.", "category": "language"},
]


def _read(path, **kwargs):
    result = read_preferences(path, **kwargs)
    assert result.dataset is not None, [str(p) for p in result.problems]
    return result.dataset


def _source(tmp_path):
    path = tmp_path / "source.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in RECORDS),
                    encoding="utf-8")
    return _read(path)


def _as_messages(row):
    """A row's pair as chat messages, so text and conversational rows compare."""
    if isinstance(row["prompt"], list):
        return row["prompt"], row["chosen"], row["rejected"]
    prompt = [{"role": "user", "content": row["prompt"]}]
    if row["system"]:
        prompt.insert(0, {"role": "system", "content": row["system"]})
    return (prompt, [{"role": "assistant", "content": row["chosen"]}],
            [{"role": "assistant", "content": row["rejected"]}])


@pytest.mark.parametrize("fmt", WRITABLE_FORMATS)
@pytest.mark.parametrize("suffix", [".json", ".jsonl", ".parquet"])
def test_round_trip_through_every_format(tmp_path, fmt, suffix):
    source = _source(tmp_path)
    path = tmp_path / f"out{suffix}"
    write_dataset(source, path, fmt)
    back = _read(path)
    assert back.format == fmt
    original = [_as_messages(r) for r in source.table.to_pylist()]
    again = [_as_messages(r) for r in back.table.to_pylist()]
    if fmt == "implicit":  # the prompt gets a newline to keep it apart from the response
        again = [([{**m, "content": m["content"].rstrip("\n")} for m in p], c, r)
                 for p, c, r in again]
    assert again == original
    assert back.table["category"].to_pylist() == [r["category"] for r in RECORDS]


def test_pairs_groups_responses_of_one_prompt(tmp_path):
    path = tmp_path / "pairs.json"
    write_dataset(_source(tmp_path), path, "pairs")
    records = json.loads(path.read_text(encoding="utf-8"))
    assert len(records) == 4  # the system prompt makes the first egg record its own
    plain = json.loads(json.dumps(records))
    assert plain[1]["responses"][0] == "Place it in boiling water for 9 minutes."
    assert plain[1]["pairs"] == [[0, 1]]


def test_csv_writes_flat_text(tmp_path):
    path = tmp_path / "out.csv"
    write_dataset(_source(tmp_path), path, "flat")
    back = _read(path)
    assert back.table["chosen"].to_pylist() == [r["chosen"] for r in RECORDS]


def test_csv_cannot_hold_messages_and_leaves_no_file(tmp_path):
    path = tmp_path / "out.csv"
    with pytest.raises(UsageError, match="CSV cannot hold the lists"):
        write_dataset(_source(tmp_path), path, "conversational")
    assert list(tmp_path.iterdir()) == [tmp_path / "source.jsonl"]


def test_multi_turn_cannot_become_flat_text(tmp_path):
    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({
        "prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"},
                   {"role": "user", "content": "Tell me a joke."}],
        "chosen": [{"role": "assistant", "content": "Why did the chicken cross the road?"}],
        "rejected": [{"role": "assistant", "content": "No."}]}) + "\n")
    out = tmp_path / "flat.jsonl"
    with pytest.raises(DataError, match="record 0: a multi-turn conversation cannot be written"):
        write_dataset(_read(path), out, "flat")
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.jsonl"]


def test_unknown_suffix_and_format(tmp_path):
    with pytest.raises(UsageError, match="unknown suffix .txt"):
        write_dataset(_source(tmp_path), tmp_path / "out.txt", "flat")
    with pytest.raises(UsageError, match="cannot write format 'csv'"):
        write_dataset(_source(tmp_path), tmp_path / "out.json", "csv")


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ".csv"])
def test_unpaired_records_round_trip(tmp_path, suffix):
    from preftune.data.transforms import unpair
    from preftune.data.writers import unpaired_records, write_records

    examples = unpair(_source(tmp_path))
    path = tmp_path / f"kto{suffix}"

    assert write_records(unpaired_records(examples), path) == 8
    back = _read(path)

    assert back.format == "unpaired"
    columns = ["prompt", "completion", "label", "system", "category"]
    assert back.table.select(columns).to_pylist() == examples.table.select(columns).to_pylist()


def test_unpaired_conversational_records_are_trl_shaped(tmp_path):
    from preftune.data.transforms import unpair
    from preftune.data.writers import unpaired_records

    path = tmp_path / "chat.jsonl"
    path.write_text(json.dumps({"prompt": [{"role": "user", "content": "hi"}],
                                "chosen": [{"role": "assistant", "content": "hello"}],
                                "rejected": [{"role": "assistant", "content": "no"}]}) + "\n")

    records = list(unpaired_records(unpair(_read(path))))

    assert records == [
        {"prompt": [{"role": "user", "content": "hi"}],
         "completion": [{"role": "assistant", "content": "hello"}], "label": True},
        {"prompt": [{"role": "user", "content": "hi"}],
         "completion": [{"role": "assistant", "content": "no"}], "label": False},
    ]
