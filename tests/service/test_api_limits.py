"""What the operator's config allows a tenant: limits on a job's options, quotas on what it
holds, the models and trackers it may use, LoRA targets that exist; and who may read /metrics
and how fast keys may be guessed."""

from __future__ import annotations

import json
import typing

import pytest
from fastapi.testclient import TestClient

from preftune.config import TrainConfig
from preftune.service import queue
from preftune.service.app import create_app
from preftune.service.limits import Limits, Quota, ServiceConfig

PAIRS = "".join(json.dumps({"prompt": f"q{i}", "chosen": "yes", "rejected": "no"}) + "\n"
                for i in range(4)).encode()
WANDB = {"wandb": {"env": {"WANDB_API_KEY": "team-a-key"}}}


def auth(key):
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def serve(db, store):
    """``serve(**config)``: a client of the app under ``ServiceConfig(**config)``."""

    def make(**config) -> TestClient:
        return TestClient(create_app(db, store, config=ServiceConfig(**config)))

    return make


def upload(client, key, content=PAIRS):
    return client.post("/v1/files", headers=auth(key), data={"purpose": "fine-tune"},
                       files={"file": ("pairs.jsonl", content)})


def post_job(client, key, file_id, headers=None, **fields):
    return client.post("/v1/fine_tuning/jobs", headers={**auth(key), **(headers or {})},
                       json={"model": "tiny", "training_file": file_id, **fields})


def refused(response, status, code, param=None):
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code
    if param is not None:
        assert error["param"] == param
    return error["message"]


def hyper(**values):
    return {"method": {"type": "dpo", "dpo": {"hyperparameters": values}}}


# ---------------------------------------------------------------------------------- limits


@pytest.mark.parametrize("fields, param, words", [
    (hyper(n_epochs=10**9), "method.dpo.hyperparameters.n_epochs",
     "n_epochs 1000000000 is over this server's limit max_epochs=20"),
    (hyper(n_epochs=2**63), "method.dpo.hyperparameters.n_epochs",
     f"n_epochs {2**63} is over this server's limit max_epochs=20"),
    (hyper(n_epochs=10**30), "method.dpo.hyperparameters.n_epochs",
     f"n_epochs {10**30} is over this server's limit max_epochs=20"),
    ({"config": {"epochs": 21}}, "config.epochs", "limit max_epochs=20"),
    ({"config": {"num_train_epochs": 21}}, "config.num_train_epochs", "limit max_epochs=20"),
    ({"config": {"max_steps": 2**63}}, "config.max_steps", "limit max_steps=100000"),
    (hyper(batch_size=10**12), "method.dpo.hyperparameters.batch_size",
     "limit max_batch_size=256"),
    ({"config": {"grad_accum": 10**30}}, "config.grad_accum", "limit max_grad_accum=1024"),
    ({"config": {"max_length": 10**9}}, "config.max_length", "limit max_length=8192"),
    ({"config": {"lora_rank": 10**9}}, "config.lora_rank", "limit max_lora_rank=256"),
    ({"config": {"lora_r": 2**63}}, "config.lora_r", "limit max_lora_rank=256"),
    ({"max_attempts": 11}, "max_attempts", "max_attempts 11 is over this server's limit "
                                           "max_attempts=10"),
    ({"max_attempts": 10**30}, "max_attempts", "limit max_attempts=10"),
])
def test_options_over_the_servers_limits_are_400_naming_field_and_limit(
        client, keys, db, fields, param, words):
    file_id = upload(client, keys.alice).json()["id"]
    message = refused(post_job(client, keys.alice, file_id, **fields), 400, "limit_exceeded",
                      param)
    assert words in message
    limit = words.split("limit ", 1)[1].split("=")[0]
    assert f"limits.{limit}" in message, "says which setting the operator raises"
    assert queue.list_jobs(db, keys.alice_tenant)[0] == [], "nothing was stored"


