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


@pytest.mark.parametrize("suffix", ["jsonl", "json", "csv", "parquet"])
def test_sample_kto_writes_unpaired_examples_that_validate(cli, tmp_path, suffix):
    path = tmp_path / f"kto.{suffix}"
    result = cli("sample", "-o", path, "--num-samples", 25, "--format", "kto", "--seed", 1)
    assert result.code == 0, result.err
    assert "wrote 25 records (13 desirable and 12 undesirable examples" in result.out

    checked = cli("validate", path, "--json")

    assert checked.code == 0, checked.out
    report = json.loads(checked.out)
    assert (report["valid"], report["format"], report["kind"]) == (True, "unpaired", "unpaired")
    assert (report["records"], report["examples"]) == (25, 25)
    assert (report["desirable"], report["undesirable"]) == (13, 12)
    assert report["pairs"] == 0


def test_sample_kto_is_seeded_and_splits_sample_pairs(cli, tmp_path):
    a, b, c = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    for path, seed in ((a, 7), (b, 7), (c, 8)):
        cli("sample", "-o", path, "--num-samples", 40, "--format", "kto", "--seed", seed)
    assert a.read_bytes() == b.read_bytes()
    assert a.read_bytes() != c.read_bytes()

    records = [json.loads(line) for line in a.read_text().splitlines()]
    assert all({"prompt", "completion", "label"} <= set(r) for r in records)
    assert [r["label"] for r in records].count(True) == 20
    # Each of the 20 sample pairs gives its best answer as desirable, a worse one as not.
    by_prompt: dict[str, set[bool]] = {}
    for r in records:
        by_prompt.setdefault(r["prompt"], set()).add(r["label"])
    assert all(labels == {True, False} for labels in by_prompt.values())
    assert [r["label"] for r in records[:8]] != [True] * 8  # shuffled, not in runs


def test_validate_unpaired_prints_label_counts_and_strict_catches_conflicts(cli, tmp_path):
    path = tmp_path / "kto.jsonl"
    rows = [{"prompt": "p", "completion": "c", "label": True},
            {"prompt": "p", "completion": "c", "label": False},
            {"prompt": "q", "completion": "d", "label": True}]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    result = cli("validate", path)
    strict = cli("validate", path, "--strict")

    assert result.code == 0, result.err
    assert "kto.jsonl: unpaired (text) format, 3 records, 3 examples (2 desirable, " \
           "1 undesirable)" in result.out
    assert "conflicting labels: 1" in result.out
    assert "kto.jsonl:2: record 1: conflicting labels: same prompt and completion as " \
           "record 0, which is labelled true" in result.out
    assert strict.code == 3
    assert "0 duplicate and 1 conflicting examples (--strict)" in strict.err


def test_validate_unpaired_with_custom_field_names(cli, tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text(json.dumps({"question": "q", "answer": "a", "ok": False}) + "\n")

    result = cli("validate", path, "--prompt-field", "question", "--completion-field",
                 "answer", "--label-field", "ok", "--json")

    assert result.code == 0, result.out
    assert json.loads(result.out)["undesirable"] == 1


def test_validate_invalid_unpaired_exits_3_and_hints_at_the_kto_sample(cli, tmp_path):
    path = tmp_path / "kto.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completion": "c", "label": "good"}) + "\n")

    result = cli("validate", path)

    assert result.code == 3
    assert "kto.jsonl:1: record 0: field 'label': expected a boolean (true or false; 1 and 0 " \
           "are read as true and false), found text 'good'" in result.out
    assert "hint: see the expected shape with: preftune sample --format kto" in result.err
