"""docs/graders.md: every JSON example is a valid grader, and the numbers it quotes hold."""

import json
import re
from pathlib import Path

import pytest

from preftune.graders import grade, validate
from preftune.graders.metrics import bleu, gleu, meteor, rouge_l, rouge_n

DOC = (Path(__file__).resolve().parents[2] / "docs" / "graders.md").read_text(encoding="utf-8")
EXAMPLES = re.findall(r"```json\n(.*?)```", DOC, flags=re.S)


def test_there_is_an_example_of_every_type():
    types = {json.loads(block)["type"] for block in EXAMPLES}
    assert types == {"string_check", "text_similarity", "score_model", "multi", "python"}


@pytest.mark.parametrize("block", EXAMPLES)
def test_examples_validate(block):
    validate(json.loads(block))


def test_python_example_grades():
    (python,) = [json.loads(b) for b in EXAMPLES if json.loads(b)["type"] == "python"]
    assert grade(python, "3.0", {"answer": "3"}).score == 1.0
    assert grade(python, "three", {"answer": "3"}).score == 0.0


def test_worked_example_numbers():
    hyp, ref = "the cat sat on a mat", "the cat sat on the mat"
    assert round(bleu(hyp, ref), 4) == 0.5373
    assert round(gleu(hyp, ref), 4) == 0.6111
    assert round(meteor(hyp, ref), 4) == 0.8067
    assert (rouge_n(hyp, ref, 1), rouge_n(hyp, ref, 2)) == pytest.approx((5 / 6, 3 / 5))
    assert rouge_l(hyp, ref) == pytest.approx(5 / 6)
