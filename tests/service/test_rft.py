"""The reinforcement method: the request's grader and hyperparameters checked up front (400
naming the field), RFT files checked in ``validating_files`` (line and field of each problem),
the planned steps against the server's limits, and the ``rl launch`` config a worker runs."""

from __future__ import annotations

import json

import pytest
import yaml
from fastapi.testclient import TestClient

from preftune.rl.envconfig import load_env_config
from preftune.rlconfig import build_config
from preftune.service import queue, rft
from preftune.service.app import create_app
from preftune.service.auth import ensure_tenant
from preftune.service.jobspec import InvalidRequest, build_spec
from preftune.service.limits import Graders, Limits, ServiceConfig
from preftune.service.pipeline import register_local_file
from preftune.service.validation import validate_once

GRADER = {"type": "string_check", "name": "exact", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}", "operation": "eq"}
PYTHON = {"type": "python", "name": "py", "source": "def grade(sample, item):\n    return 1.0"}


def method(grader=None, **hyper):
    return {"type": "reinforcement",
            "reinforcement": {"grader": grader or GRADER, "hyperparameters": hyper}}


def item(question="What is 2 + 2?", answer="4", **extra):
    return {"messages": [{"role": "user", "content": question}], "answer": answer, **extra}


def jsonl(rows):
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


# ------------------------------------------------------------------------------ the request


def test_auto_hyperparameters_take_the_defaults_and_the_method_is_echoed():
    spec = build_spec("tiny", method(n_epochs=2, batch_size="auto"), {"max_tokens": 8}, 7)
    hyper = spec.method["reinforcement"]["hyperparameters"]
    assert hyper == {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 1.0,
                     "eval_interval": 5, "eval_samples": 2, "compute_multiplier": 1.0}
    assert spec.method["reinforcement"]["grader"] == GRADER
    assert spec.config["method"] == "reinforcement" and spec.config["seed"] == 7
    assert (spec.config["epochs"], spec.config["group_size"], spec.config["max_tokens"]) == \
        (2, 4, 8)
    assert spec.config["learning_rate"] == build_config({}).learning_rate


def test_multipliers_scale_the_learning_rate_and_the_group():
    spec = build_spec("tiny", method(learning_rate_multiplier=2, compute_multiplier=2.0),
                      {"learning_rate": 0.001, "kl_coef": 0.05, "lora": False}, None)
    assert spec.config["learning_rate"] == pytest.approx(0.002)
    assert spec.config["group_size"] == 8
    assert (spec.config["kl_coef"], spec.config["lora"]) == (0.05, False)


@pytest.mark.parametrize(("settings", "config", "param", "says"), [
    ({}, None, "method.reinforcement.grader", "needs method.reinforcement.grader"),
    ({"grader": {**GRADER, "operation": "nope"}}, None,
     "method.reinforcement.grader.operation", "expected one of eq, ne, like, ilike"),
    ({"grader": GRADER, "hyperparameters": {"beta": 0.1}}, None,
     "method.reinforcement.hyperparameters.beta", "not a hyperparameter"),
    ({"grader": GRADER, "hyperparameters": {"n_epochs": 0}}, None,
     "method.reinforcement.hyperparameters.n_epochs", "positive integer"),
    ({"grader": GRADER, "hyperparameters": {"compute_multiplier": "lots"}}, None,
     "method.reinforcement.hyperparameters.compute_multiplier", "positive number"),
    ({"grader": GRADER}, {"batch_size": 64}, "config.batch_size", "set by the server"),
    ({"grader": GRADER}, {"api_url": "http://x"}, "config.api_url", "set by the server"),
    ({"grader": GRADER}, {"kl_coef": -1}, "config.kl_coef", "kl_coef"),
    ({"grader": GRADER}, {"group_size": 1}, "config.group_size", "at least 2"),
    ({"grader": GRADER}, {"temperature": 0}, "config.temperature", "above 0"),
])
def test_a_bad_request_names_its_field(settings, config, param, says):
    with pytest.raises(InvalidRequest) as raised:
        build_spec("tiny", {"type": "reinforcement", "reinforcement": settings}, config, None)
    assert raised.value.param == param
    assert says in raised.value.message


