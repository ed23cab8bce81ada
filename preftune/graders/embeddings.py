"""The embedding model ``text_similarity`` graders with ``evaluation_metric: cosine`` use.

OpenAI's cosine grader names no model: the server embeds the answer and the reference with its
own. Here the operator names an OpenAI-compatible ``/v1/embeddings`` endpoint and the model it
serves (vLLM with an embedding model, Hugging Face text-embeddings-inference, Ollama, OpenAI);
``EmbeddingEndpoint`` is the ``Embedder`` that calls it. References repeat (a reinforcement job
grades several answers to each item), so the last ``cache_size`` texts' vectors are kept.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from dataclasses import dataclass, field

import httpx

from preftune.errors import GraderError


@dataclass
class EmbeddingEndpoint:
    """``base_url`` as the OpenAI client takes it (``.../v1``) and the ``model`` to ask for.

    Called with texts, it answers one vector per text, in order; a failure (unreachable, an
    error status, a reply that is not an embeddings list of the right length, a vector with a
    non-finite number) is a GraderError naming the endpoint. ``transport`` replaces the network
    (tests pass an ``httpx.MockTransport``).
    """

    base_url: str
    model: str
    api_key: str | None = None
    timeout_s: float = 60.0
    cache_size: int = 1024
    transport: httpx.BaseTransport | None = None
    _cache: OrderedDict[str, list[float]] = field(default_factory=OrderedDict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def url(self) -> str:
        return self.base_url.rstrip("/") + "/embeddings"

    def __call__(self, texts: list[str]) -> list[list[float]]:
        with self._lock:
            known = {text: self._cache[text] for text in texts if text in self._cache}
        missing = list(dict.fromkeys(text for text in texts if text not in known))
        if missing:
            fetched = dict(zip(missing, self._fetch(missing), strict=True))
            with self._lock:
                for text, vector in fetched.items():
                    self._cache[text] = vector
                    self._cache.move_to_end(text)
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
            known.update(fetched)
        return [known[text] for text in texts]

    def _fetch(self, texts: list[str]) -> list[list[float]]:
        body = {"model": self.model, "input": texts, "encoding_format": "float"}
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        try:
            with httpx.Client(transport=self.transport, timeout=self.timeout_s) as client:
                response = client.post(self.url, json=body, headers=headers)
        except httpx.TimeoutException:
            raise GraderError(f"the embedding model at {self.url} did not answer within "
                              f"{self.timeout_s:g} s") from None
        except httpx.HTTPError as e:
            raise GraderError(f"could not reach the embedding model at {self.url}: {e}") \
                from None
        if response.status_code != 200:
            raise GraderError(f"the embedding model at {self.url} answered "
                              f"{response.status_code}: {response.text[:300]}")
        return self._vectors(response, len(texts))

    def _vectors(self, response: httpx.Response, count: int) -> list[list[float]]:
        try:
            rows = response.json()["data"]
            ordered = sorted(rows, key=lambda row: row.get("index", 0))
            vectors = [[float(x) for x in row["embedding"]] for row in ordered]
        except (ValueError, KeyError, TypeError, AttributeError):
            raise GraderError(f"the embedding model at {self.url} did not answer an "
                              f"embeddings list: {response.text[:300]}") from None
        if len(vectors) != count:
            raise GraderError(f"the embedding model at {self.url} answered {len(vectors)} "
                              f"vectors for {count} texts")
        if any(not vector or not all(math.isfinite(x) for x in vector) for vector in vectors):
            raise GraderError(f"the embedding model at {self.url} answered an empty vector or "
                              "one with a non-finite number")
        return vectors
