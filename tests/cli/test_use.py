import csv
import io
import json
import shutil


def test_eval_compares_a_run_with_its_base(cli, trained_run, sample_pairs, tmp_path):
    per_pair = tmp_path / "scores.csv"
    result = cli("eval", trained_run, "--dataset", sample_pairs, "--compare-to", "tiny",
                 "--per-example", per_pair, "--max-length", 256, "--max-prompt-length", 128,
                 "--json")
    assert result.code == 0, result.err
    report = json.loads(result.out)
    assert report["scoring"] == "dpo, beta 0.1, reference tiny"
    run, base = report["results"][str(trained_run)], report["results"]["tiny"]
    assert run["scoring"] == "dpo, beta 0.1, reference tiny"
    # The base is the run's reference: scored by average log-prob, never against itself.
    average = "reference-free: rewards are average log-probabilities"
    assert base["scoring"] == run["reference_free"]["scoring"] == average
    rows = list(csv.DictReader(per_pair.open()))
    assert len(rows) == 64

    def accuracy(prefix: str) -> float:  # from the average log-probs, by hand
        return sum(float(r[f"{prefix}chosen_logps"]) / float(r[f"{prefix}chosen_tokens"])
                   > float(r[f"{prefix}rejected_logps"]) / float(r[f"{prefix}rejected_tokens"])
                   for r in rows) / len(rows)

    assert 0 < base["preference_accuracy"] == accuracy("tiny:") < 1
    assert run["reference_free"]["preference_accuracy"] == accuracy("")
    assert run["reference_free"]["preference_accuracy"] > base["preference_accuracy"]
    assert run["preference_accuracy"] > 0.9  # the DPO reward against tiny
    assert {"margin", "correct", "reference-free:margin", "tiny:margin"} <= set(rows[0])
    assert sum(float(r["tiny:correct"]) for r in rows) / len(rows) == base["preference_accuracy"]


def test_eval_table_names_each_columns_scoring(cli, trained_run, sample_pairs):
    result = cli("eval", trained_run, "--dataset", sample_pairs, "--compare-to", "tiny",
                 "--max-length", 256, "--max-prompt-length", 128)
    assert result.code == 0, result.err
    assert "scoring: dpo, beta 0.1, reference tiny" in result.out
    assert "tiny is the reference" in result.out
    scoring_row = next(line for line in result.out.splitlines() if line.startswith("scoring "))
    assert scoring_row.split() == ["scoring", "dpo", "reference-free", "reference-free"]


def test_eval_scores_another_run_like_the_first(cli, trained_run, sample_pairs, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(trained_run, other)
    result = cli("eval", trained_run, "--dataset", sample_pairs, "--compare-to", other,
                 "--max-length", 256, "--max-prompt-length", 128, "--json")
    assert result.code == 0, result.err
    results = json.loads(result.out)["results"]
    run, copy = results[str(trained_run)], results[str(other)]
    assert run["scoring"] == copy["scoring"] == "dpo, beta 0.1, reference tiny"
    assert "reference_free" not in run and "reference_free" not in copy
    assert copy["preference_accuracy"] == run["preference_accuracy"] > 0.9


def test_eval_table_and_errors(cli, trained_run, sample_pairs):
    table = cli("eval", "--model", "tiny", "--dataset", sample_pairs, "--max-length", 256,
                "--max-prompt-length", 128)
    assert table.code == 0, table.err
    assert "reference-free" in table.out and "preference_accuracy" in table.out
    assert cli("eval", trained_run).code == 2
    assert cli("eval", "--model", "nope-model", "--dataset", sample_pairs).code == 4


def test_generate_to_a_file(cli, trained_run, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"prompt": "Hi"}) + "\n" + json.dumps(
        {"prompt": [{"role": "user", "content": "Bye"}]}) + "\n")
    output = tmp_path / "out.jsonl"
    result = cli("generate", trained_run, "--prompts-file", prompts, "--output", output,
                 "--num-samples", 2, "--max-new-tokens", 6, "--seed", 0)
    assert result.code == 0, result.err
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert [len(r["completions"]) for r in rows] == [2, 2]
    assert rows[1]["prompt"] == [{"role": "user", "content": "Bye"}]
    printed = cli("generate", trained_run, "--prompt", "Hello", "--max-new-tokens", 4)
    assert printed.code == 0 and "completion:" in printed.out
    assert cli("generate", trained_run).code == 2


def test_chat_reads_turns_from_stdin(cli, trained_run, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("Hello there\n/reset\nWhat is 2+2?\n/exit\n"))
    result = cli("chat", trained_run, "--max-new-tokens", 5, "--seed", 1)
    assert result.code == 0, result.err
    assert result.out.count("assistant>") == 2
    assert "(conversation reset)" in result.out


def test_eval_cuts_pairs_as_the_run_was_trained(cli, trained_run, sample_pairs, tmp_path):
    run = tmp_path / "short"
    shutil.copytree(trained_run, run)
    record = json.loads((run / "config.json").read_text())
    record["config"].update(max_length=48, max_prompt_length=24)
    (run / "config.json").write_text(json.dumps(record))

    def tokens(*flags):
        per_pair = tmp_path / "scores.csv"
        assert cli("eval", run, "--dataset", sample_pairs, "--per-example", per_pair,
                   *flags).code == 0
        return [(r["chosen_tokens"], r["rejected_tokens"])
                for r in csv.DictReader(per_pair.open())]

    as_trained = tokens()
    assert as_trained == tokens("--max-length", 48, "--max-prompt-length", 24)
    assert as_trained != tokens("--max-length", 1024, "--max-prompt-length", 512)
