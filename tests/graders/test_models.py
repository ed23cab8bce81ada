"""validate(): OpenAI's grader shapes accepted, every problem named by its field path."""

import pytest

from preftune.errors import ConfigError, ExitCode, GraderError
from preftune.graders import (
    MultiGrader,
    PythonGrader,
    ScoreModelGrader,
    StringCheckGrader,
    TextSimilarityGrader,
    validate,
)

CHECK = {"type": "string_check", "name": "fmt", "input": "{{sample.output_text}}",
         "reference": "{{item.answer}}", "operation": "eq"}
SIMILARITY = {"type": "text_similarity", "name": "sim", "input": "{{sample.output_text}}",
              "reference": "{{item.answer}}", "evaluation_metric": "bleu"}
SCORE_MODEL = {
    "type": "score_model", "name": "judge", "model": "gpt-4o-mini",
    "input": [{"role": "system", "content": "Grade 0 to 1."},
              {"role": "user", "type": "message",
               "content": {"type": "input_text",
                           "text": "{{item.question}}: {{sample.output_text}}"}}],
    "range": [0, 1],
    "sampling_params": {"temperature": 0, "top_p": 1, "max_completions_tokens": 16, "seed": 7},
}
PYTHON = {"type": "python", "name": "exact", "image_tag": "2025-05-08",
          "source": "def grade(sample, item):\n    return 1.0\n"}
MULTI = {"type": "multi", "name": "both", "graders": {"fmt": CHECK, "sim": SIMILARITY},
         "calculate_output": "0.5 * fmt + 0.5 * sim"}


@pytest.mark.parametrize(("data", "cls"), [
    (CHECK, StringCheckGrader), (SIMILARITY, TextSimilarityGrader),
    (SCORE_MODEL, ScoreModelGrader), (PYTHON, PythonGrader), (MULTI, MultiGrader),
])
def test_openai_shapes_validate(data, cls):
    grader = validate(data)
    assert isinstance(grader, cls)
    assert grader.model_dump(exclude_none=True, mode="json") == _jsonish(data)


def _jsonish(data):
    """What a model dumps: tuples as lists, floats where OpenAI wrote ints."""
    if isinstance(data, dict):
        return {k: _jsonish(v) for k, v in data.items()}
    if isinstance(data, list):
        if data and all(isinstance(x, int) for x in data) and len(data) == 2:
            return [float(x) for x in data]
        return [_jsonish(x) for x in data]
    return data


def test_score_model_defaults_range_to_zero_one():
    data = {k: v for k, v in SCORE_MODEL.items() if k != "range"}
    assert validate(data).range == (0.0, 1.0)


def test_grader_error_is_a_configuration_error():
    assert issubclass(GraderError, ConfigError)
    assert GraderError.exit_code == ExitCode.USAGE


def message_of(data):
    with pytest.raises(GraderError) as e:
        validate(data)
    return e.value


@pytest.mark.parametrize(("data", "message"), [
    ({**MULTI, "graders": {"fmt": {**CHECK, "operation": "equals"}, "sim": SIMILARITY}},
     "grader.graders.fmt.operation: expected one of eq, ne, like, ilike, got 'equals'"),
    ({**SIMILARITY, "evaluation_metric": "rouge"},
     "grader.evaluation_metric: expected one of fuzzy_match, bleu, gleu, meteor, rouge_1, "
     "rouge_2, rouge_3, rouge_4, rouge_5, rouge_l, cosine, got 'rouge'"),
    ({**CHECK, "type": "label_checker"},
     "grader.type: expected one of string_check, text_similarity, score_model, multi, python, "
     "got 'label_checker'"),
    ({"name": "x"}, "grader.type: missing"),
    ({k: v for k, v in CHECK.items() if k != "reference"}, "grader.reference: missing"),
    ({**CHECK, "operator": "eq"}, "grader.operator: unknown field"),
    ({**SCORE_MODEL, "input": [{"role": "judge", "content": "x"}]},
     "grader.input.0.role: expected one of system, developer, user, assistant, got 'judge'"),
    ({**SCORE_MODEL, "sampling_params": {"temperature": 0, "max_tokens": 5}},
     "grader.sampling_params.max_tokens: unknown field"),
    ({**SCORE_MODEL, "range": [1, 0]},
     "grader.range: expected [low, high] with low < high, got [1, 0]"),
    ({**MULTI, "calculate_output": "fmt + acc"},
     "grader.calculate_output: unknown name acc; the graders are fmt, sim"),
    ({**MULTI, "graders": {"fmt": {**CHECK, "reference": "{{ref.answer}}"}},
      "calculate_output": "fmt"},
     "grader.graders.fmt.reference: template {{ref.answer}} uses namespace 'ref'"),
    ({**SCORE_MODEL, "input": [{"role": "user", "content": "{{ answer }}"}]},
     "grader.input.0.content: template {{ answer }} has no namespace"),
    ({**PYTHON, "source": "def grade(sample):\n    return 1"},
     "grader.source: defines no top-level function grade(sample, item)"),
    ({**PYTHON, "source": "def grade(sample, item)\n    return 1"},
     "grader.source: line 1: expected ':'"),
    ({**MULTI, "graders": {}}, "grader.graders: "),
    ({**MULTI, "graders": {"fmt-check": CHECK}, "calculate_output": "1"},
     "grader.graders.fmt-check: a name the formula can use: letters, digits and _"),
    ({**MULTI, "graders": {"max": CHECK}, "calculate_output": "1"},
     "grader.graders.max: a name the formula can use"),
    ("string_check", "grader: expected an object, got 'string_check'"),
])
def test_problems_name_their_field(data, message):
    error = message_of(data)
    assert error.message.startswith(message), error.message


def test_every_problem_is_listed():
    error = message_of({**MULTI, "graders": {"fmt": {**CHECK, "operation": "equals"},
                                             "sim": {**SIMILARITY, "evaluation_metric": "x"}}})
    assert error.message.startswith("grader.graders.fmt.operation")
    assert error.details == [error.details[0]]
    assert error.details[0].startswith("grader.graders.sim.evaluation_metric")


def test_nested_multi_paths():
    inner = {**MULTI, "name": "inner", "graders": {"fmt": {**CHECK, "operation": "neq"}},
             "calculate_output": "fmt"}
    error = message_of({**MULTI, "graders": {"inner": inner}, "calculate_output": "inner"})
    assert error.message.startswith("grader.graders.inner.graders.fmt.operation: "
                                    "expected one of eq, ne, like, ilike, got 'neq'")