def test_limits_come_from_the_config_and_bound_defaults_too(serve, keys):
    client = serve(limits=Limits(max_epochs=2, max_grad_accum=4))
    file_id = upload(client, keys.alice).json()["id"]
    config = {"grad_accum": 4}
    assert post_job(client, keys.alice, file_id, config=config,
                    **hyper(n_epochs=2)).status_code == 200
    refused(post_job(client, keys.alice, file_id, config=config, **hyper(n_epochs=3)),
            400, "limit_exceeded", "method.dpo.hyperparameters.n_epochs")
    # grad_accum's default (8) is over the limit too: the error names where to set it.
    message = refused(post_job(client, keys.alice, file_id, **hyper(n_epochs=1)), 400,
                      "limit_exceeded", "config.grad_accum")
    assert "grad_accum 8 is over this server's limit max_grad_accum=4" in message


INT_FIELDS = [name for name, info in TrainConfig.model_fields.items()
              if info.annotation is int or int in typing.get_args(info.annotation)]


@pytest.mark.parametrize("value", [2**63, 10**30])
def test_a_huge_integer_in_any_option_is_a_clean_400(client, keys, value):
    file_id = upload(client, keys.alice).json()["id"]
    for name in INT_FIELDS:
        r = post_job(client, keys.alice, file_id, config={name: value})
        assert r.status_code == 400, (name, r.text)
        assert r.json()["error"]["param"] == f"config.{name}", name
    for fields in ({"seed": value}, {"priority": value}):
        assert post_job(client, keys.alice, file_id, **fields).status_code == 422


def test_a_job_stores_its_run_time_limit_priority_and_request(serve, keys, db):
    client = serve(limits=Limits(max_run_hours=1.5, max_attempts=2))
    file_id = upload(client, keys.alice).json()["id"]
    job = post_job(client, keys.alice, file_id, priority=7).json()
    assert job["priority"] == 7
    row = queue.get_job(db, None, job["id"])
    assert (row.max_run_s, row.priority, row.max_attempts) == (5400.0, 7, 2)
    assert row.request_hash is not None and len(row.request_hash) == 64


# ---------------------------------------------------------------------------------- quotas


def test_queued_jobs_over_the_quota_are_429_per_tenant(serve, keys):
    client = serve(quota=Quota(max_queued_jobs=2), tenants={"team-b": {"max_queued_jobs": 3}})
    alices = upload(client, keys.alice).json()["id"]
    first = post_job(client, keys.alice, alices, headers={"Idempotency-Key": "k"}).json()
    post_job(client, keys.alice, alices)
    r = post_job(client, keys.alice, alices)
    message = refused(r, 429, "quota_exceeded")
    assert "max_queued_jobs=2" in message and "quota.max_queued_jobs" in message
    assert r.json()["error"]["type"] == "insufficient_quota"
    assert r.headers["x-should-retry"] == "false", "a retry in a moment would not help"
    # A retry of a request that created a job still gets that job.
    again = post_job(client, keys.alice, alices, headers={"Idempotency-Key": "k"})
    assert (again.status_code, again.json()["id"]) == (200, first["id"])
    # Another tenant has its own quota, here a larger one.
    bobs = upload(client, keys.bob).json()["id"]
    assert [post_job(client, keys.bob, bobs).status_code for _ in range(4)] == [200] * 3 + [429]
    # A job that ends frees its place.
    client.post(f"/v1/fine_tuning/jobs/{first['id']}/cancel", headers=auth(keys.alice))
    assert post_job(client, keys.alice, alices).status_code == 200


