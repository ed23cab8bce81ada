"""The ``score_model`` grader's call: a chat completion on an OpenAI-compatible endpoint.

The operator names the endpoint (``ModelEndpoint``); the grader names the model, the prompt and
the sampling options. The reply's score is the ``score`` (or ``result``) field of a JSON object
reply, or else the last number in the text. A score outside the grader's range is an error, not
clamped: a judge that answers 7 on a 0-1 scale has misread its prompt.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import httpx

from preftune.errors import GraderError

_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class ModelEndpoint:
    """An OpenAI-compatible server: ``base_url`` as the OpenAI client takes it (``.../v1``).

    ``transport`` replaces the network (tests pass an ``httpx.MockTransport``).
    """

    base_url: str
    api_key: str | None = None
    timeout_s: float = 60.0
    transport: httpx.BaseTransport | None = None


def chat_request(model: str, messages: list[dict[str, str]],
                 sampling: dict[str, Any]) -> dict[str, Any]:
    """The ``/chat/completions`` body; OpenAI's grader field ``max_completions_tokens`` is the
    request's ``max_completion_tokens``."""
    body: dict[str, Any] = {"model": model, "messages": messages}
    for key, value in sampling.items():
        if value is not None:
            body["max_completion_tokens" if key == "max_completions_tokens" else key] = value
    return body


def complete(endpoint: ModelEndpoint, body: dict[str, Any], where: str) -> str:
    """The text of the first choice the endpoint returns for ``body``."""
    url = endpoint.base_url.rstrip("/") + "/chat/completions"
    headers = {"Authorization": f"Bearer {endpoint.api_key}"} if endpoint.api_key else {}
    try:
        with httpx.Client(transport=endpoint.transport, timeout=endpoint.timeout_s) as client:
            response = client.post(url, json=body, headers=headers)
    except httpx.TimeoutException:
        raise GraderError(f"{where}: {url} did not answer within {endpoint.timeout_s:g} s") \
            from None
    except httpx.HTTPError as e:
        raise GraderError(f"{where}: could not reach {url}: {e}") from None
    if response.status_code != 200:
        raise GraderError(f"{where}: {url} answered {response.status_code}: "
                          f"{response.text[:300]}")
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise GraderError(f"{where}: {url} did not answer a chat completion: "
                          f"{response.text[:300]}") from None
    if not isinstance(content, str):
        raise GraderError(f"{where}: the model's reply has no text (content {content!r})")
    return content


def parse_score(text: str, bounds: tuple[float, float], where: str) -> float:
    """The score in a reply: JSON ``{"score": x}`` or ``{"result": x}``, else its last number."""
    score: float | None = None
    try:
        reply = json.loads(text)
    except ValueError:
        reply = None
    if isinstance(reply, dict):
        for key in ("score", "result"):
            value = reply.get(key)
            if isinstance(value, int | float) and not isinstance(value, bool):
                score = float(value)
                break
    elif isinstance(reply, int | float) and not isinstance(reply, bool):
        score = float(reply)
    if score is None:
        numbers = _NUMBER.findall(text)
        if not numbers:
            raise GraderError(f"{where}: the model's reply has no number: {text[:200]!r}")
        score = float(numbers[-1])
    lo, hi = bounds
    if not lo <= score <= hi:
        raise GraderError(f"{where}: the model answered {score:g}, outside the range "
                          f"[{lo:g}, {hi:g}]")
    return score
