"""OpenAI's grader endpoints, /v1/fine_tuning/alpha/graders/{validate,run}, on SQLite and
PostgreSQL: each grader type scores a sample by hand-worked arithmetic, malformed graders are
400s naming the field, graders that fail on a sample are 200s with OpenAI's error flags, a
runaway python grader is stopped while the server keeps answering, and the official SDK's
``client.fine_tuning.alpha.graders`` calls work against it."""

from __future__ import annotations

import math
import re
import time
from pathlib import Path

import openai
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from preftune.service.app import create_app
from preftune.service.limits import Graders, ServiceConfig

RUN = "/v1/fine_tuning/alpha/graders/run"
VALIDATE = "/v1/fine_tuning/alpha/graders/validate"
DOCS = Path(__file__).parents[2] / "docs" / "service.md"

EXACT = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
         "reference": "{{item.answer}}", "operation": "eq"}


def api(db, store, **graders):
    """A client of an app whose operator set ``graders``."""
    config = ServiceConfig(graders=Graders(**graders))
    return TestClient(create_app(db, store, config=config))


def auth(key):
    return {"Authorization": f"Bearer {key}"}


def run(client, key, grader, sample, item=None, status=200):
    body = {"grader": grader, "model_sample": sample}
    if item is not None:
        body["item"] = item
    response = client.post(RUN, json=body, headers=auth(key))
    assert response.status_code == status, response.text
    return response.json()


# ------------------------------------------------------------------------------- every type


def test_string_check_scores_one_for_a_match_and_zero_otherwise(client, keys):
    # eq: "42" == "42" → 1.0; ilike: "Paris" is in "it is paris." ignoring case → 1.0
    body = run(client, keys.alice, EXACT, "42", {"answer": "42"})
    assert body["reward"] == 1.0
    assert body["metadata"]["name"] == "exact" and body["metadata"]["type"] == "string_check"
    assert not any(v for k, v in body["metadata"]["errors"].items() if k != "messages")
    assert body["sub_rewards"] == {} and body["model_grader_token_usage_per_model"] == {}
    assert run(client, keys.alice, EXACT, "41", {"answer": "42"})["reward"] == 0.0
    ilike = {**EXACT, "operation": "ilike", "reference": "Paris"}
    assert run(client, keys.alice, ilike, "it is paris.")["reward"] == 1.0


def test_text_similarity_rouge_1(client, keys):
    # "the cat sat" against "the cat ran": 2 shared unigrams of 3 each side,
    # precision = recall = 2/3, F1 = 2/3.
    grader = {"type": "text_similarity", "name": "sim", "input": "{{sample.output_text}}",
              "reference": "{{item.reference}}", "evaluation_metric": "rouge_1"}
    body = run(client, keys.alice, grader, "the cat sat", {"reference": "the cat ran"})
    assert body["reward"] == pytest.approx(2 / 3)


def test_multi_combines_its_graders_by_the_formula(client, keys):
    # fmt: the JSON sample's answer equals the item's → 1; sim: rouge_l of "a b c d" against
    # "a b x d": LCS "a b d" = 3 of 4 each side → F1 0.75. 0.5 * 1 + 0.5 * 0.75 = 0.875.
    grader = {"type": "multi", "name": "both", "calculate_output": "0.5 * fmt + 0.5 * sim",
              "graders": {
                  "fmt": {"type": "string_check", "name": "fmt", "operation": "eq",
                          "input": "{{sample.output_json.answer}}",
                          "reference": "{{item.answer}}"},
                  "sim": {"type": "text_similarity", "name": "sim",
                          "input": "{{sample.output_json.words}}",
                          "reference": "{{item.words}}", "evaluation_metric": "rouge_l"}}}
    body = run(client, keys.alice, grader, '{"answer": "7", "words": "a b c d"}',
               {"answer": "7", "words": "a b x d"})
    assert body["reward"] == pytest.approx(0.875)
    assert body["sub_rewards"] == pytest.approx({"fmt": 1.0, "sim": 0.75})
    assert body["metadata"]["scores"] == pytest.approx({"fmt": 1.0, "sim": 0.75})


