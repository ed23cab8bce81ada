"""score_model graders against a fake OpenAI-compatible endpoint (httpx.MockTransport), and once
against a real HTTP server on 127.0.0.1."""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from preftune.errors import GraderError
from preftune.graders import GraderSettings, ModelEndpoint, grade
from preftune.graders.score_model import parse_score

GRADER = {
    "type": "score_model", "name": "judge", "model": "judge-model",
    "input": [{"role": "system", "content": "Score the answer from 0 to 10."},
              {"role": "user", "content": "Q: {{item.question}}\nA: {{sample.output_text}}"}],
    "range": [0, 10],
    "sampling_params": {"temperature": 0.0, "max_completions_tokens": 8, "seed": 3},
}
ITEM = {"question": "2 + 2?"}


def endpoint(reply, status=200, seen=None):
    def handle(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(request)
        if status != 200:
            return httpx.Response(status, text="overloaded")
        return httpx.Response(200, json={"choices": [{"message": {"role": "assistant",
                                                                  "content": reply}}]})
    return ModelEndpoint("http://judge.test/v1", api_key="k-1",
                         transport=httpx.MockTransport(handle))


def settings(reply, **kw):
    return GraderSettings(score_model_endpoint=endpoint(reply, **kw))


def test_request_carries_model_messages_and_sampling_params():
    seen = []
    result = grade(GRADER, {"output_text": "4"}, ITEM,
                   GraderSettings(score_model_endpoint=endpoint("8", seen=seen)))
    assert result.score == 8.0
    (request,) = seen
    assert request.url == "http://judge.test/v1/chat/completions"
    assert request.headers["authorization"] == "Bearer k-1"
    body = json.loads(request.content)
    assert body == {
        "model": "judge-model",
        "messages": [{"role": "system", "content": "Score the answer from 0 to 10."},
                     {"role": "user", "content": "Q: 2 + 2?\nA: 4"}],
        "temperature": 0.0, "max_completion_tokens": 8, "seed": 3,
    }


@pytest.mark.parametrize(("reply", "score"), [
    ("7", 7.0),
    ("Reasoning: step 1 of 2 ... final score: 6.5", 6.5),   # the last number
    ('{"score": 3}', 3.0),
    ('{"result": 2.5, "steps": 4}', 2.5),
    ("Score: 1e0", 1.0),
    ("0", 0.0),
])
def test_reply_parsing(reply, score):
    assert parse_score(reply, (0, 10), "g") == score


@pytest.mark.parametrize(("reply", "message"), [
    ("11", "g: the model answered 11, outside the range [0, 10]"),
    ("-1", "g: the model answered -1, outside the range [0, 10]"),
    ("I cannot grade this.", "g: the model's reply has no number"),
])
def test_bad_replies(reply, message):
    with pytest.raises(GraderError) as e:
        parse_score(reply, (0, 10), "g")
    assert e.value.message.startswith(message)


def test_out_of_range_through_grade():
    with pytest.raises(GraderError, match=r"grader 'judge': the model answered 12, outside "
                                          r"the range \[0, 10\]"):
        grade(GRADER, {"output_text": "4"}, ITEM, settings("12"))


def test_server_error_names_the_status():
    with pytest.raises(GraderError, match="answered 503: overloaded"):
        grade(GRADER, {"output_text": "4"}, ITEM, settings("1", status=503))


def test_no_endpoint_configured():
    with pytest.raises(GraderError, match="no score model endpoint configured"):
        grade(GRADER, {"output_text": "4"}, ITEM, GraderSettings())


def test_missing_item_field_names_the_template():
    with pytest.raises(GraderError, match=r"template \{\{item.question\}\} refers to "
                                          "item.question, which the item lacks"):
        grade(GRADER, {"output_text": "4"}, {}, settings("1"))


def test_unreachable_endpoint():
    closed = ModelEndpoint("http://127.0.0.1:9/v1", timeout_s=2)
    with pytest.raises(GraderError, match="could not reach http://127.0.0.1:9/v1/chat/completions"):
        grade(GRADER, {"output_text": "4"}, ITEM, GraderSettings(score_model_endpoint=closed))


class _Judge(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        answer = "9" if "A: 4" in body["messages"][-1]["content"] else "2"
        data = json.dumps({"choices": [{"message": {"content": f"score {answer}"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_real_http_server_on_localhost():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Judge)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        local = GraderSettings(score_model_endpoint=ModelEndpoint(
            f"http://127.0.0.1:{server.server_address[1]}/v1", timeout_s=5))
        assert grade(GRADER, {"output_text": "4"}, ITEM, local).score == 9.0
        assert grade(GRADER, {"output_text": "5"}, ITEM, local).score == 2.0
    finally:
        server.shutdown()
        server.server_close()