def test_python_graders_are_refused_where_the_operator_turned_them_off():
    nested = {"type": "multi", "name": "m", "graders": {"py": PYTHON},
              "calculate_output": "py"}
    with pytest.raises(InvalidRequest) as raised:
        build_spec("tiny", method(nested), None, None,
                   ServiceConfig(graders=Graders(allow_python=False)))
    assert raised.value.code == "grader_not_allowed"
    assert raised.value.param == "method.reinforcement.grader.graders.py.type"
    build_spec("tiny", method(nested), None, None, ServiceConfig())  # allowed by default


COSINE = {"type": "text_similarity", "name": "close", "input": "{{sample.output_text}}",
          "reference": "{{item.answer}}", "evaluation_metric": "cosine"}
JUDGE = {"type": "score_model", "name": "judge", "model": "j",
         "input": [{"role": "user", "content": "{{sample.output_text}}"}]}


@pytest.mark.parametrize(("grader", "param", "says"), [
    (COSINE, "method.reinforcement.grader.evaluation_metric",
     "evaluation_metric cosine needs an embedding model, and this server has none configured"),
    ({"type": "multi", "name": "m", "graders": {"exact": GRADER, "close": COSINE},
      "calculate_output": "exact + close"},
     "method.reinforcement.grader.graders.close.evaluation_metric", "needs an embedding model"),
    (JUDGE, "method.reinforcement.grader.type",
     "score_model graders need a model endpoint, and this server has none configured"),
])
def test_a_grader_needing_an_endpoint_the_server_lacks_is_refused(grader, param, says):
    with pytest.raises(InvalidRequest) as raised:
        build_spec("tiny", method(grader), None, None, ServiceConfig())
    assert (raised.value.code, raised.value.param) == ("grader_unavailable", param)
    assert says in raised.value.message
    lent = Graders(embedding_base_url="http://127.0.0.1:9/v1", embedding_model="e",
                   score_model_base_url="http://127.0.0.1:9/v1")
    build_spec("tiny", method(grader), None, None, ServiceConfig(graders=lent))


def test_an_embedding_endpoint_needs_its_model():
    with pytest.raises(ValueError, match="embedding_base_url is set without embedding_model"):
        Graders(embedding_base_url="http://127.0.0.1:9/v1")


# -------------------------------------------------------------------------------- the files


def test_each_bad_line_is_named_with_its_field(tmp_path):
    path = tmp_path / "rft.jsonl"
    path.write_bytes(jsonl([
        item(),
        "{not json",
        [1, 2],
        {"messages": [{"role": "robot", "content": "hi"}], "answer": "x"},
        {"messages": [{"role": "user", "content": "hi"}]},
        "",
        {"prompt": "no messages", "answer": "1"},
    ]))
    result = rft.check_files({"grader": GRADER}, path, None)
    error = result["error"]
    assert (error["code"], error["param"]) == ("invalid_training_file", "training_file")
    lines = error["message"].splitlines()
    assert lines[0].startswith("training_file: 5 problems")
    assert "training_file line 2: not valid JSON" in lines[1]
    assert "line 3: expected a JSON object, found list" in lines[2]
    assert "line 4: messages[0].role: expected one of system, developer, user, assistant" \
        in lines[3]
    assert "line 5: grader 'exact' reads item.answer, which this item lacks" in lines[4]
    assert "line 7: field 'messages' is missing" in lines[5]


