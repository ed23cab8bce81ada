import json

import pytest

FORMATS = ["pairs", "flat", "conversational", "openai", "sharegpt", "implicit"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_sample_then_validate(cli, tmp_path, fmt):
    path = tmp_path / "sample.jsonl"
    result = cli("sample", "--output", path, "--num-samples", 25, "--format", fmt, "--seed", 1)
    assert result.code == 0, result.err
    assert "wrote 25 records" in result.out
    checked = cli("validate", path, "--json")
    assert checked.code == 0, checked.out
    report = json.loads(checked.out)
    assert report["valid"] is True
    assert report["format"] == fmt
    assert report["records"] == 25
    assert report["pairs"] >= 25


def test_sample_is_deterministic_for_a_seed(cli, tmp_path):
    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    cli("sample", "-o", a, "--num-samples", 30, "--seed", 7)
    cli("sample", "-o", b, "--num-samples", 30, "--seed", 7)
    cli("sample", "-o", c, "--num-samples", 30, "--seed", 8)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()
    records = json.loads(a.read_text())
    assert len(records) == 30
    assert all({"prompt", "responses", "pairs", "sft_target"} <= set(r) for r in records)
    assert len({r["prompt"] for r in records}) > 20


def test_sample_rejects_unknown_format(cli, tmp_path):
    result = cli("sample", "-o", tmp_path / "x.json", "--format", "yaml")
    assert result.code == 2
    assert "unknown sample format 'yaml'" in result.err


def test_validate_prints_report(cli, tmp_path):
    path = tmp_path / "s.json"
    cli("sample", "-o", path, "--num-samples", 12)
    result = cli("validate", path)
    assert result.code == 0
    assert "s.json: pairs (text) format, 12 records" in result.out
    assert "duplicate pairs: 0" in result.out
    assert "length (characters)" in result.out
    assert result.out.rstrip().endswith("valid")


def test_validate_invalid_exits_3_with_problems_and_hint(cli, tmp_path):
    path = tmp_path / "data.json"
    path.write_text(json.dumps([{"prompt": "Hi", "responses": ["a", "b"]}], indent=2))
    result = cli("validate", path)
    assert result.code == 3
    assert "data.json:2: record 0: missing required field 'pairs'" in result.out
    assert "error: data.json is not valid: 1 problem found" in result.err
    assert "hint: see the expected shape with: preftune sample" in result.err


def test_validate_strict_fails_on_duplicates(cli, tmp_path):
    path = tmp_path / "dup.jsonl"
    row = json.dumps({"prompt": "p", "chosen": "c", "rejected": "r"})
    path.write_text(f"{row}\n{row}\n")
    assert cli("validate", path).code == 0
    strict = cli("validate", path, "--strict")
    assert strict.code == 3
    assert "1 duplicate and 0 identical pairs" in strict.err


def test_validate_with_a_local_tokenizer(cli, tmp_path, word_tokenizer_dir):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"prompt": "one two three", "chosen": "four five",
                                "rejected": "six"}) + "\n")
    result = cli("validate", path, "--json", "--tokenizer", word_tokenizer_dir)
    assert result.code == 0, result.err
    tokens = json.loads(result.out)["tokens"]
    assert (tokens["prompt"]["max"], tokens["chosen"]["max"], tokens["rejected"]["max"]) == (
        3, 2, 1)


def test_missing_tokenizer_exits_4(cli, tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n")
    result = cli("validate", path, "--tokenizer", tmp_path / "no-tokenizer")
    assert result.code == 4
    assert "error: no such directory:" in result.err
