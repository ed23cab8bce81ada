"""``preftune graders validate|run``: local grader checks, rewards worked out by hand, and
exit 2 with one error line naming the field for a malformed grader."""

import json

import pytest

EXACT = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
         "reference": "{{item.answer}}", "operation": "eq"}
# fmt: the JSON answer equals the item's → 1; sim: rouge_l of "a b c d" against "a b x d",
# LCS "a b d" = 3 of 4 each side → F1 0.75; 0.5 * 1 + 0.5 * 0.75 = 0.875.
BOTH = {"type": "multi", "name": "both", "calculate_output": "0.5 * fmt + 0.5 * sim",
        "graders": {
            "fmt": {"type": "string_check", "name": "fmt", "operation": "eq",
                    "input": "{{sample.output_json.answer}}", "reference": "{{item.answer}}"},
            "sim": {"type": "text_similarity", "name": "sim", "evaluation_metric": "rouge_l",
                    "input": "{{sample.output_json.words}}", "reference": "{{item.words}}"}}}


@pytest.fixture
def write(tmp_path):
    def write(data, name="grader.json"):
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
        return path

    return write


def test_validate_names_the_type_and_the_item_fields_it_reads(cli, write):
    result = cli("graders", "validate", write(BOTH))
    assert result.code == 0, result.err
    assert result.out.strip() == "ok: multi grader 'both'; reads item.answer, item.words"


def test_validate_a_malformed_grader_is_exit_2_naming_the_field(cli, write):
    bad = {**BOTH, "graders": {**BOTH["graders"],
                               "fmt": {**BOTH["graders"]["fmt"], "operation": "equals"}}}
    path = write(bad)
    result = cli("graders", "validate", path)
    assert result.code == 2
    lines = result.err.splitlines()
    assert lines[0] == (f"error: {path}: grader.graders.fmt.operation: expected one of eq, ne, "
                        "like, ilike, got 'equals'")
    assert [line for line in lines if line.startswith("error:")] == [lines[0]]
    assert lines[-1].startswith("hint: see docs/graders.md")
    assert cli("graders", "run", path, "--sample", "x").code == 2


def test_validate_a_file_that_is_not_json(cli, write):
    result = cli("graders", "validate", write('{"type": "string_check",\n  name: 1}'))
    assert result.code == 2 and "not valid JSON" in result.err and "line 2" in result.err


def test_validate_a_missing_file(cli, tmp_path):
    result = cli("graders", "validate", tmp_path / "nope.json")
    assert result.code == 2 and "cannot read the grader" in result.err


def test_run_prints_the_reward_and_sub_scores(cli, write):
    result = cli("graders", "run", write(BOTH), "--sample", '{"answer": "7", "words": "a b c d"}',
                 "--item", '{"answer": "7", "words": "a b x d"}')
    assert result.code == 0, result.err
    lines = result.out.splitlines()
    assert lines[0].startswith("reward 0.875  (multi grader 'both'")
    assert lines[1:] == ["  fmt  1", "  sim  0.75"]


def test_run_from_files_as_json(cli, write, tmp_path):
    sample = tmp_path / "answer.txt"
    sample.write_text("42", encoding="utf-8")
    item = write({"answer": "42"}, "row.json")
    result = cli("graders", "run", write(EXACT), "--sample-file", sample, "--item-file", item,
                 "--json")
    assert result.code == 0, result.err
    body = json.loads(result.out)
    assert body["reward"] == 1.0 and body["metadata"]["name"] == "exact"
    assert body["metadata"]["errors"]["invalid_variable_error"] is False


def test_run_a_grader_that_cannot_score_prints_its_error_and_exits_0(cli, write):
    result = cli("graders", "run", write(EXACT), "--sample", "42", "--item", '{"solution": 1}')
    assert result.code == 0, result.err
    assert result.out.startswith("reward 0  (string_check grader 'exact'")
    assert "grader error: grader 'exact' reference: template {{item.answer}} refers to " \
           "item.answer, which the item lacks" in result.out


def test_run_a_python_grader(cli, write):
    # 1 - |len("hello") - len("abc")| / 10 = 1 - 2/10 = 0.8
    grader = {"type": "python", "name": "len", "source": (
        "def grade(sample, item):\n"
        "    return 1 - abs(len(sample['output_text']) - len(item['answer'])) / 10\n")}
    result = cli("graders", "run", write(grader), "--sample", "hello",
                 "--item", '{"answer": "abc"}')
    assert result.code == 0, result.err
    assert result.out.startswith("reward 0.8  (python grader 'len'")


@pytest.mark.parametrize(("args", "says"), [
    ([], "give the model's answer with --sample TEXT or --sample-file PATH"),
    (["--sample", "x", "--sample-file", "f.txt"], "give --sample or --sample-file, not both"),
    (["--sample", "x", "--item", "{nope"], "--item: not valid JSON"),
    (["--sample", "x", "--item", "[1]"], "--item: expected a JSON object"),
    (["--sample", "x", "--embedding-base-url", "http://127.0.0.1:9/v1"],
     "give --embedding-base-url and --embedding-model together"),
])
def test_run_usage_errors_are_exit_2(cli, write, args, says):
    result = cli("graders", "run", write(EXACT), *args)
    assert result.code == 2 and f"error: {says}" in result.err, result.err


def test_run_a_cosine_grader_against_an_embedding_endpoint(cli, write, embeddings, monkeypatch):
    # letter counts: "abb" = (1, 2) over a, b and "ab" = (1, 1): 3 / (sqrt 5 · sqrt 2) = 0.9487
    monkeypatch.setenv("PREFTUNE_EMBEDDING_API_KEY", "sk-embed")
    cosine = {"type": "text_similarity", "name": "close", "evaluation_metric": "cosine",
              "input": "{{sample.output_text}}", "reference": "{{item.answer}}"}
    result = cli("graders", "run", write(cosine), "--sample", "abb", "--item",
                 '{"answer": "ab"}', "--embedding-base-url", embeddings.base_url,
                 "--embedding-model", "letters-1")
    assert result.code == 0, result.err
    assert result.out.startswith("reward 0.948683  (text_similarity grader 'close'")
    assert embeddings.seen[0][0] == "Bearer sk-embed"
    assert embeddings.seen[0][1]["model"] == "letters-1"
