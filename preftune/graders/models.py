"""OpenAI's grader objects as pydantic models, and ``validate``, which checks one up front.

The field names and types are OpenAI's (reinforcement fine-tuning and the alpha graders API):
a grader is a JSON object whose ``type`` picks the model. Unknown fields are refused, so a typo
is an error rather than a silently ignored setting. ``validate`` also checks what a schema
cannot: templates, the ``multi`` formula, ``range`` and the python source.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from preftune.errors import GraderError
from preftune.graders import formula, templates

STRING_CHECK_OPERATIONS = ("eq", "ne", "like", "ilike")
TEXT_SIMILARITY_METRICS = (
    "fuzzy_match", "bleu", "gleu", "meteor",
    "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l", "cosine",
)
GRADER_TYPES = ("string_check", "text_similarity", "score_model", "multi", "python")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StringCheckGrader(_Strict):
    """1.0 when ``input`` and ``reference`` pass ``operation``, else 0.0.

    eq / ne: case-sensitive equality / inequality; like: ``reference`` is contained in
    ``input``, case-sensitive; ilike: the same, case-insensitive.
    """

    type: Literal["string_check"]
    name: str
    input: str
    reference: str
    operation: Literal["eq", "ne", "like", "ilike"]


class TextSimilarityGrader(_Strict):
    """``evaluation_metric`` of ``input`` against ``reference`` (see ``graders.metrics``).

    ``pass_threshold`` (OpenAI's evals field) is accepted and reported, never used in the score.
    """

    type: Literal["text_similarity"]
    name: str
    input: str
    reference: str
    evaluation_metric: Literal[
        "fuzzy_match", "bleu", "gleu", "meteor",
        "rouge_1", "rouge_2", "rouge_3", "rouge_4", "rouge_5", "rouge_l", "cosine",
    ]
    pass_threshold: float | None = None


class InputText(_Strict):
    """A content part: ``{"type": "input_text", "text": ...}`` (or ``output_text``)."""

    type: Literal["input_text", "output_text"]
    text: str


class Message(_Strict):
    """One chat message of a score model's prompt; its text may hold templates."""

    role: Literal["system", "developer", "user", "assistant"]
    content: str | InputText
    type: Literal["message"] | None = None

    @property
    def text(self) -> str:
        return self.content if isinstance(self.content, str) else self.content.text


class SamplingParams(_Strict):
    """Sampling options for the score model, passed on to the chat completions request."""

    temperature: float | None = None
    top_p: float | None = None
    max_completions_tokens: int | None = Field(default=None, ge=1)
    seed: int | None = None
    reasoning_effort: Literal["minimal", "low", "medium", "high"] | None = None


class ScoreModelGrader(_Strict):
    """A model on an OpenAI-compatible endpoint reads ``input`` and answers a number in range."""

    type: Literal["score_model"]
    name: str
    model: str
    input: list[Message] = Field(min_length=1)
    range: tuple[float, float] = (0.0, 1.0)
    sampling_params: SamplingParams | None = None


class PythonGrader(_Strict):
    """``source`` defines ``grade(sample, item) -> float``; run in a limited child process.

    ``image_tag`` picks OpenAI's container image; here it is accepted and ignored (the grader
    runs on the server's own Python, standard library only).
    """

    type: Literal["python"]
    name: str
    source: str
    image_tag: str | None = None


class MultiGrader(_Strict):
    """Named sub-graders combined by the ``calculate_output`` formula."""

    type: Literal["multi"]
    name: str
    graders: dict[str, Grader] = Field(min_length=1)
    calculate_output: str
    range: tuple[float, float] | None = None


Grader = Annotated[
    StringCheckGrader | TextSimilarityGrader | ScoreModelGrader | MultiGrader | PythonGrader,
    Field(discriminator="type"),
]
MultiGrader.model_rebuild()


class _Root(BaseModel):
    grader: Grader


def walk(grader: Grader, where: str = "grader") -> Iterator[tuple[str, Grader]]:
    """Each grader in ``grader`` (itself first, then a multi grader's, depth first) with its
    JSON path (``grader.graders.exact``)."""
    yield where, grader
    if isinstance(grader, MultiGrader):
        for key, sub in grader.graders.items():
            yield from walk(sub, f"{where}.graders.{key}")


def validate(data: Any, where: str = "grader") -> Grader:
    """The grader that ``data`` (parsed JSON) describes; every problem is a GraderError.

    The message names the first problem by its field path (``grader.graders.fmt.operation``);
    the error's ``details`` list every one.
    """
    if isinstance(data, BaseModel):
        data = data.model_dump(exclude_none=True)
    try:
        grader = _Root.model_validate({"grader": data}).grader
    except ValidationError as e:
        problems = [_describe(error, data, where) for error in e.errors()]
        raise GraderError(problems[0], details=problems[1:] if len(problems) > 1 else (),
                          hints=["see docs/graders.md for each grader type's fields"]) from None
    problems = []
    _check(grader, where, problems)
    if problems:
        raise GraderError(problems[0], details=problems[1:],
                          hints=["see docs/graders.md for each grader type's fields"])
    return grader


def _describe(error: Any, data: Any, where: str) -> str:
    """One pydantic error as ``path: what was expected, got what``, the union tags dropped."""
    loc = list(error["loc"])[1:]  # drop "grader", the _Root field
    path, node = [where], data
    for step in loc:
        if isinstance(node, dict) and step in node:
            node = node[step]
            path.append(str(step))
        elif isinstance(node, dict) and node.get("type") == step:
            continue  # pydantic's discriminator tag, not a field
        elif isinstance(node, list | tuple) and isinstance(step, int) and step < len(node):
            node = node[step]
            path.append(str(step))
        else:
            path.append(str(step))
            node = None
    kind, got = error["type"], error.get("input")
    if kind == "literal_error":
        expected = ", ".join(_quoted(error["ctx"]["expected"]))
        what = f"expected one of {expected}, got {got!r}"
    elif kind == "union_tag_invalid":
        path.append("type")
        what = f"expected one of {', '.join(GRADER_TYPES)}, got {error['ctx']['tag']!r}"
    elif kind == "union_tag_not_found":
        path.append("type")
        what = f"missing; a grader needs a type, one of {', '.join(GRADER_TYPES)}"
    elif kind == "missing":
        what = "missing (required)"
    elif kind == "extra_forbidden":
        what = f"unknown field (value {got!r})"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        what = f"expected an object, got {got!r}"
    else:
        what = f"{error['msg'][0].lower()}{error['msg'][1:]}, got {got!r}"
    return f"{'.'.join(path)}: {what}"


def _quoted(expected: str) -> list[str]:
    return re.findall(r"'([^']*)'", expected)


def _check(grader: Grader, where: str, problems: list[str]) -> None:
    """Append what pydantic cannot see: templates, formula, range, python source."""

    def guard(check: Any, *args: Any) -> None:
        try:
            check(*args)
        except GraderError as e:
            problems.append(e.message)

    if isinstance(grader, StringCheckGrader | TextSimilarityGrader):
        guard(templates.parse_refs, grader.input, f"{where}.input")
        guard(templates.parse_refs, grader.reference, f"{where}.reference")
    elif isinstance(grader, ScoreModelGrader):
        for i, message in enumerate(grader.input):
            guard(templates.parse_refs, message.text, f"{where}.input.{i}.content")
        guard(_check_range, grader.range, f"{where}.range")
    elif isinstance(grader, MultiGrader):
        for key, sub in grader.graders.items():
            if not key.isidentifier() or key in formula.FUNCTIONS:
                problems.append(f"{where}.graders.{key}: a name the formula can use: letters, "
                                "digits and _, not starting with a digit, and not one of "
                                f"{', '.join(formula.FUNCTIONS)}")
            _check(sub, f"{where}.graders.{key}", problems)
        guard(formula.parse, grader.calculate_output, grader.graders,
              f"{where}.calculate_output")
        if grader.range is not None:
            guard(_check_range, grader.range, f"{where}.range")
    elif isinstance(grader, PythonGrader):
        guard(_check_source, grader.source, f"{where}.source")


def _check_range(bounds: tuple[float, float], where: str) -> None:
    lo, hi = bounds
    if not lo < hi:
        raise GraderError(f"{where}: expected [low, high] with low < high, got [{lo:g}, {hi:g}]")


def _check_source(source: str, where: str) -> None:
    try:
        tree = ast.parse(source)
    except SyntaxError as e:
        raise GraderError(f"{where}: line {e.lineno}: {e.msg}") from None
    defines = any(isinstance(node, ast.FunctionDef) and node.name == "grade"
                  and len(node.args.args) >= 2 for node in tree.body)
    if not defines:
        raise GraderError(f"{where}: defines no top-level function grade(sample, item)")
