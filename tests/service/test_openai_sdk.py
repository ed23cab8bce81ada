"""End to end with the official ``openai`` SDK: a real server (uvicorn, one embedded worker)
trains the tiny model, and the SDK reads the job, its events and checkpoints back.

On SQLite, the embedded default: the API tests run every route on PostgreSQL too, and one
training run is the slow part here.
"""

import json
import socket
import threading
import time

import httpx
import openai
import pytest
import uvicorn

from preftune.data.sample import iter_samples
from preftune.service.app import create_app
from preftune.service.auth import create_key
from preftune.service.db import Database
from preftune.service.limits import ServiceConfig
from preftune.service.store import Store

TIMEOUT_S = 180
DPO = {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1, "n_epochs": 1,
                                                  "batch_size": 8}}}
CONFIG = {"grad_accum": 1, "learning_rate": 2e-3, "max_length": 256, "max_prompt_length": 128,
          "logging_steps": 1, "save_steps": 2}


def pairs_jsonl(n=48, broken=None):
    """``n`` flat sample pairs as JSONL; record number ``broken`` (0-based) lacks its
    rejected response."""
    lines = []
    for i, s in enumerate(iter_samples(n, seed=5)):
        record = {"prompt": s.prompt, "chosen": s.responses[0],
                  "rejected": s.responses[1 + i % (len(s.responses) - 1)]}
        if i == broken:
            del record["rejected"]
        lines.append(json.dumps(record) + "\n")
    return "".join(lines).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A running server; yields (SDK client, store, database)."""
    root = tmp_path_factory.mktemp("sdk-service")
    db = Database(f"sqlite:///{root / 'service.db'}")
    db.migrate()
    store = Store(root / "store")
    _, key = create_key(db, "sdk", "team-sdk")
    config = ServiceConfig(tenants={
        "team-sdk": {"integrations": {"wandb": {"env": {"WANDB_MODE": "offline"}}}},
        "team-full": {"max_queued_jobs": 0}})
    app = create_app(db, store, embedded_workers=1, config=config,
                     worker_options={"lease_s": 10.0, "poll_s": 0.2, "grace_s": 10.0})
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # a free port, held until uvicorn takes the socket over
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
    yield client, store, db
    client.close()
    server.should_exit = True  # the lifespan then stops the worker and joins it
    thread.join(timeout=60)
    sock.close()
    db.dispose()
    assert not thread.is_alive(), "the server did not shut down"


@pytest.fixture
def wait_for(wait_job):
    return lambda client, job_id, statuses: wait_job(client, job_id, statuses, TIMEOUT_S)


def test_a_job_trains_and_reports_through_the_sdk(server, wait_for):
    client, store, _ = server
    upload = client.files.create(file=("pairs.jsonl", pairs_jsonl()), purpose="fine-tune")
    assert (upload.object, upload.purpose, upload.status) == ("file", "fine-tune", "processed")
    assert client.files.content(upload.id).read() == pairs_jsonl()

    job = client.fine_tuning.jobs.create(model="tiny", training_file=upload.id, method=DPO,
                                         extra_body={"config": CONFIG})
    assert job.status == "validating_files"
    assert job.method.type == "dpo" and job.method.dpo.hyperparameters.beta == 0.1
    assert job.hyperparameters.batch_size == 8 and job.hyperparameters.n_epochs == 1

    job = wait_for(client, job.id, ("succeeded", "failed", "cancelled"))
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:tiny:preftune:{job.id}"
    assert job.trained_tokens and job.trained_tokens > 0
    assert job.finished_at is not None and job.error is None

    run_dir = store.run_dir(job.id)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=7))  # several pages
    metrics = [e.data for e in events if e.type == "metrics"]
    assert metrics and all(e.object == "fine_tuning.job.event" for e in events)
    key = lambda row: json.dumps(row, sort_keys=True)  # noqa: E731
    assert sorted(map(key, metrics)) == sorted(map(key, rows))
    assert [e.message for e in events][-1] == f"Created fine-tuning job: {job.id}"

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoints
    assert [c.step_number for c in checkpoints] == sorted(
        (c.step_number for c in checkpoints), reverse=True)
    for checkpoint in checkpoints:
        assert checkpoint.fine_tuning_job_id == job.id
        assert checkpoint.fine_tuned_model_checkpoint == (
            f"{job.fine_tuned_model}:ckpt-step-{checkpoint.step_number}")
        assert checkpoint.metrics.train_loss is not None

    (results,) = job.result_files
    assert client.files.content(results).read() == (run_dir / "metrics.jsonl").read_bytes()


def test_a_cancelled_job_ends_cancelled(server, wait_for):
    client, _, _ = server
    upload = client.files.create(file=("pairs.jsonl", pairs_jsonl()), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny", training_file=upload.id, method=DPO,
                                         extra_body={"config": CONFIG})
    client.fine_tuning.jobs.cancel(job.id)
    job = wait_for(client, job.id, ("succeeded", "failed", "cancelled"))
    assert job.status == "cancelled"
    with pytest.raises(openai.ConflictError, match="cancelled"):
        client.fine_tuning.jobs.cancel(job.id)


def test_a_bad_record_fails_the_job_naming_it(server, wait_for):
    client, _, _ = server
    upload = client.files.create(file=("pairs.jsonl", pairs_jsonl(8, broken=3)),
                                 purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny", training_file=upload.id)
    job = wait_for(client, job.id, ("succeeded", "failed", "cancelled"))
    assert job.status == "failed"
    assert job.error.code == "invalid_training_file"
    assert job.error.param == "training_file"
    assert "record 3" in job.error.message and "rejected" in job.error.message


def test_lists_page_and_filter_through_the_sdk(server):
    client, _, db = server
    _, key = create_key(db, "sdk-lists", "team-lists")  # a tenant of its own: only these jobs
    own = openai.OpenAI(base_url=str(client.base_url), api_key=key, max_retries=0)
    # Files that fail validation: these jobs end without ever training.
    upload = own.files.create(file=("bad.jsonl", pairs_jsonl(2, broken=0)), purpose="fine-tune")
    made = [own.fine_tuning.jobs.create(model="tiny", training_file=upload.id,
                                        metadata={"batch": str(i % 2)}).id for i in range(3)]

    first = own.fine_tuning.jobs.list(limit=2)
    assert [j.id for j in first.data] == made[:0:-1] and first.has_more
    assert [j.id for j in own.fine_tuning.jobs.list(limit=2)] == made[::-1]  # follows pages
    odd = own.fine_tuning.jobs.list(metadata={"batch": "1"})
    assert [j.id for j in odd.data] == [made[1]]
    assert [f.id for f in own.files.list()] == [upload.id]
    with pytest.raises(openai.NotFoundError):
        own.fine_tuning.jobs.retrieve(client.fine_tuning.jobs.list(limit=1).data[0].id)
    own.close()


def test_integrations_are_taken_and_echoed_in_openais_shape(server):
    client, _, _ = server
    # A file that fails validation: the job ends before any tracker would start.
    upload = client.files.create(file=("bad.jsonl", pairs_jsonl(2, broken=0)),
                                 purpose="fine-tune")
    wandb = {"project": "prefs", "name": "run-1", "entity": "team", "tags": ["dpo"]}
    job = client.fine_tuning.jobs.create(model="tiny", training_file=upload.id,
                                         integrations=[{"type": "wandb", "wandb": wandb}])
    (integration,) = client.fine_tuning.jobs.retrieve(job.id).integrations
    assert integration.type == "wandb"
    assert (integration.wandb.project, integration.wandb.name, integration.wandb.entity,
            integration.wandb.tags) == ("prefs", "run-1", "team", ["dpo"])


def test_a_quota_error_is_not_retried_by_the_sdk(server):
    client, _, db = server
    _, key = create_key(db, "sdk-full", "team-full")  # max_queued_jobs: 0
    sent = []
    http = httpx.Client(event_hooks={"request": [sent.append]})
    full = openai.OpenAI(base_url=str(client.base_url), api_key=key, max_retries=3,
                         http_client=http)
    upload = full.files.create(file=("pairs.jsonl", pairs_jsonl(2)), purpose="fine-tune")
    sent.clear()
    with pytest.raises(openai.RateLimitError, match="max_queued_jobs"):
        full.fine_tuning.jobs.create(model="tiny", training_file=upload.id)
    assert len(sent) == 1, "x-should-retry: false: a retry would not free the quota"
    full.close()