def test_files_over_the_quota_are_429_and_leave_nothing(serve, keys, store):
    client = serve(quota=Quota(max_files=2, max_stored_mb=1))
    big = PAIRS * (600 * 1024 // len(PAIRS))  # about 600 KiB
    assert upload(client, keys.alice, big).status_code == 200
    r = upload(client, keys.alice, big)
    message = refused(r, 429, "quota_exceeded", "file")
    assert "max_stored_mb=1" in message and "quota.max_stored_mb" in message
    assert len(list(store.files_dir.iterdir())) == 1, "the cut-off upload left nothing"
    assert upload(client, keys.alice).status_code == 200  # a small one still fits
    message = refused(upload(client, keys.alice), 429, "quota_exceeded", "file")
    assert "max_files=2" in message and "quota.max_files" in message
    # Checked before the body is read: even a malformed upload gets the quota's answer.
    r = client.post("/v1/files", headers=auth(keys.alice), files={"file": ("x.jsonl", big)})
    refused(r, 429, "quota_exceeded", "file")
    assert upload(client, keys.bob, big).status_code == 200, "bob's quota is his own"


def test_an_upload_over_the_size_limit_is_still_413_within_the_quota(db, store, keys):
    client = TestClient(create_app(db, store, max_upload_bytes=1024))
    refused(upload(client, keys.alice, PAIRS * 100), 413, "file_too_large")


# ------------------------------------------------------------------ models and integrations


@pytest.mark.parametrize("models, model, allowed", [
    (["tiny"], "tiny", True),
    (["tiny"], "qwen2.5-0.5b", False),
    (["tiny"], "Qwen/Qwen2.5-0.5B-Instruct", False),
    (["Qwen/*"], "qwen2.5-0.5b", True),  # an alias, by the hub id it stands for
    (["Qwen/*"], "Qwen/Qwen2.5-0.5B-Instruct", True),
    (["Qwen/*"], "meta-llama/Llama-3.2-1B-Instruct", False),
    (["*"], "meta-llama/Llama-3.2-1B-Instruct", True),
])
def test_the_base_model_must_be_on_the_tenants_list(serve, keys, models, model, allowed):
    client = serve(quota=Quota(models=models))
    file_id = upload(client, keys.alice).json()["id"]
    r = post_job(client, keys.alice, file_id, model=model)
    if allowed:
        assert r.status_code == 200, r.text
        return
    message = refused(r, 400, "model_not_allowed", "model")
    assert f"model {model!r} is not allowed" in message
    assert "quota.models" in message and "allowed: " + ", ".join(models) in message


def test_a_tenant_override_widens_the_model_list(serve, keys):
    client = serve(tenants={"team-b": {"models": ["tiny", "Qwen/*"]}})
    for key, status in ((keys.alice, 400), (keys.bob, 200)):
        file_id = upload(client, key).json()["id"]
        assert post_job(client, key, file_id, model="qwen2.5-0.5b").status_code == status


@pytest.mark.parametrize("fields, param", [
    ({"config": {"report_to": "wandb"}}, "config.report_to"),
    ({"config": {"report_to": ["mlflow"]}}, "config.report_to"),
    ({"config": {"wandb_project": "theirs"}}, "config.wandb_project"),
    (hyper(wandb_name="run"), "method.dpo.hyperparameters.wandb_name"),
])
def test_trackers_in_config_are_refused_for_integrations(client, keys, fields, param):
    file_id = upload(client, keys.alice).json()["id"]
    message = refused(post_job(client, keys.alice, file_id, **fields), 400, "invalid_value",
                      param)
    assert "integrations" in message and '"type": "wandb"' in message


def test_report_to_none_is_harmless(client, keys):
    file_id = upload(client, keys.alice).json()["id"]
    r = post_job(client, keys.alice, file_id, config={"report_to": "none"})
    assert r.status_code == 200 and r.json()["config"]["report_to"] == []


def test_a_wandb_integration_becomes_the_jobs_tracker(serve, keys, db):
    client = serve(tenants={"team-a": {"integrations": WANDB}})
    file_id = upload(client, keys.alice).json()["id"]
    wandb = {"project": "prefs", "name": "run-1", "entity": "team-a", "tags": ["dpo", "v2"]}
    r = post_job(client, keys.alice, file_id, integrations=[{"type": "wandb", "wandb": wandb}])
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["integrations"] == [{"type": "wandb", "wandb": wandb}], "echoed as OpenAI does"
    assert (job["config"]["report_to"], job["config"]["wandb_project"],
            job["config"]["wandb_name"]) == (["wandb"], "prefs", "run-1")
    row = queue.get_job(db, None, job["id"])
    assert row.integrations == [{"type": "wandb", "wandb": wandb}]
    # Bob's organization has no wandb integration: the operator's key is not his to use.
    bobs = upload(client, keys.bob).json()["id"]
    message = refused(post_job(client, keys.bob, bobs, integrations=[
        {"type": "wandb", "wandb": {"project": "p"}}]), 400, "integration_not_allowed",
        "integrations.0.type")
    assert "quota.integrations.wandb" in message
    twice = [{"type": "wandb", "wandb": {"project": "p"}}] * 2
    refused(post_job(client, keys.alice, file_id, integrations=twice), 400, "invalid_value",
            "integrations.1")


def test_an_integration_whose_package_is_missing_is_refused_at_submission(serve, keys,
                                                                          monkeypatch):
    from preftune.service import jobspec

    monkeypatch.setattr(jobspec, "tracker_installed", lambda kind: False)
    client = serve(tenants={"team-a": {"integrations": WANDB}})
    file_id = upload(client, keys.alice).json()["id"]
    message = refused(post_job(client, keys.alice, file_id, integrations=[
        {"type": "wandb", "wandb": {"project": "p"}}]), 400, "integration_unavailable",
        "integrations.0.type")
    assert "pip install 'preftune[wandb]'" in message


def test_wandb_tags_cannot_hold_commas(client, keys):
    file_id = upload(client, keys.alice).json()["id"]
    r = post_job(client, keys.alice, file_id, integrations=[
        {"type": "wandb", "wandb": {"project": "p", "tags": ["a,b"]}}])
    assert r.status_code == 422 and r.json()["error"]["param"] == "integrations.0.wandb.tags"


# ---------------------------------------------------------------------- LoRA target modules


@pytest.mark.parametrize("model, targets, ok", [
    ("tiny", ["q_proj", "v_proj"], True),
    ("tiny", ["zzz"], False),
    ("tiny", ["q_proj", "zzz"], False),
    ("Qwen/Qwen2.5-0.5B-Instruct", ["q_proj", "gate_proj"], True),  # no config on the server:
    ("Qwen/Qwen2.5-0.5B-Instruct", ["zzz"], False),                 # known projection names
])
def test_lora_targets_must_exist_before_the_job_is_queued(serve, keys, model, targets, ok):
    client = serve(quota=Quota(models=["*"]))
    file_id = upload(client, keys.alice).json()["id"]
    r = post_job(client, keys.alice, file_id, model=model,
                 config={"lora_target_modules": targets})
    if ok:
        assert r.status_code == 200, r.text
        return
    message = refused(r, 400, "invalid_value", "config.lora_target_modules")
    assert "'zzz'" in message and "all-linear" in message


def test_lora_targets_of_an_ft_model_are_read_from_its_own_config(client, keys, db, store):
    """A model whose config the server has is checked against its real module names: here a
    GPT-2 (c_attn, c_proj, ...), which has no q_proj."""
    from transformers import GPT2Config

    file_id = upload(client, keys.alice).json()["id"]
    source = post_job(client, keys.alice, file_id).json()["id"]
    name = f"ft:tiny:preftune:{source}"
    queue.claim_validation(db, "v", 30)
    queue.finish_validation(db, source, "v", None)
    lease = queue.claim_run(db, "w", 30)
    queue.finish_attempt(db, lease, "succeeded", fine_tuned_model=name)
    GPT2Config(n_layer=1, n_embd=8, n_head=2, vocab_size=16).save_pretrained(
        store.run_dir(source) / "final")

    ok = post_job(client, keys.alice, file_id, model=name,
                  config={"lora_target_modules": ["c_attn", "mlp.c_proj"]})
    assert ok.status_code == 200, ok.text
    message = refused(post_job(client, keys.alice, file_id, model=name,
                               config={"lora_target_modules": ["q_proj"]}),
                      400, "invalid_value", "config.lora_target_modules")
    assert "c_attn" in message, "names what the model has"
    # Only modules LoRA can adapt count: a block's container is not one.
    refused(post_job(client, keys.alice, file_id, model=name,
                     config={"lora_target_modules": ["mlp"]}), 400, "invalid_value")


def test_lora_targets_do_not_matter_without_lora(client, keys):
    file_id = upload(client, keys.alice).json()["id"]
    r = post_job(client, keys.alice, file_id,
                 config={"lora": False, "lora_target_modules": ["zzz"]})
    assert r.status_code == 200, r.text


# ------------------------------------------------------------------------------- /metrics


def test_metrics_answers_only_the_metrics_token(serve, keys, monkeypatch):
    monkeypatch.delenv("PREFTUNE_METRICS_TOKEN", raising=False)
    closed = serve()
    message = refused(closed.get("/metrics"), 401, "no_metrics_token")
    assert "metrics_token" in message and "PREFTUNE_METRICS_TOKEN" in message
    refused(closed.get("/metrics", headers=auth(keys.alice)), 401, "no_metrics_token")

    client = serve(metrics_token="s3cret")
    for headers in ({}, auth(keys.alice), auth("s3cre"), auth("s3cret-and-more")):
        refused(client.get("/metrics", headers=headers), 401, "invalid_metrics_token")
    r = client.get("/metrics", headers=auth("s3cret"))
    assert r.status_code == 200 and "preftune_queue_depth" in r.text

    monkeypatch.setenv("PREFTUNE_METRICS_TOKEN", "from-env")
    assert serve().get("/metrics", headers=auth("from-env")).status_code == 200


# -------------------------------------------------------------------- failed key checks


def test_failed_key_checks_are_limited_per_address(db, store, keys):
    app = create_app(db, store, config=ServiceConfig(failed_auth_per_minute=3))
    guesser = TestClient(app, client=("10.0.0.1", 5000))
    other = TestClient(app, client=("10.0.0.2", 5000))
    for i in range(3):
        refused(guesser.get("/v1/files", headers=auth(f"pt-guess-{i}")), 401,
                "invalid_api_key")
    r = guesser.get("/v1/files", headers=auth("pt-guess-3"))
    message = refused(r, 429, "too_many_failed_keys")
    assert "more than 3 failed key checks in a minute from 10.0.0.1" in message
    assert 1 <= int(r.headers["Retry-After"]) <= 20  # one failure's worth at 3 a minute
    # Once over, even a good key is not checked from that address: no oracle to guess with.
    refused(guesser.get("/v1/files", headers=auth(keys.alice)), 429, "too_many_failed_keys")
    # Other addresses are not held back.
    assert other.get("/v1/files", headers=auth(keys.alice)).status_code == 200
    assert other.get("/v1/files", headers=auth(keys.bob)).status_code == 200


def test_good_keys_never_count_as_failed(db, store, keys):
    client = TestClient(create_app(db, store, config=ServiceConfig(failed_auth_per_minute=2)))
    for _ in range(10):
        assert client.get("/v1/files", headers=auth(keys.alice)).status_code == 200
    refused(client.get("/v1/files", headers=auth("pt-nope")), 401, "invalid_api_key")


def test_wrong_metrics_tokens_count_as_failed_checks(db, store, keys):
    client = TestClient(create_app(db, store, config=ServiceConfig(
        failed_auth_per_minute=2, metrics_token="m")))
    for _ in range(3):  # no token at all is no guess
        refused(client.get("/metrics"), 401, "invalid_metrics_token")
    for _ in range(2):
        refused(client.get("/metrics", headers=auth("guess")), 401, "invalid_metrics_token")
    refused(client.get("/metrics", headers=auth("m")), 429, "too_many_failed_keys")
