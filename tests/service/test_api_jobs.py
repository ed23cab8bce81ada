"""/v1/fine_tuning/jobs: creation and its validation, listing, state changes, events,
checkpoints; /healthz and /metrics."""

import json
import time

import pytest
from fastapi.testclient import TestClient

from preftune.service import queue
from preftune.service.app import create_app
from preftune.service.db import Database
from preftune.service.limits import Retention, ServiceConfig

PAIRS = "".join(json.dumps({"prompt": f"q{i}", "chosen": "yes", "rejected": "no"}) + "\n"
                for i in range(4)).encode()


def auth(key):
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture
def training_file(client, keys):
    r = client.post("/v1/files", headers=auth(keys.alice), data={"purpose": "fine-tune"},
                    files={"file": ("pairs.jsonl", PAIRS)})
    return r.json()["id"]


@pytest.fixture
def create(client, keys, training_file):
    """POST a job for alice: ``create(**fields)`` -> response; training_file by default."""

    def post(headers=None, **fields):
        body = {"model": "tiny", "training_file": training_file, **fields}
        return client.post("/v1/fine_tuning/jobs", json=body,
                           headers={**auth(keys.alice), **(headers or {})})

    return post


def job_url(job_id, action=""):
    return f"/v1/fine_tuning/jobs/{job_id}" + (f"/{action}" if action else "")


def validated(db: Database, job_id: str) -> None:
    """Move a job through file validation to ``queued`` as a validator would."""
    claimed = queue.claim_validation(db, "test-validator", 30)
    assert claimed is not None and claimed.id == job_id
    assert queue.finish_validation(db, job_id, "test-validator", None)


def succeeded(db: Database, job_id: str, model: str) -> None:
    validated(db, job_id)
    lease = queue.claim_run(db, "test-worker", 30)
    assert lease is not None and lease.job_id == job_id
    queue.finish_attempt(db, lease, "succeeded", fine_tuned_model=model)


# ---------------------------------------------------------------------------------- create


