"""EmbeddingEndpoint, the embedder cosine text_similarity graders use, against a fake
OpenAI-compatible ``/v1/embeddings`` (httpx.MockTransport): the request it sends, the order and
caching of vectors, and every way a reply can be wrong."""

import json

import httpx
import pytest

from preftune.errors import GraderError
from preftune.graders import EmbeddingEndpoint, GraderSettings, grade

COSINE = {"type": "text_similarity", "name": "sim", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}", "evaluation_metric": "cosine"}
TABLE = {"yes": [3.0, 4.0], "yep": [4.0, 3.0], "no": [0.0, 1.0]}


def endpoint(reply=None, status=200, seen=None, **kw):
    """An endpoint whose server embeds by TABLE (rows reversed: order is by ``index``), or
    answers ``reply`` / ``status`` instead."""
    def handle(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if seen is not None:
            seen.append((request.url, request.headers.get("authorization"), body))
        if status != 200:
            return httpx.Response(status, text="overloaded")
        if isinstance(reply, str):
            return httpx.Response(200, content=reply.encode())
        if reply is not None:
            return httpx.Response(200, json=reply)
        rows = [{"object": "embedding", "index": i, "embedding": TABLE[t]}
                for i, t in enumerate(body["input"])]
        return httpx.Response(200, json={"object": "list", "data": rows[::-1]})
    return EmbeddingEndpoint("http://embed.test/v1/", "embed-1",
                             transport=httpx.MockTransport(handle), **kw)


def test_cosine_grader_through_the_endpoint():
    """(3, 4) and (4, 3): 24 / (5 · 5) = 0.96; (3, 4) and (0, 1): 4 / 5 = 0.8."""
    seen: list = []
    settings = GraderSettings(embedder=endpoint(seen=seen, api_key="k-9"))
    assert grade(COSINE, "yes", {"answer": "yep"}, settings).score == pytest.approx(0.96)
    assert grade(COSINE, "yes", {"answer": "no"}, settings).score == pytest.approx(0.8)
    url, authorization, body = seen[0]
    assert str(url) == "http://embed.test/v1/embeddings"
    assert authorization == "Bearer k-9"
    assert body == {"model": "embed-1", "input": ["yes", "yep"], "encoding_format": "float"}
    assert seen[1][2]["input"] == ["no"]  # "yes" came from the cache


def test_vectors_answer_in_the_order_asked_and_repeats_are_fetched_once():
    seen: list = []
    embed = endpoint(seen=seen)
    assert embed(["no", "yes", "no"]) == [[0.0, 1.0], [3.0, 4.0], [0.0, 1.0]]
    assert seen[0][2]["input"] == ["no", "yes"]
    assert embed(["yes"]) == [[3.0, 4.0]] and len(seen) == 1


def test_the_cache_keeps_the_most_recent_texts():
    seen: list = []
    embed = endpoint(seen=seen, cache_size=2)
    embed(["yes"]), embed(["yep"]), embed(["no"])  # "yes" falls out
    embed(["no"])
    assert len(seen) == 3
    embed(["yes"])
    assert [s[2]["input"] for s in seen] == [["yes"], ["yep"], ["no"], ["yes"]]


@pytest.mark.parametrize(("reply", "status", "message"), [
    (None, 503, "the embedding model at http://embed.test/v1/embeddings answered 503: "
                "overloaded"),
    ({"error": "no"}, 200, "did not answer an embeddings list"),
    ({"data": [{"index": 0, "embedding": "x"}]}, 200, "did not answer an embeddings list"),
    ({"data": [{"index": 0, "embedding": [1.0]}]}, 200, "answered 1 vectors for 2 texts"),
    ({"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": []}]}, 200,
     "an empty vector"),
    ('{"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [NaN]}]}', 200,
     "non-finite"),
])
def test_a_bad_reply_is_a_grader_error_naming_the_endpoint(reply, status, message):
    settings = GraderSettings(embedder=endpoint(reply, status))
    with pytest.raises(GraderError, match=f"grader 'sim': .*{message}"):
        grade(COSINE, "yes", {"answer": "yep"}, settings)
    result = grade(COSINE, "yes", {"answer": "yep"}, settings, on_error="zero")
    assert result.score == 0.0 and message in result.errors[0]


def test_vectors_of_different_lengths_are_a_grader_error():
    reply = {"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1.0, 2.0]}]}
    with pytest.raises(GraderError, match="grader 'sim': the embedding model failed: "
                                          "embeddings differ in length"):
        grade(COSINE, "yes", {"answer": "yep"}, GraderSettings(embedder=endpoint(reply)))


def test_an_unreachable_endpoint_is_a_grader_error():
    closed = EmbeddingEndpoint("http://127.0.0.1:9/v1", "m", timeout_s=2)
    with pytest.raises(GraderError, match="could not reach the embedding model at "
                                          "http://127.0.0.1:9/v1/embeddings"):
        grade(COSINE, "yes", {"answer": "yep"}, GraderSettings(embedder=closed))
