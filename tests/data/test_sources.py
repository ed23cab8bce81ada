import json

import datasets
import pytest

from preftune.data.reader import read_preferences
from preftune.data.sources import jsonl_line_numbers, resolve_source
from preftune.errors import MissingError, UsageError

ROWS = [{"prompt": "Name a prime number.", "chosen": "7 is prime.", "rejected": "8 is prime."},
        {"prompt": "Boiling point of water at sea level?", "chosen": "100 °C.",
         "rejected": "50 °C."}]


def test_kinds_come_from_content(tmp_path):
    array = tmp_path / "data.txt"
    array.write_text(json.dumps(ROWS, indent=2))
    lines = tmp_path / "data.json"
    lines.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    parquet = tmp_path / "noext"
    datasets.Dataset.from_list(ROWS).to_parquet(str(parquet))
    assert resolve_source(array).kind == "json"
    assert resolve_source(lines).kind == "jsonl"
    assert resolve_source(parquet).kind == "parquet"
    assert read_preferences(parquet).dataset is not None


def test_pretty_printed_single_object_is_a_top_level_error(tmp_path):
    path = tmp_path / "one.json"
    path.write_text(json.dumps(ROWS[0], indent=2))
    result = read_preferences(path)
    assert result.dataset is None
    assert "wrong top-level type" in result.problems[0].message
    assert "found an object with keys prompt, chosen, rejected" in result.problems[0].message


def test_not_found_and_plain_directory_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="dataset not found"):
        resolve_source(tmp_path / "missing.jsonl")
    with pytest.raises(UsageError, match="not a dataset saved with datasets' save_to_disk"):
        resolve_source(tmp_path)


def test_missing_split_of_a_saved_dataset_dict(tmp_path):
    path = tmp_path / "dd"
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS),
                          "validation": datasets.Dataset.from_list(ROWS[:1])}
                         ).save_to_disk(str(path))
    assert len(read_preferences(f"{path}@validation").dataset) == 1
    with pytest.raises(UsageError, match="no split 'test'; the dataset has train, validation"):
        read_preferences(f"{path}@test")


def test_shuffled_saved_dataset_keeps_its_order(tmp_path):
    path = tmp_path / "shuffled"
    ds = datasets.Dataset.from_list(ROWS * 3).select([5, 0, 3])
    ds.save_to_disk(str(path))
    table = read_preferences(path).dataset.table
    assert table["prompt"].to_pylist() == [ROWS[1]["prompt"], ROWS[0]["prompt"],
                                           ROWS[1]["prompt"]]


def test_hub_spec_goes_through_load_dataset(monkeypatch):
    """The hub cannot be reached here: the same path runs on a dataset built locally."""
    calls = []

    def fake_load_dataset(name, config=None, split=None):
        calls.append((name, config, split))
        return datasets.Dataset.from_list(ROWS)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    result = read_preferences("hf:someone/prefs:default@test")
    assert calls == [("someone/prefs", "default", "test")]
    assert result.format == "flat" and len(result.dataset) == 2
    assert result.source == "hf:someone/prefs:default@test"
    read_preferences("hf:someone/prefs")
    assert calls[-1] == ("someone/prefs", None, "train")


def test_unreachable_hub_is_exit_4(monkeypatch):
    def offline(*args, **kwargs):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(MissingError, match="could not load hf:x/y from the Hugging Face hub"):
        read_preferences("hf:x/y")
    with pytest.raises(UsageError, match="empty dataset name"):
        read_preferences("hf:")


def test_jsonl_line_numbers_skip_blank_lines(tmp_path):
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"a": 1}\n\n   \r\n{"a": 2}\r\n\n{"a": 3}')
    assert jsonl_line_numbers(path) == [1, 4, 6]


def test_jsonl_line_numbers_refuse_lines_that_are_not_one_object(tmp_path):
    split = tmp_path / "split.jsonl"
    split.write_text('{"a": 1,\n "b": 2}\n')
    assert jsonl_line_numbers(split) is None
    array = tmp_path / "array.jsonl"
    array.write_text('{"a": 1}\n[1, 2]\n')
    assert jsonl_line_numbers(array) is None


def test_bad_byte_in_a_json_array_is_credited_to_its_record(tmp_path):
    path = tmp_path / "u.json"
    path.write_bytes(b'[\n {"prompt": "a", "chosen": "b", "rejected": "c"},\n'
                     b' {"prompt": "a",\n  "chosen": "caf\xe9", "rejected": "c"}\n]')
    problem = read_preferences(path).problems[0]
    assert (problem.record, problem.line, problem.column) == (1, 4, 17)
    assert str(problem).startswith("u.json:4:17: record 1: invalid UTF-8: byte 0xe9")


def test_empty_array_is_not_an_empty_file(tmp_path):
    path = tmp_path / "e.json"
    path.write_text("[ ]\n")
    assert [p.message for p in read_preferences(path).problems] == [
        "no records: the array is empty"]


def test_bad_byte_in_a_metadata_column_of_flat_jsonl(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b'{"prompt": "a", "chosen": "b", "rejected": "c", "tag": "ok"}\n'
                     b'{"prompt": "a", "chosen": "b", "rejected": "c", "tag": "caf\xe9"}\n')
    result = read_preferences(path)
    assert result.dataset is None
    assert [(p.record, p.line) for p in result.problems] == [(1, 2)]
    assert "invalid UTF-8: byte 0xe9" in result.problems[0].message
