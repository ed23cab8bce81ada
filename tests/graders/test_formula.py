"""The multi grader's calculate_output: evaluated arithmetic, refused everything else."""

import math

import pytest

from preftune.errors import GraderError
from preftune.graders import formula

NAMES = ("fmt", "sim")


def value(text, **scores):
    tree = formula.parse(text, NAMES, "f")
    return formula.evaluate(tree, {"fmt": 1.0, "sim": 0.5, **scores}, "f")


@pytest.mark.parametrize(("text", "expected"), [
    ("0.5 * fmt + 0.5 * sim", 0.75),        # 0.5 + 0.25
    ("(fmt + sim) / 2", 0.75),
    ("-sim + 1", 0.5),
    ("sim ** 2", 0.25),
    ("sim ^ 2", 0.25),                      # OpenAI's power operator
    ("min(fmt, sim, 0.7)", 0.5),
    ("max(sim)", 0.5),
    ("abs(sim - fmt)", 0.5),
    ("floor(2.7) + ceil(0.2)", 3.0),
    ("exp(0) + log(1) + sqrt(sim * 8)", 3.0),  # 1 + 0 + 2
    ("2 * 3 ^ 2", 18.0),                    # ^ is power and binds tighter than *
    ("2 ^ 3 ^ 2", 512.0),                   # and to the right: 2 ^ 9
    ("-sim ^ 2", -0.25),                    # -(sim ^ 2), as in mathematics
])
def test_formulas(text, expected):
    assert value(text) == pytest.approx(expected)


def test_log_is_natural():
    assert value("log(fmt * 2.718281828459045)") == pytest.approx(1.0)
    assert value("exp(1)") == pytest.approx(math.e)


@pytest.mark.parametrize(("text", "message"), [
    ("fmt + acc", "unknown name acc; the graders are fmt, sim"),
    ("fmt + a + b", "unknown names a, b"),
    ("pow(fmt, 2)", "unknown function pow"),
    ("__import__('os')", "unknown function __import__"),
    ("fmt.real", "is not allowed"),
    ("fmt if sim else 0", "is not allowed"),
    ("fmt % 2", "operator 'fmt % 2' is not allowed"),
    ("'a' + fmt", "'a' is not a number"),
    ("True + fmt", "True is not a number"),
    ("fmt +", "cannot parse"),
    ("abs(fmt, sim)", "abs() takes 1 argument, got 2"),
    ("max()", "max() takes positional arguments only"),
    ("[fmt][0]", "is not allowed"),
    ("lambda: 1", "is not allowed"),
])
def test_refused(text, message):
    with pytest.raises(GraderError, match="^f: ") as e:
        formula.parse(text, NAMES, "f")
    assert message in e.value.message


@pytest.mark.parametrize(("text", "message"), [
    ("fmt / (sim - 0.5)", "float division by zero"),
    ("log(sim - 0.5)", "math domain error"),
    ("(-sim) ^ 0.5", "is not a real number"),
    ("exp(1000)", "range"),
])
def test_arithmetic_failures_are_grader_errors(text, message):
    with pytest.raises(GraderError, match="f: the formula failed") as e:
        value(text)
    assert message in e.value.message
