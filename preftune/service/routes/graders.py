"""OpenAI's grader endpoints: ``/v1/fine_tuning/alpha/graders/validate`` and ``/run``.

``validate`` checks a grader and answers it back as the server reads it, or 400 naming the
field (``param`` is its JSON path). ``run`` grades one sample: a grader that cannot score it (a
python error or timeout, an item field it lacks, a score model that does not answer) is still
a 200, with reward 0 and the reason in ``metadata.errors``, as OpenAI reports grader errors.

Python graders and score model calls take a turn from ``app.state.grader_slots`` (the
operator's ``graders.max_concurrent``): each python grader is a process with up to
``python_memory_mb`` of memory, so many requests at once must not start one each.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Request

from preftune.graders import (
    Grader,
    GradeResult,
    PythonGrader,
    ScoreModelGrader,
    TextSimilarityGrader,
    grade,
    walk,
)
from preftune.service.deps import CurrentPrincipal, ServiceDep
from preftune.service.jobspec import InvalidRequest
from preftune.service.limits import Graders
from preftune.service.rft import check_grader
from preftune.service.schemas import (
    GraderRun,
    GraderRunErrors,
    GraderRunMetadata,
    GraderRunResult,
    GraderValidate,
    GraderValidated,
    error_responses,
)
from preftune.service.validation import Busy

router = APIRouter(prefix="/v1/fine_tuning/alpha/graders", tags=["graders"])

WAIT_S = 30.0  # how long a request waits for a grader turn before 503 server_busy


def grader_slots(config: Graders) -> threading.BoundedSemaphore:
    """The turns one API process gives python graders and score model calls."""
    return threading.BoundedSemaphore(config.max_concurrent)


@router.post("/validate", response_model=GraderValidated, responses=error_responses(400))
def validate_grader(body: GraderValidate, _: CurrentPrincipal,
                    service: ServiceDep) -> GraderValidated:
    """Check a grader; answer it as this server reads it, or 400 naming the field."""
    grader = checked(body.grader, service.config.graders)
    return GraderValidated(grader=grader.model_dump(exclude_none=True))


@router.post("/run", response_model=GraderRunResult, responses=error_responses(400, 503))
def run_grader(body: GraderRun, request: Request, _: CurrentPrincipal,
               service: ServiceDep) -> GraderRunResult:
    """Grade one sample; a grader that cannot score it answers reward 0 and its errors."""
    config = service.config.graders
    grader = checked(body.grader, config)
    item = _item(body.item, body.reference_answer)
    with _turn(request.app.state.grader_slots, grader, config):
        result = grade(grader, {"output_text": body.model_sample}, item, config.settings(),
                       on_error="zero")
    return run_result(grader, result)


def run_result(grader: Grader, result: GradeResult) -> GraderRunResult:
    """``result`` in OpenAI's shape (``preftune graders run --json`` prints the same)."""
    return GraderRunResult(
        reward=result.score, sub_rewards=result.sub_scores,
        metadata=GraderRunMetadata(
            name=result.name, type=result.type, errors=error_flags(result),
            execution_time=result.execution_time_s, scores=result.sub_scores,
            sampled_model_name=grader.model if isinstance(grader, ScoreModelGrader) else None))


def checked(data: dict[str, Any], config: Graders) -> Grader:
    """The validated grader; 400 naming the field for a malformed one, and 400
    ``grader_not_allowed`` for a python grader (nested ones too) where they are off."""
    return check_grader(data, config, "grader")


def _costly(grader: Grader) -> bool:
    """Whether grading starts a process or calls a model (and so takes a turn)."""
    return any(isinstance(inner, PythonGrader | ScoreModelGrader)
               or (isinstance(inner, TextSimilarityGrader)
                   and inner.evaluation_metric == "cosine")
               for _, inner in walk(grader))


@contextmanager
def _turn(slots: threading.BoundedSemaphore, grader: Grader, config: Graders) -> Iterator[None]:
    if not _costly(grader):
        yield
        return
    if not slots.acquire(timeout=WAIT_S):
        raise Busy(f"the server is running {config.max_concurrent} other python, score model "
                   "or embedding graders right now", ["retry in a minute"])
    try:
        yield
    finally:
        slots.release()


def _item(item: Any, reference_answer: Any) -> dict[str, Any]:
    if item is None:
        item = {}
    if not isinstance(item, dict):
        raise InvalidRequest(f"item: expected a JSON object (a dataset row), got "
                             f"{type(item).__name__}", "item",
                             ["graders read its fields as {{item.<field>}}"])
    if reference_answer is not None and "reference_answer" not in item:
        item = {**item, "reference_answer": reference_answer}
    return item


# The grader package's messages, sorted into OpenAI's error flags. Each message names the
# grader and what happened (see preftune/graders/sandbox.py and score_model.py).
_PYTHON_LIMITS = {"timed out": "timeout", "out of memory": "memory_limit",
                  "of CPU time": "cpu_limit"}
_MODEL_PARSE = ("has no number", "outside the range", "reply has no text")


def error_flags(result: GradeResult) -> GraderRunErrors:
    """OpenAI's ``metadata.errors`` for a result, each message kept in ``messages``."""
    flags = GraderRunErrors(messages=list(result.errors))
    for message in result.errors:
        if message.startswith("python grader"):
            limit = next((kind for cue, kind in _PYTHON_LIMITS.items() if cue in message), None)
            if limit is None:
                flags.python_grader_runtime_error = True
                flags.python_grader_runtime_error_details = message
            else:
                flags.python_grader_server_error = True
                flags.python_grader_server_error_type = limit
                flags.unresponsive_reward_error = limit == "timeout"
        elif "template" in message and "lacks" in message:
            flags.invalid_variable_error = True
        elif "calculate_output" in message:
            flags.formula_parse_error = True
        elif any(cue in message for cue in _MODEL_PARSE):
            flags.model_grader_parse_error = True
        elif "score model endpoint" in message or "embedding model" in message \
                or "answered" in message or "could not reach" in message \
                or "did not answer" in message:
            flags.model_grader_server_error = True
            flags.model_grader_server_error_details = message
        elif message.startswith("sample:"):
            flags.sample_parse_error = True
        else:
            flags.other_error = True
    return flags
