"""grade() for each grader type, multi's formula over sub-scores, settings, and check_item."""

import pytest

from preftune.errors import GraderError
from preftune.graders import GraderSettings, check_item, grade, normalize_sample, validate


def check(operation, reference="{{item.answer}}"):
    return {"type": "string_check", "name": "fmt", "input": "{{sample.output_text}}",
            "reference": reference, "operation": operation}


@pytest.mark.parametrize(("operation", "output", "expected"), [
    ("eq", "Paris", 1.0), ("eq", "paris", 0.0),
    ("ne", "Lyon", 1.0), ("ne", "Paris", 0.0),
    ("like", "It is Paris.", 1.0), ("like", "It is PARIS.", 0.0),   # case-sensitive contains
    ("ilike", "It is PARIS.", 1.0), ("ilike", "It is Lyon.", 0.0),  # case-insensitive contains
])
def test_string_check_operations(operation, output, expected):
    assert grade(check(operation), {"output_text": output}, {"answer": "Paris"}).score == expected


def similarity(metric):
    return {"type": "text_similarity", "name": "sim", "input": "{{sample.output_text}}",
            "reference": "{{item.answer}}", "evaluation_metric": metric}


def test_text_similarity_through_grade():
    """ROUGE-1 of 'the cat sat on a mat' against 'the cat sat on the mat': 5/6 (test_metrics)."""
    result = grade(similarity("rouge_1"), "the cat sat on a mat",
                   {"answer": "the cat sat on the mat"})
    assert result.score == pytest.approx(5 / 6)
    assert (result.name, result.type, result.errors) == ("sim", "text_similarity", [])


def test_cosine_uses_the_embedder():
    """Vectors (3, 4) and (4, 3): 24 / (5 · 5) = 0.96."""
    table = {"yes": [3.0, 4.0], "yep": [4.0, 3.0]}
    settings = GraderSettings(embedder=lambda texts: [table[t] for t in texts])
    result = grade(similarity("cosine"), "yes", {"answer": "yep"}, settings)
    assert result.score == pytest.approx(0.96)


def test_cosine_without_an_embedder_is_a_clear_error():
    with pytest.raises(GraderError, match="no embedding model configured"):
        grade(similarity("cosine"), "yes", {"answer": "yep"})


MULTI = {
    "type": "multi", "name": "both",
    "graders": {"fmt": check("ilike"), "sim": similarity("rouge_l")},
    "calculate_output": "0.5 * fmt + 0.5 * sim",
}


def test_multi_combines_named_sub_scores():
    """fmt: 'paris' is in 'The answer is Paris' (ilike) = 1. sim: ROUGE-L of 'the answer is
    paris' against 'paris' = LCS 1, P = 1/4, R = 1, F1 = 0.4. Output 0.5 · 1 + 0.5 · 0.4 = 0.7."""
    result = grade(MULTI, "The answer is Paris", {"answer": "paris"})
    assert result.sub_scores == {"fmt": 1.0, "sim": pytest.approx(0.4)}
    assert result.score == pytest.approx(0.7)


def test_multi_range_clips_the_formula():
    grader = {**MULTI, "calculate_output": "fmt + sim - 2", "range": [0, 1]}
    assert grade(grader, "The answer is Paris", {"answer": "paris"}).score == 0.0


def test_python_grader_through_grade():
    grader = {"type": "python", "name": "exact",
              "source": "def grade(sample, item):\n"
                        "    return float(sample['output_json']['n'] == item['n'])\n"}
    assert grade(grader, '{"n": 4}', {"n": 4}).score == 1.0  # output_json parsed from the text
    assert grade(grader, {"output_text": "x", "output_json": {"n": 5}}, {"n": 4}).score == 0.0


def test_python_graders_can_be_turned_off():
    grader = {"type": "python", "name": "exact", "source": "def grade(s, i):\n    return 1\n"}
    with pytest.raises(GraderError, match="python grader 'exact': python graders are turned "
                                          "off on this server"):
        grade(grader, "x", {}, GraderSettings(allow_python=False))


def test_python_timeout_comes_from_settings():
    grader = {"type": "python", "name": "spin",
              "source": "def grade(s, i):\n    while True:\n        pass\n"}
    with pytest.raises(GraderError, match=r"^python grader 'spin': timed out after 1 s$"):
        grade(grader, "x", {}, GraderSettings(python_timeout_s=1))


def test_on_error_zero_scores_zero_and_keeps_the_message():
    result = grade(check("eq"), "Paris", {}, on_error="zero")
    assert result.score == 0.0
    assert result.errors == ["grader 'fmt' reference: template {{item.answer}} refers to "
                             "item.answer, which the item lacks"]


def test_a_failing_sub_grader_names_its_path():
    with pytest.raises(GraderError, match=r"grader 'both' graders.sim reference: template"):
        grade({**MULTI, "graders": {"fmt": check("eq", "x"), "sim": {
            **similarity("bleu"), "reference": "{{item.gold}}"}}}, "x", {"answer": "x"})


def test_invalid_grader_dicts_are_validated_first():
    with pytest.raises(GraderError, match="grader.operation: expected one of"):
        grade(check("equals"), "x", {})


def test_sample_shapes():
    assert normalize_sample("hi") == {"output_text": "hi"}
    assert normalize_sample('[1, 2]')["output_json"] == [1, 2]
    assert "output_json" not in normalize_sample("4")  # a bare number is text, not JSON output
    with pytest.raises(GraderError, match="sample: expected an object with a string output_text"):
        normalize_sample({"text": "hi"})


def test_check_item_lists_missing_fields_across_sub_graders():
    grader = validate({
        **MULTI,
        "graders": {
            "fmt": check("eq", "{{item.answer}}"),
            "sim": {**similarity("bleu"), "reference": "{{ item.meta.gold }} {{item.answer}}"},
            "judge": {"type": "score_model", "name": "j", "model": "m",
                      "input": [{"role": "user",
                                 "content": "{{item.question}} {{sample.output_text}}"}]},
        },
        "calculate_output": "fmt + sim + judge",
    })
    assert check_item(grader, {"answer": "a", "meta": {"gold": "g"}, "question": "q"}) == []
    assert check_item(grader, {"answer": "a", "meta": {}}) == ["item.meta.gold", "item.question"]
    assert check_item(grader, {}) == ["item.answer", "item.meta.gold", "item.question"]