def test_python_grader_runs_the_users_grade(db, store, keys):
    # grade: 1 - |len(sample) - len(answer)| / 10 = 1 - |5 - 3| / 10 = 0.8
    grader = {"type": "python", "name": "length",
              "source": "def grade(sample, item):\n"
                        "    return 1 - abs(len(sample['output_text']) - "
                        "len(item['answer'])) / 10\n"}
    body = run(api(db, store), keys.alice, grader, "hello", {"answer": "abc"})
    assert body["reward"] == pytest.approx(0.8)
    assert body["metadata"]["type"] == "python"


def judge_app(seen: list[dict]) -> FastAPI:
    """An OpenAI-compatible chat endpoint that answers "Score: 0.75"."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def complete(body: dict) -> dict:
        seen.append(body)
        return {"id": "c", "object": "chat.completion", "model": body["model"],
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": "Score: 0.75"}}]}

    return app


def test_score_model_asks_the_operators_endpoint(db, store, keys, serving):
    seen: list[dict] = []
    grader = {"type": "score_model", "name": "judge", "model": "judge-1",
              "input": [{"role": "user", "content": "Answer: {{sample.output_text}}; "
                                                    "reference: {{item.answer}}. Score 0-1."}],
              "sampling_params": {"temperature": 0, "max_completions_tokens": 8}}
    with serving(judge_app(seen)) as url:
        client = api(db, store, score_model_base_url=f"{url}/v1")
        body = run(client, keys.alice, grader, "4", {"answer": "four"})
    assert body["reward"] == 0.75  # the last number of the reply
    assert body["metadata"]["sampled_model_name"] == "judge-1"
    assert seen == [{"model": "judge-1", "temperature": 0, "max_completion_tokens": 8,
                     "messages": [{"role": "user",
                                   "content": "Answer: 4; reference: four. Score 0-1."}]}]


def test_score_model_without_an_endpoint_is_a_model_server_error(client, keys):
    grader = {"type": "score_model", "name": "judge", "model": "m",
              "input": [{"role": "user", "content": "{{sample.output_text}}"}]}
    body = run(client, keys.alice, grader, "x")
    errors = body["metadata"]["errors"]
    assert body["reward"] == 0.0 and errors["model_grader_server_error"]
    assert "no score model endpoint configured" in errors["model_grader_server_error_details"]


def test_cosine_embeds_with_the_operators_embedding_model(db, store, keys, embeddings):
    # letter counts: "abb" = (1, 2) over a, b and "ab" = (1, 1): 3 / (sqrt 5 · sqrt 2) = 0.9487
    grader = {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}",
              "reference": "{{item.answer}}", "evaluation_metric": "cosine"}
    client = api(db, store, embedding_base_url=embeddings.base_url, embedding_model="letters-1",
                 embedding_api_key="sk-embed")
    body = run(client, keys.alice, grader, "abb", {"answer": "ab"})
    assert body["reward"] == pytest.approx(3 / math.sqrt(10))
    assert not any(v for k, v in body["metadata"]["errors"].items() if k != "messages")
    assert embeddings.seen == [("Bearer sk-embed", {"model": "letters-1", "input": ["abb", "ab"],
                                                    "encoding_format": "float"})]
    run(client, keys.alice, grader, "ba", {"answer": "ab"})  # "ab" is cached
    assert embeddings.seen[1][1]["input"] == ["ba"]


def test_cosine_without_an_embedding_model_is_a_model_server_error(client, keys):
    grader = {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}",
              "reference": "x", "evaluation_metric": "cosine"}
    body = run(client, keys.alice, grader, "x")
    errors = body["metadata"]["errors"]
    assert body["reward"] == 0.0 and errors["model_grader_server_error"]
    assert "no embedding model configured" in errors["model_grader_server_error_details"]


# --------------------------------------------------------------------------------- validate


def test_validate_answers_the_grader_normalized(client, keys):
    response = client.post(VALIDATE, json={"grader": {**EXACT, "name": "x"}},
                           headers=auth(keys.alice))
    assert response.status_code == 200, response.text
    assert response.json() == {"grader": {**EXACT, "name": "x"}}
    grader = {"type": "score_model", "name": "j", "model": "m",
              "input": [{"role": "user", "content": "hi"}]}
    normalized = client.post(VALIDATE, json={"grader": grader}, headers=auth(keys.alice))
    assert normalized.json()["grader"]["range"] == [0.0, 1.0]  # the default, spelled out


@pytest.mark.parametrize(("grader", "param", "says"), [
    ({**EXACT, "operation": "equals"}, "grader.operation", "expected one of eq, ne, like"),
    ({"type": "multi", "name": "m", "calculate_output": "fmt",
      "graders": {"fmt": {**EXACT, "operation": "equals"}}},
     "grader.graders.fmt.operation", "got 'equals'"),
    ({"type": "multi", "name": "m", "calculate_output": "fmt + nope",
      "graders": {"fmt": EXACT}}, "grader.calculate_output", "unknown name nope"),
    ({**EXACT, "type": "regex"}, "grader.type", "expected one of string_check"),
    ({**EXACT, "refrence": "x"}, "grader.refrence", "unknown field"),
    ({"type": "python", "name": "p", "source": "def other(): pass"}, "grader.source",
     "grade(sample, item)"),
])
def test_a_malformed_grader_is_a_400_naming_the_field(client, keys, grader, param, says):
    for path, body in ((VALIDATE, {"grader": grader}),
                       (RUN, {"grader": grader, "model_sample": "x"})):
        response = client.post(path, json=body, headers=auth(keys.alice))
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert (error["param"], error["code"]) == (param, "invalid_grader")
        assert says in error["message"] and error["message"].startswith(param)


def test_the_endpoints_need_an_api_key(client):
    response = client.post(VALIDATE, json={"grader": EXACT})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


def test_item_must_be_an_object(client, keys):
    response = client.post(RUN, json={"grader": EXACT, "model_sample": "x", "item": [1]},
                           headers=auth(keys.alice))
    assert response.status_code == 400 and response.json()["error"]["param"] == "item"


# ------------------------------------------------------------------------ errors on a sample


def test_a_missing_item_field_is_a_200_with_invalid_variable_error(client, keys):
    body = run(client, keys.alice, EXACT, "42", {"solution": "42"})
    errors = body["metadata"]["errors"]
    assert body["reward"] == 0.0 and errors["invalid_variable_error"]
    assert "item.answer" in errors["messages"][0]


def test_reference_answer_fills_item_reference_answer(client, keys):
    grader = {**EXACT, "reference": "{{item.reference_answer}}"}
    response = client.post(RUN, json={"grader": grader, "model_sample": "42",
                                      "reference_answer": "42"}, headers=auth(keys.alice))
    assert response.json()["reward"] == 1.0


def python(name, body):
    return {"type": "python", "name": name, "source": f"def grade(sample, item):\n{body}\n"}


def test_a_python_error_is_a_runtime_error_with_its_line(db, store, keys):
    body = run(api(db, store), keys.alice, python("div", "    return 1 / 0"), "x")
    errors = body["metadata"]["errors"]
    assert body["reward"] == 0.0 and errors["python_grader_runtime_error"]
    assert "ZeroDivisionError" in errors["python_grader_runtime_error_details"]


@pytest.mark.parametrize(("name", "source", "flag", "says"), [
    ("forever", "    while True:\n        pass", "timeout", "timed out after 2 s"),
    ("hog", "    x = bytearray(10**10)\n    return 1", "memory_limit", "out of memory"),
    ("net", "    import socket\n    socket.create_connection(('127.0.0.1', 9))\n    return 1",
     None, "opened a network socket"),
])
def test_a_runaway_python_grader_is_stopped_and_the_server_answers_on(
        db, store, keys, name, source, flag, says):
    client = api(db, store, python_timeout_s=2, python_memory_mb=128)
    start = time.monotonic()
    body = run(client, keys.alice, python(name, source), "x")
    assert time.monotonic() - start < 8  # the 2 s limit, plus starting Python
    errors = body["metadata"]["errors"]
    assert body["reward"] == 0.0 and says in errors["messages"][0], errors
    if flag is None:
        assert errors["python_grader_runtime_error"]
    else:
        assert errors["python_grader_server_error"]
        assert errors["python_grader_server_error_type"] == flag
    assert errors["unresponsive_reward_error"] == (flag == "timeout")
    assert run(client, keys.alice, EXACT, "1", {"answer": "1"})["reward"] == 1.0


# ------------------------------------------------------------------------ operator settings


def test_python_graders_off_is_a_400_naming_the_type(db, store, keys):
    client = api(db, store, allow_python=False)
    nested = {"type": "multi", "name": "m", "calculate_output": "a + b",
              "graders": {"a": EXACT, "b": python("p", "    return 1")}}
    for grader, param in ((python("p", "    return 1"), "grader.type"),
                          (nested, "grader.graders.b.type")):
        for path in (VALIDATE, RUN):
            response = client.post(path, json={"grader": grader, "model_sample": "1"},
                                   headers=auth(keys.alice))
            assert response.status_code == 400, response.text
            error = response.json()["error"]
            assert (error["param"], error["code"]) == (param, "grader_not_allowed")
            assert "graders.allow_python" in error["message"]
    assert run(client, keys.alice, EXACT, "1", {"answer": "1"})["reward"] == 1.0


def test_over_max_concurrent_python_graders_is_a_503(db, store, keys, monkeypatch):
    from preftune.service.routes import graders as routes

    monkeypatch.setattr(routes, "WAIT_S", 0.2)
    client = api(db, store, max_concurrent=1)
    slots = client.app.state.grader_slots  # type: ignore[attr-defined]
    assert slots.acquire(timeout=1)  # another request holds the one turn
    try:
        response = client.post(RUN, json={"grader": python("p", "    return 1"),
                                          "model_sample": "x"}, headers=auth(keys.alice))
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "server_busy"
        # graders that start no process and call no model need no turn
        assert run(client, keys.alice, EXACT, "1", {"answer": "1"})["reward"] == 1.0
    finally:
        slots.release()
    assert run(client, keys.alice, python("p", "    return 1"), "x")["reward"] == 1.0


def test_score_model_api_key_comes_from_the_environment(tmp_path, monkeypatch):
    from preftune.service.limits import load

    monkeypatch.setenv("JUDGE_KEY", "sk-judge")
    path = tmp_path / "service.yaml"
    path.write_text("graders:\n  allow_python: false\n  score_model_base_url: http://j/v1\n"
                    "  score_model_api_key: '${JUDGE_KEY}'\n", encoding="utf-8")
    settings = load(path).graders.settings()
    assert settings.allow_python is False and settings.score_model_endpoint is not None
    assert settings.score_model_endpoint.api_key == "sk-judge"


def test_the_operators_guide_documents_every_graders_setting():
    text = DOCS.read_text(encoding="utf-8")
    guide = text[text.index("## Operating preftune serve"):text.index("## Pipeline mode")]
    for name in Graders.model_fields:
        assert re.search(rf"`(graders\.)?{name}`", guide), f"{name} is not in docs/service.md"


# ------------------------------------------------------------------------------ the SDK


def test_the_openai_sdk_runs_and_validates_graders(client, keys):
    sdk = openai.OpenAI(base_url="http://testserver/v1", api_key=keys.alice, max_retries=0,
                        http_client=client)
    result = sdk.fine_tuning.alpha.graders.run(grader=EXACT, model_sample="42",
                                               item={"answer": "42"})
    assert result.reward == 1.0 and result.metadata.name == "exact"
    assert result.metadata.errors.invalid_variable_error is False
    failed = sdk.fine_tuning.alpha.graders.run(grader=EXACT, model_sample="42", item={})
    assert failed.reward == 0.0 and failed.metadata.errors.invalid_variable_error is True
    validated = sdk.fine_tuning.alpha.graders.validate(grader=EXACT)
    assert validated.grader is not None and validated.grader.type == "string_check"
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.fine_tuning.alpha.graders.validate(grader={**EXACT, "operation": "equals"})
    assert caught.value.param == "grader.operation"  # type: ignore[attr-defined]
