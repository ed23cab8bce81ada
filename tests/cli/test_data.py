import json
from collections import Counter


def _flat(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


ROWS = [{"prompt": f"question {i}", "chosen": f"a good answer {i}", "rejected": f"bad {i}",
         "dialect": "msa" if i % 3 else "egyptian"} for i in range(60)]


def test_split(cli, tmp_path):
    src = _flat(tmp_path / "d.jsonl", ROWS)
    result = cli("data", "split", src, "--train-output", tmp_path / "train.jsonl",
                 "--eval-output", tmp_path / "eval.parquet", "--eval-fraction", 0.25)
    assert result.code == 0, result.err
    train = (tmp_path / "train.jsonl").read_text().splitlines()
    assert len(train) == 45
    assert "wrote 15 pairs" in result.out


def test_convert_with_normalization(cli, tmp_path):
    src = _flat(tmp_path / "d.jsonl", [{"prompt": "ﬁx مَرْحَبًا", "chosen": "Ｏｋ",
                                        "rejected": "no"}])
    out = tmp_path / "o.jsonl"
    result = cli("data", "convert", src, "-o", out, "--to", "openai", "--normalize",
                 "nfkc,arabic")
    assert result.code == 0, result.err
    record = json.loads(out.read_text())
    assert record["input"]["messages"] == [{"role": "user", "content": "fix مرحبا"}]
    assert record["preferred_output"] == [{"role": "assistant", "content": "Ok"}]


def test_balance(cli, tmp_path):
    src = _flat(tmp_path / "d.jsonl", ROWS)
    out = tmp_path / "b.jsonl"
    result = cli("data", "balance", src, "--by", "dialect", "--target", "msa=0.5,egyptian=0.5",
                 "-o", out)
    assert result.code == 0, result.err
    counts = Counter(json.loads(line)["dialect"] for line in out.read_text().splitlines())
    assert counts == {"msa": 20, "egyptian": 20}
    assert "egyptian: 20 (33.3%) → 20 (50.0%)" in result.out


def test_data_commands_refuse_invalid_data(cli, tmp_path):
    src = _flat(tmp_path / "d.jsonl", [{"prompt": "p", "chosen": "", "rejected": "r"}])
    result = cli("data", "convert", src, "-o", tmp_path / "o.jsonl")
    assert result.code == 3
    assert "d.jsonl:1: record 0: field 'chosen': empty text" in result.err
    assert not (tmp_path / "o.jsonl").exists()


def test_balance_bad_target(cli, tmp_path):
    src = _flat(tmp_path / "d.jsonl", ROWS)
    result = cli("data", "balance", src, "--by", "dialect", "--target", "msa=0.5",
                 "-o", tmp_path / "b.jsonl")
    assert result.code == 2
    assert "sum to 1" in result.err