def test_good_files_count_the_training_items_and_check_the_validation_file(tmp_path):
    train, valid = tmp_path / "train.jsonl", tmp_path / "valid.jsonl"
    train.write_bytes(jsonl([item(), item("3 + 3?", "6"), item("1 + 1?", "2")]))
    valid.write_bytes(jsonl([item(), {"messages": [{"role": "user", "content": "x"}]}]))
    assert rft.check_files({"grader": GRADER}, train, None) == {"examples_per_epoch": 3}
    error = rft.check_files({"grader": GRADER}, train, valid)["error"]
    assert error["param"] == "validation_file"
    assert "validation_file line 2: grader 'exact' reads item.answer" in error["message"]
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"\n")
    assert "holds no items" in rft.check_files({"grader": GRADER}, empty, None)["error"][
        "message"]


def _submit(db, store, path, config=None, hyper=None):
    tenant = ensure_tenant(db, "team-a")
    file_id = register_local_file(db, store, tenant, path)
    spec = build_spec("tiny", method(**(hyper or {})), config, seed=None)
    job, _ = queue.enqueue(db, tenant_id=tenant, model="tiny", training_file=file_id,
                           validation_file=None, method=spec.method, config=spec.config,
                           seed=42)
    return job


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_bad_rft_file_fails_its_job_in_validating_files(db, store, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(jsonl([item(), {"messages": "hello", "answer": "1"}]))
    job = _submit(db, store, path)
    assert validate_once(db, store, "v", 30)
    row = queue.get_job(db, None, job.id)
    assert row.status == "failed"
    assert row.error["code"] == "invalid_training_file"
    assert "line 2: field 'messages': expected a non-empty list of messages" in \
        row.error["message"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_good_rft_file_is_queued_and_a_plan_over_the_limits_fails(db, store, tmp_path):
    path = tmp_path / "good.jsonl"
    path.write_bytes(jsonl([item(f"{i} + 1?", str(i + 1)) for i in range(10)]))
    job = _submit(db, store, path, hyper={"n_epochs": 2, "batch_size": 2})
    assert validate_once(db, store, "v", 30)
    assert queue.get_job(db, None, job.id).status == "queued"
    job = _submit(db, store, path, hyper={"n_epochs": 2, "batch_size": 2})
    assert validate_once(db, store, "v", 30, Limits(max_steps=9))
    row = queue.get_job(db, None, job.id)
    assert row.status == "failed" and row.error["code"] == "limit_exceeded"
    assert "10 optimizer steps" in row.error["message"] and "max_steps=9" in \
        row.error["message"]


# ---------------------------------------------------------------------------------- the API


def test_the_api_takes_a_reinforcement_job_and_refuses_a_bad_grader(db, store, keys):
    config = ServiceConfig(graders=Graders(allow_python=False))
    client = TestClient(create_app(db, store, config=config))
    headers = {"Authorization": f"Bearer {keys.alice}"}
    file_id = client.post("/v1/files", headers=headers, data={"purpose": "fine-tune"},
                          files={"file": ("rft.jsonl", jsonl([item()]))}).json()["id"]
    body = {"model": "tiny", "training_file": file_id, "method": method(n_epochs=3)}
    created = client.post("/v1/fine_tuning/jobs", json=body, headers=headers)
    assert created.status_code == 200, created.text
    job = created.json()
    assert job["method"]["type"] == "reinforcement"
    assert job["method"]["reinforcement"]["hyperparameters"]["n_epochs"] == 3
    assert job["hyperparameters"]["n_epochs"] == 3 and job["status"] == "validating_files"

    bad = client.post("/v1/fine_tuning/jobs", headers=headers,
                      json={**body, "method": method({**GRADER, "input": 5})})
    assert bad.status_code == 400
    assert bad.json()["error"]["param"] == "method.reinforcement.grader.input"
    refused = client.post("/v1/fine_tuning/jobs", json={**body, "method": method(PYTHON)},
                          headers=headers)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "grader_not_allowed"
    estimate = client.post("/v1/fine_tuning/jobs/estimate", json=body, headers=headers)
    assert estimate.status_code == 400 and estimate.json()["error"]["param"] == "method.type"


# ---------------------------------------------------------------------------------- the run


def test_the_launch_config_runs_the_grader_over_the_jobs_files(tmp_path):
    train, valid = tmp_path / "train.jsonl", tmp_path / "valid.jsonl"
    train.write_bytes(jsonl([item(f"{i}?", str(i)) for i in range(10)]))
    valid.write_bytes(jsonl([item()]))
    spec = build_spec("tiny", method(n_epochs=2, batch_size=3, eval_interval=4,
                                     eval_samples=3), {"lora": False, "max_tokens": 16}, 5)
    server = ServiceConfig(graders=Graders(python_timeout_s=3, python_memory_mb=128,
                                           score_model_base_url="http://127.0.0.1:9/v1"))
    launch = rft.launch_config(spec.config, train, valid, tmp_path / "run", server)
    trainer = launch.pop("trainer")
    assert trainer["training_steps"] == 7  # ceil(10 items x 2 epochs / 3 a step)
    assert trainer["batch_size"] == 12  # 3 items x a group of 4
    assert (trainer["model_name"], trainer["seed"], trainer["lora"]) == ("tiny", 5, False)
    build_config(trainer)  # the trainer takes every option as it is
    assert launch.pop("launch") == {"api_port": 0, "inference_port": 0}
    path = tmp_path / "rft.yaml"
    path.write_text(yaml.safe_dump(launch))
    env = load_env_config(path)
    assert (env.dataset_name, env.messages_field, env.use_chat) == (str(train), "messages", True)
    assert (env.eval_dataset_name, env.eval_every_steps, env.eval_group_size) == \
        (str(valid), 4, 3)
    assert env.eval_log == str(tmp_path / "run" / "eval.jsonl")
    assert (env.group_size, env.max_tokens, env.epochs, env.max_batches_offpolicy) == \
        (4, 16, 3, 1)
    (reward,) = env.reward_functions
    assert reward["params"] == {"grader": GRADER, "allow_python": True,
                                "python_timeout_s": 3.0, "python_memory_mb": 128,
                                "score_model_base_url": "http://127.0.0.1:9/v1"}
    lent = Graders(embedding_base_url="http://127.0.0.1:8/v1", embedding_model="e-1")
    cosine = build_spec("tiny", method(COSINE), None, None, ServiceConfig(graders=lent))
    (reward,) = rft.launch_config(cosine.config, train, None, tmp_path,
                                  ServiceConfig(graders=lent))["dataset"]["reward_functions"]
    assert (reward["params"]["embedding_base_url"], reward["params"]["embedding_model"]) == \
        ("http://127.0.0.1:8/v1", "e-1")
    spec = build_spec("tiny", method(), {"max_steps": 3}, None)
    assert rft.launch_config(spec.config, train, None, tmp_path, ServiceConfig())["trainer"][
        "training_steps"] == 3


def test_a_server_that_samples_with_vllm_launches_it_and_refuses_full_fine_tuning(tmp_path):
    train = tmp_path / "train.jsonl"
    train.write_bytes(jsonl([item()]))
    server = ServiceConfig.model_validate({"reinforcement": {
        "rft_inference": "vllm", "rft_vllm_args": ["--gpu-memory-utilization", "0.5"]}})
    spec = build_spec("tiny", method(), None, None, server)
    launch = rft.launch_config(spec.config, train, None, tmp_path, server)["launch"]
    assert launch == {"api_port": 0, "inference_port": 0, "inference": "vllm",
                      "vllm_command": "vllm serve",
                      "vllm_args": ["--gpu-memory-utilization", "0.5"]}
    with pytest.raises(InvalidRequest) as raised:
        build_spec("tiny", method(), {"lora": False}, None, server)
    assert raised.value.param == "config.lora" and "vLLM" in raised.value.message
