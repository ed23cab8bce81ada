"""``grade``: one grader, one sample, one item, one score; and ``check_item`` for RFT files.

A sample is the model's answer as OpenAI's graders see it: ``{"output_text": str,
"output_json": ...}``. When ``output_json`` is absent it is parsed from ``output_text`` if that
is JSON. An item is one training row (any JSON object). What the server lends the graders (a
score model endpoint, an embedding model, whether python graders may run and their limits) is
in ``GraderSettings``, passed in by the caller.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from preftune.errors import GraderError
from preftune.graders import formula, metrics, score_model, templates
from preftune.graders.models import (
    Grader,
    MultiGrader,
    PythonGrader,
    ScoreModelGrader,
    StringCheckGrader,
    TextSimilarityGrader,
    validate,
)
from preftune.graders.sandbox import run_python_grader
from preftune.graders.score_model import ModelEndpoint


class Embedder(Protocol):
    """An embedding model: one vector per text, in order."""

    def __call__(self, texts: list[str]) -> list[list[float]]: ...


@dataclass
class GraderSettings:
    """What the operator allows and provides. Python graders run unless turned off."""

    allow_python: bool = True
    python_timeout_s: float = 10.0
    python_memory_mb: int = 256
    score_model_endpoint: ModelEndpoint | None = None
    embedder: Embedder | None = None


@dataclass
class GradeResult:
    """A grader's score, its direct sub-graders' scores (``multi``), and what went wrong."""

    name: str
    type: str
    score: float
    sub_scores: dict[str, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    execution_time_s: float = 0.0


def grade(grader: Grader | dict[str, Any], sample: dict[str, Any] | str, item: dict[str, Any],
          settings: GraderSettings | None = None, *,
          on_error: Literal["raise", "zero"] = "raise") -> GradeResult:
    """Score ``sample`` for ``item`` with ``grader`` (a model, or a dict ``validate`` checks).

    A grader that cannot score (a missing field, a failed python grader, an unreachable score
    model) raises GraderError; with ``on_error="zero"`` it scores 0.0 and the message is in
    ``errors`` instead, which is what a training loop wants for one bad sample.
    """
    if isinstance(grader, dict):
        grader = validate(grader)
    settings = settings or GraderSettings()
    start = time.perf_counter()
    try:
        context = {"item": item, "sample": normalize_sample(sample)}
        score, sub_scores = _score(grader, context, settings, f"grader '{grader.name}'")
    except GraderError as e:
        if on_error == "raise":
            raise
        return GradeResult(grader.name, grader.type, 0.0, errors=[e.message],
                           execution_time_s=time.perf_counter() - start)
    return GradeResult(grader.name, grader.type, score, sub_scores,
                       execution_time_s=time.perf_counter() - start)


def normalize_sample(sample: dict[str, Any] | str) -> dict[str, Any]:
    """``sample`` as a dict with ``output_text``, and ``output_json`` when the text is JSON."""
    if isinstance(sample, str):
        sample = {"output_text": sample}
    if not isinstance(sample, dict) or not isinstance(sample.get("output_text"), str):
        raise GraderError("sample: expected an object with a string output_text, "
                          f"got {sample!r:.200}")
    if sample.get("output_json") is None:
        try:
            parsed = json.loads(sample["output_text"])
        except ValueError:
            parsed = None
        if isinstance(parsed, dict | list):
            sample = {**sample, "output_json": parsed}
    return sample


Scored = tuple[float, dict[str, float]]


def _score(grader: Grader, context: dict[str, Any], settings: GraderSettings,
           where: str) -> Scored:
    return _SCORERS[type(grader)](grader, context, settings, where)


def _string_check(grader: Any, context: dict[str, Any], settings: GraderSettings,
                  where: str) -> Scored:
    text = templates.render(grader.input, context, f"{where} input")
    reference = templates.render(grader.reference, context, f"{where} reference")
    passed = {
        "eq": text == reference,
        "ne": text != reference,
        "like": reference in text,
        "ilike": reference.lower() in text.lower(),
    }[grader.operation]
    return (1.0 if passed else 0.0), {}


def _text_similarity(grader: Any, context: dict[str, Any], settings: GraderSettings,
                     where: str) -> Scored:
    text = templates.render(grader.input, context, f"{where} input")
    reference = templates.render(grader.reference, context, f"{where} reference")
    if grader.evaluation_metric != "cosine":
        return metrics.TEXT_METRICS[grader.evaluation_metric](text, reference), {}
    if settings.embedder is None:
        raise GraderError(f"{where}: evaluation_metric cosine needs an embedding model, and "
                          "this server has no embedding model configured",
                          hints=["use another evaluation_metric, or ask the operator to "
                                 "configure one (graders.embedding_base_url and "
                                 "graders.embedding_model)"])
    try:
        vectors = settings.embedder([text, reference])
        return metrics.cosine(vectors[0], vectors[1]), {}
    except GraderError as e:
        raise GraderError(f"{where}: {e.message}") from None
    except (ValueError, IndexError, TypeError) as e:
        raise GraderError(f"{where}: the embedding model failed: {e}") from None


def _score_model(grader: Any, context: dict[str, Any], settings: GraderSettings,
                 where: str) -> Scored:
    if settings.score_model_endpoint is None:
        raise GraderError(f"{where}: score_model graders need a model endpoint, and this "
                          "server has no score model endpoint configured")
    messages = [{"role": m.role, "content": templates.render(m.text, context,
                                                             f"{where} input.{i}.content")}
                for i, m in enumerate(grader.input)]
    sampling = grader.sampling_params.model_dump() if grader.sampling_params else {}
    body = score_model.chat_request(grader.model, messages, sampling)
    reply = score_model.complete(settings.score_model_endpoint, body, where)
    return score_model.parse_score(reply, grader.range, where), {}


def _multi(grader: Any, context: dict[str, Any], settings: GraderSettings,
           where: str) -> Scored:
    sub_scores = {key: _score(sub, context, settings, f"{where} graders.{key}")[0]
                  for key, sub in grader.graders.items()}
    tree = formula.parse(grader.calculate_output, sub_scores, f"{where} calculate_output")
    score = formula.evaluate(tree, sub_scores, f"{where} calculate_output")
    if grader.range is not None:  # the formula's output is clipped to the declared range
        score = min(max(score, grader.range[0]), grader.range[1])
    return score, sub_scores


def _python(grader: Any, context: dict[str, Any], settings: GraderSettings,
            where: str) -> Scored:
    if not settings.allow_python:
        raise GraderError(f"python grader '{grader.name}': python graders are turned off on "
                          "this server", hints=["use another grader type, or ask the operator "
                                                "to allow python graders"])
    score = run_python_grader(grader.name, grader.source, context["sample"], context["item"],
                              timeout_s=settings.python_timeout_s,
                              memory_mb=settings.python_memory_mb)
    return score, {}


_SCORERS: dict[type, Callable[[Any, dict[str, Any], GraderSettings, str], Scored]] = {
    StringCheckGrader: _string_check,
    TextSimilarityGrader: _text_similarity,
    ScoreModelGrader: _score_model,
    MultiGrader: _multi,
    PythonGrader: _python,
}


def template_refs(grader: Grader) -> list[templates.Ref]:
    """Every template ``grader`` uses, sub-graders included (python source is opaque)."""
    if isinstance(grader, StringCheckGrader | TextSimilarityGrader):
        texts = [grader.input, grader.reference]
    elif isinstance(grader, ScoreModelGrader):
        texts = [m.text for m in grader.input]
    elif isinstance(grader, MultiGrader):
        return [ref for sub in grader.graders.values() for ref in template_refs(sub)]
    else:
        texts = []
    return [ref for text in texts for ref in templates.parse_refs(text, grader.name)]


def check_item(grader: Grader | dict[str, Any], item: dict[str, Any]) -> list[str]:
    """The ``item.*`` fields ``grader`` uses that ``item`` lacks, as ``item.a.b`` paths.

    For checking an RFT training file row by row before any sampling starts.
    """
    if isinstance(grader, dict):
        grader = validate(grader)
    missing: list[str] = []
    for ref in template_refs(grader):
        if ref.namespace != "item":
            continue
        found, value = templates.lookup({"item": item}, ref)
        if (not found or value is None) and ref.dotted not in missing:
            missing.append(ref.dotted)
    return missing