def test_create_returns_the_job_validating_its_files(create, keys, training_file):
    r = create(method={"type": "dpo", "dpo": {"hyperparameters": {
        "beta": 0.2, "n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 2}}},
        seed=7, suffix="mine", metadata={"team": "nlp"}, integrations=[],
        config={"grad_accum": 1, "max_length": 256, "max_prompt_length": 128})
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["object"] == "fine_tuning.job"
    assert job["id"].startswith("ftjob-")
    assert job["status"] == "validating_files"
    assert job["model"] == "tiny"
    assert job["training_file"] == training_file and job["validation_file"] is None
    assert job["organization_id"] == keys.alice_tenant
    assert job["method"] == {"type": "dpo", "dpo": {"hyperparameters": {
        "beta": 0.2, "n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 2.0}}}
    assert job["hyperparameters"] == {"n_epochs": 2, "batch_size": 4,
                                      "learning_rate_multiplier": 2.0}
    assert (job["seed"], job["user_provided_suffix"], job["metadata"]) == (7, "mine",
                                                                          {"team": "nlp"})
    assert job["config"]["learning_rate"] == pytest.approx(2 * 5e-5)
    assert (job["config"]["grad_accum"], job["config"]["epochs"]) == (1, 2)
    assert "dataset" not in job["config"] and "output_dir" not in job["config"]
    assert (job["error"], job["fine_tuned_model"], job["finished_at"]) == (None, None, None)
    assert (job["result_files"], job["integrations"], job["attempt"]) == ([], [], 0)


def test_top_level_hyperparameters_mean_a_dpo_method(create):
    job = create(hyperparameters={"n_epochs": 1, "beta": 0.3}).json()
    assert job["method"]["type"] == "dpo"
    assert job["method"]["dpo"]["hyperparameters"]["beta"] == 0.3
    assert job["hyperparameters"]["n_epochs"] == 1
    r = create(hyperparameters={"n_epochs": 1}, method={"type": "dpo"})
    assert (r.status_code, r.json()["error"]["param"]) == (400, "hyperparameters")


@pytest.mark.parametrize("fields, param, words", [
    ({"method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": -1}}}},
     "method.dpo.hyperparameters.beta", "beta=-1"),
    ({"method": {"type": "simpo", "simpo": {"hyperparameters": {"n_epochs": 0}}}},
     "method.simpo.hyperparameters.n_epochs", "epochs=0"),
    ({"method": {"type": "ppo"}}, "method.type", "'ppo'"),
    ({"config": {"dataset": "/etc/passwd"}}, "config.dataset", "set by the server"),
    ({"config": {"output_dir": "/tmp/x"}}, "config.output_dir", "set by the server"),
    ({"config": {"no_such_option": 1}}, "config.no_such_option", "unknown option"),
    ({"training_file": "file-000000000000000000000000"}, "training_file", "no such file"),
    ({"validation_file": "file-nope"}, "validation_file", "'file-nope'"),
    ({"model": "/home/me/model"}, "model", "not a model name"),
    ({"model": "ft:tiny:x:ftjob-000000000000000000000000"}, "model", "not a fine-tuned"),
    ({"integrations": [{"type": "wandb", "wandb": {"project": "p"}}]}, "integrations.0.type",
     "not enabled for your organization"),
    ({"config": {"seed": 2**40}}, "config.seed", "out of range"),
])
def test_a_bad_request_is_a_400_naming_the_field(create, fields, param, words):
    r = create(**fields)
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"
    assert words in error["message"]


@pytest.mark.parametrize("fields, param", [
    ({"suffix": "s" * 65}, "suffix"),
    ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
    ({"metadata": {"k": "v" * 513}}, "metadata.k"),
    ({"metadata": {"k": "a\x00b"}}, "metadata.k"),
    ({"metadata": {"k\n": "v"}}, "metadata.k\n.[key]"),
    ({"seed": -1}, "seed"),
    ({"max_attempts": 0}, "max_attempts"),
    ({"priority": 101}, "priority"),
    ({"integrations": [{"type": "wandb", "wandb": {}}]}, "integrations.0.wandb.project"),
    ({"integrations": [{"type": "comet", "comet": {"project": "p"}}]}, "integrations.0.type"),
    ({"model": "tiny\x00"}, "model"),
    ({"unknown": 1}, "unknown"),
    ({"config": {"weight_decay": float("inf")}}, "config"),
])
def test_a_body_off_the_schema_is_a_422_naming_the_field(client, keys, training_file,
                                                         fields, param):
    body = json.dumps({"model": "tiny", "training_file": training_file, **fields})
    r = client.post("/v1/fine_tuning/jobs", content=body,
                    headers={**auth(keys.alice), "content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["error"]["param"] == param


def test_a_file_of_another_purpose_cannot_be_trained_on(create, db, store, keys):
    queue.add_file(db, "file-" + "1" * 24, keys.alice_tenant, "metrics.jsonl",
                   "fine-tune-results", 1, "x.jsonl")
    r = create(validation_file="file-" + "1" * 24)
    assert (r.status_code, r.json()["error"]["param"]) == (400, "validation_file")
    assert "fine-tune-results" in r.json()["error"]["message"]


def test_an_ft_model_trains_on_from_that_jobs_final_weights(create, db, store):
    first = create().json()
    name = f"ft:tiny:preftune:{first['id']}"
    succeeded(db, first["id"], name)
    r = create(model=name)
    assert r.status_code == 200, r.text
    job = r.json()
    assert job["model"] == name and job["config"]["model"] == name
    row = queue.get_job(db, None, job["id"])
    assert row.model == name
    assert row.config["model"] == str(store.run_dir(first["id"]) / "final")


def test_an_idempotency_key_returns_the_first_job(create, keys, client, training_file):
    first = create(headers={"Idempotency-Key": "k-1"}, suffix="mine")
    again = create(headers={"Idempotency-Key": "k-1"}, suffix="mine")
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json()["id"] == first.json()["id"]
    assert create(headers={"Idempotency-Key": "k-2"}).json()["id"] != first.json()["id"]


def test_an_idempotency_key_reused_with_another_request_is_a_409(create, db, keys):
    first = create(headers={"Idempotency-Key": "k-1"}).json()
    r = create(headers={"Idempotency-Key": "k-1"}, suffix="another")
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "idempotency_key_reused"
    assert "'k-1'" in error["message"] and first["id"] in error["message"]
    assert "new Idempotency-Key" in error["message"]
    assert len(queue.list_jobs(db, keys.alice_tenant)[0]) == 1


# ------------------------------------------------------------------------------------ list


def test_list_pages_newest_first(client, create, keys):
    made = [create().json()["id"] for _ in range(5)]

    seen, after, pages = [], None, []
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        page = client.get("/v1/fine_tuning/jobs", params=params,
                          headers=auth(keys.alice)).json()
        assert page["object"] == "list"
        seen += [j["id"] for j in page["data"]]
        pages.append(page["has_more"])
        if not page["has_more"]:
            break
        after = page["data"][-1]["id"]
    assert seen == made[::-1]
    assert pages == [True, True, False]


def test_list_filters_on_metadata(client, create, keys):
    nlp = create(metadata={"team": "nlp", "run": "a", "note": "two\nlines"}).json()["id"]
    create(metadata={"team": "vision"})
    create()
    r = client.get("/v1/fine_tuning/jobs", params={"metadata[team]": "nlp"},
                   headers=auth(keys.alice))
    assert [j["id"] for j in r.json()["data"]] == [nlp]
    r = client.get("/v1/fine_tuning/jobs", params={"metadata[team]": "nlp", "metadata[run]": "b"},
                   headers=auth(keys.alice))
    assert r.json()["data"] == []
    r = client.get("/v1/fine_tuning/jobs", params={"metadata": "null"}, headers=auth(keys.alice))
    assert (r.status_code, r.json()["error"]["param"]) == (400, "metadata")


def test_list_limit_is_checked(client, keys):
    r = client.get("/v1/fine_tuning/jobs", params={"limit": 101}, headers=auth(keys.alice))
    assert (r.status_code, r.json()["error"]["param"]) == (422, "limit")


# ------------------------------------------------------------------------- state changes


def test_cancelling_a_queued_job_ends_it(client, create, keys, db):
    job_id = create().json()["id"]
    validated(db, job_id)
    r = client.post(job_url(job_id, "cancel"), headers=auth(keys.alice))
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    assert r.json()["finished_at"] is not None
    r = client.post(job_url(job_id, "cancel"), headers=auth(keys.alice))
    assert r.status_code == 409
    assert "already been cancelled" in r.json()["error"]["message"]


def test_pause_and_resume(client, create, keys, db):
    job_id = create().json()["id"]
    r = client.post(job_url(job_id, "pause"), headers=auth(keys.alice))
    assert r.status_code == 409, "a job still validating its files cannot be paused"
    validated(db, job_id)
    r = client.post(job_url(job_id, "resume"), headers=auth(keys.alice))
    assert r.status_code == 409, "a queued job cannot be resumed"

    r = client.post(job_url(job_id, "pause"), headers=auth(keys.alice))
    assert (r.status_code, r.json()["status"]) == (200, "paused")
    r = client.post(job_url(job_id, "pause"), headers=auth(keys.alice))
    assert (r.status_code, r.json()["status"]) == (200, "paused"), "pausing again changes nothing"
    r = client.post(job_url(job_id, "resume"), headers=auth(keys.alice))
    assert (r.status_code, r.json()["status"]) == (200, "queued")
    assert client.get(job_url(job_id), headers=auth(keys.alice)).json()["status"] == "queued"


def test_unknown_jobs_are_404(client, keys):
    for path in (job_url("ftjob-nope"), job_url("ftjob-nope", "events")):
        r = client.get(path, headers=auth(keys.alice))
        assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")
    r = client.post(job_url("ftjob-nope", "cancel"), headers=auth(keys.alice))
    assert r.status_code == 404
    assert "ftjob-nope" in r.json()["error"]["message"]


def test_delete_removes_an_ended_job_and_what_it_made(client, create, keys, db, store):
    job_id = create().json()["id"]
    r = client.delete(job_url(job_id), headers=auth(keys.alice))
    assert r.status_code == 409, "a job still validating its files cannot be deleted"
    assert "cancel it first" in r.json()["error"]["message"]
    validated(db, job_id)
    lease = queue.claim_run(db, "test-worker", 30)
    results = "file-" + "2" * 24
    queue.add_file(db, results, keys.alice_tenant, "metrics.jsonl", "fine-tune-results", 1,
                   "results.jsonl")
    queue.finish_attempt(db, lease, "succeeded", fine_tuned_model=f"ft:tiny:x:{job_id}",
                         result_files=[results])
    (store.run_dir(job_id) / "final").mkdir(parents=True)

    assert client.delete(job_url(job_id), headers=auth(keys.bob)).status_code == 404
    r = client.delete(job_url(job_id), headers=auth(keys.alice))
    assert r.status_code == 200, r.text
    assert r.json() == {"id": job_id, "object": "fine_tuning.job", "deleted": True}
    for path in (job_url(job_id), job_url(job_id, "events"), f"/v1/files/{results}"):
        assert client.get(path, headers=auth(keys.alice)).status_code == 404
    assert not store.job_dir(job_id).exists()
    assert client.delete(job_url(job_id), headers=auth(keys.alice)).status_code == 404


@pytest.mark.parametrize("after", ["ftevent-" + "9" * 30, "ftevent-x", "ftckpt-1"])
def test_an_events_cursor_that_names_no_event_is_a_404(client, create, keys, after):
    job_id = create().json()["id"]
    r = client.get(job_url(job_id, "events"), params={"after": after}, headers=auth(keys.alice))
    assert (r.status_code, r.json()["error"]["code"]) == (404, "not_found")


# ------------------------------------------------------------------ events and checkpoints


def test_events_newest_first_with_metrics_rows_verbatim(client, create, keys, db):
    job_id = create().json()["id"]
    validated(db, job_id)
    lease = queue.claim_run(db, "test-worker", 30)
    row = {"step": 2, "loss": 0.61, "accuracy": 0.75, "tokens": 1234, "epoch": 0.5}
    queue.add_event(db, job_id, "Step 2: training loss=0.6100", type="metrics", data=row,
                    lease=lease, dedupe_key="metrics:train:2")

    first = client.get(job_url(job_id, "events"), params={"limit": 2},
                       headers=auth(keys.alice)).json()
    assert first["object"] == "list" and first["has_more"] is True
    newest = first["data"][0]
    assert newest == {"id": newest["id"], "object": "fine_tuning.job.event",
                      "created_at": newest["created_at"], "level": "info",
                      "message": "Step 2: training loss=0.6100", "type": "metrics",
                      "data": row}
    assert first["data"][1]["type"] == "message"
    assert first["data"][1]["message"].startswith("Fine-tuning job started")

    everything = client.get(job_url(job_id, "events"), params={"limit": 100},
                            headers=auth(keys.alice)).json()["data"]
    assert [e["message"] for e in everything][-1] == f"Created fine-tuning job: {job_id}"
    numbers = [int(e["id"].removeprefix("ftevent-")) for e in everything]
    assert numbers == sorted(numbers, reverse=True)
    rest = client.get(job_url(job_id, "events"), params={"after": first["data"][1]["id"]},
                      headers=auth(keys.alice)).json()
    assert rest["data"] == everything[2:]


def test_checkpoints_in_openai_shape(client, create, keys, db):
    job_id = create(suffix="mine").json()["id"]
    validated(db, job_id)
    lease = queue.claim_run(db, "test-worker", 30)
    queue.record_checkpoint(db, lease, 2, "checkpoint-2", "checkpoints/checkpoint-2",
                            {"step": 2, "train_loss": 0.6, "train_mean_token_accuracy": 0.7})
    queue.record_checkpoint(db, lease, 4, "checkpoint-4", "checkpoints/checkpoint-4",
                            {"step": 4, "train_loss": 0.5, "valid_loss": 0.55})

    page = client.get(job_url(job_id, "checkpoints"), params={"limit": 1},
                      headers=auth(keys.alice)).json()
    assert page["has_more"] is True
    (newest,) = page["data"]
    assert newest == {
        "id": newest["id"], "object": "fine_tuning.job.checkpoint",
        "created_at": newest["created_at"],
        "fine_tuned_model_checkpoint": f"ft:tiny:mine:{job_id}:ckpt-step-4",
        "fine_tuning_job_id": job_id, "step_number": 4,
        "metrics": {"step": 4, "train_loss": 0.5, "train_mean_token_accuracy": None,
                    "valid_loss": 0.55, "valid_mean_token_accuracy": None,
                    "full_valid_loss": None, "full_valid_mean_token_accuracy": None}}
    rest = client.get(job_url(job_id, "checkpoints"), params={"after": newest["id"]},
                      headers=auth(keys.alice)).json()
    assert [c["step_number"] for c in rest["data"]] == [2]
    assert rest["has_more"] is False


def test_downloads_need_a_succeeded_job_and_a_checkpoint_on_disk(client, create, keys, db,
                                                                  store):
    import io
    import tarfile

    job_id = create().json()["id"]
    r = client.get(job_url(job_id, "content"), headers=auth(keys.alice))
    assert r.status_code == 409 and "validating_files" in r.json()["error"]["message"]
    validated(db, job_id)
    lease = queue.claim_run(db, "test-worker", 30)
    queue.record_checkpoint(db, lease, 2, "step-2", "checkpoints/step-2/model", {})
    (ckpt,), _ = queue.list_checkpoints(db, None, job_id)
    r = client.get(job_url(job_id, f"checkpoints/{ckpt.id}/content"), headers=auth(keys.alice))
    assert r.status_code == 404 and "no longer on disk" in r.json()["error"]["message"]
    model = store.run_dir(job_id) / "checkpoints" / "step-2" / "model"
    model.mkdir(parents=True)
    (model / "adapter_config.json").write_text("{}")
    for key, status in ((keys.bob, 404), (keys.alice, 200)):
        r = client.get(job_url(job_id, f"checkpoints/{ckpt.id}/content"), headers=auth(key))
        assert r.status_code == status
    assert r.headers["content-type"] == "application/gzip"
    with tarfile.open(fileobj=io.BytesIO(r.content), mode="r:gz") as tar:
        assert tar.getnames() == [f"{job_id}-step-2", f"{job_id}-step-2/adapter_config.json"]
    # The store keeps the archive for the next download: it is not deleted after sending.
    (archive,) = (store.root / "downloads").glob("*.tar.gz")
    assert client.get(job_url(job_id, f"checkpoints/{ckpt.id}/content"),
                      headers=auth(keys.alice)).content == r.content
    assert archive.is_file()


# ----------------------------------------------------------------------------- lifespan


def test_the_server_validates_files_even_without_workers(db, store, keys):
    broken = PAIRS + b'{"prompt": "q", "chosen": "yes"}\n'
    with TestClient(create_app(db, store, worker_options={"poll_s": 0.05})) as client:
        ids = []
        for content in (PAIRS, broken):
            file_id = client.post("/v1/files", headers=auth(keys.alice),
                                  data={"purpose": "fine-tune"},
                                  files={"file": ("pairs.jsonl", content)}).json()["id"]
            ids.append(client.post("/v1/fine_tuning/jobs", headers=auth(keys.alice),
                                   json={"model": "tiny", "training_file": file_id}
                                   ).json()["id"])
        # Each validation is a child process that imports the data layer (and torch).
        deadline = time.monotonic() + 120
        while True:
            jobs = [client.get(job_url(i), headers=auth(keys.alice)).json() for i in ids]
            if all(j["status"] != "validating_files" for j in jobs):
                break
            assert time.monotonic() < deadline, "no validator moved the jobs on"
            time.sleep(0.05)
    good, bad = jobs
    assert good["status"] == "queued", "validated, and waiting for a worker"
    assert bad["status"] == "failed"
    assert bad["error"]["param"] == "training_file"
    assert "record 4: missing required field 'rejected'" in bad["error"]["message"]
    assert queue.live_workers(db, 60) == 0


def test_the_server_applies_the_retention_policy(db, store, keys):
    config = ServiceConfig(retention=Retention(jobs_days=1e-9, sweep_every_s=0.05))
    with TestClient(create_app(db, store, config=config,
                               worker_options={"poll_s": 0.05})) as client:
        file_id = client.post("/v1/files", headers=auth(keys.alice),
                              data={"purpose": "fine-tune"},
                              files={"file": ("pairs.jsonl", PAIRS)}).json()["id"]
        ended = client.post("/v1/fine_tuning/jobs", headers=auth(keys.alice),
                            json={"model": "tiny", "training_file": file_id}).json()["id"]
        client.post(job_url(ended, "cancel"), headers=auth(keys.alice))
        deadline = time.monotonic() + 30
        while client.get(job_url(ended), headers=auth(keys.alice)).status_code != 404:
            assert time.monotonic() < deadline, "the ended job was never deleted"
            time.sleep(0.05)
        assert client.get(f"/v1/files/{file_id}", headers=auth(keys.alice)).status_code == 200


# ------------------------------------------------------------------------ health, metrics


def test_health_needs_no_key_and_metrics_the_metrics_token(db, store, create):
    client = TestClient(create_app(db, store, config=ServiceConfig(metrics_token="m-token")))
    assert client.get("/healthz").json() == {"status": "ok", "database": "ok"}
    queued = create().json()["id"]
    validated(db, queued)
    create()
    cancelled = create().json()["id"]
    queue.request_cancel(db, None, cancelled)
    queue.register_worker(db, "w-1", "host", 1)

    r = client.get("/metrics", headers=auth("m-token"))
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    samples = dict(line.rsplit(" ", 1) for line in r.text.splitlines()
                   if not line.startswith("#"))
    assert samples["preftune_queue_depth"] == "2"
    assert samples['preftune_jobs{status="queued"}'] == "1"
    assert samples['preftune_jobs{status="validating_files"}'] == "1"
    assert samples['preftune_jobs{status="cancelled"}'] == "1"
    assert samples['preftune_jobs{status="paused"}'] == "0"
    assert samples["preftune_workers"] == "1"
    assert len([k for k in samples if k.startswith("preftune_jobs{")]) == 7


def test_health_is_503_without_a_database(store):
    down = Database("postgresql://nobody@127.0.0.1:9/none?connect_timeout=2")
    client = TestClient(create_app(down, store, config=ServiceConfig(metrics_token="m")))
    r = client.get("/healthz")
    assert r.status_code == 503
    assert r.json()["status"] == "unavailable"
    assert "127.0.0.1" not in r.text
    assert client.get("/metrics", headers=auth("m")).status_code == 503
    down.dispose()
