"""A reinforcement job end to end with the official ``openai`` SDK: a real server (uvicorn,
one embedded worker) samples the tiny model, grades its answers with a ``string_check``
grader, trains it with GRPO, and reports mean reward per step and an eval reward that rises.

The task is one tiny can learn on a CPU in a few minutes: answer with a word holding the
letter the item names (``like``: the answer contains ``{{item.letter}}``). About one answer
in four of four tokens holds a "y" at the start; training makes it most of them.
"""

import contextlib
import json
import time

import openai
import pytest

from preftune.service.app import create_app
from preftune.service.auth import create_key
from preftune.service.db import Database
from preftune.service.limits import Graders, ServiceConfig
from preftune.service.store import Store

pytestmark = pytest.mark.slow

TIMEOUT_S = 600
GRADER = {"type": "string_check", "name": "has_letter", "input": "{{sample.output_text}}",
          "reference": "{{item.letter}}", "operation": "like"}
THINGS = ["a colour", "an animal", "a city", "a food", "a tool", "a game", "a plant", "a song",
          "a river", "a feeling", "a number", "a sport", "a tree", "a bird", "a fruit",
          "a country"]


def items(n, offset=0):
    """RFT JSONL: ``messages`` plus the ``letter`` the grader reads."""
    lines = []
    for i in range(offset, offset + n):
        thing = THINGS[i % len(THINGS)]
        ask = f"Name {thing} whose name has the letter o in it. ({i})"
        lines.append(json.dumps({"messages": [{"role": "user", "content": ask}],
                                 "letter": "o", "id": i}) + "\n")
    return "".join(lines).encode()


def running(root, serving, config=None):
    """A server with one embedded worker: (openai client, store) while in the block."""
    db = Database(f"sqlite:///{root / 'service.db'}")
    db.migrate()
    store = Store(root / "store")
    _, key = create_key(db, "rft", "team-rft")
    app = create_app(db, store, config=config, embedded_workers=1,
                     worker_options={"lease_s": 10.0, "poll_s": 0.2, "grace_s": 20.0})
    try:
        with serving(app) as url:  # the lifespan stops the worker at the end
            client = openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)
            yield client, store
            client.close()
    finally:
        db.dispose()


@pytest.fixture(scope="module")
def server(tmp_path_factory, serving):
    yield from running(tmp_path_factory.mktemp("rft-service"), serving)


@pytest.fixture
def wait_for(wait_job):
    return lambda client, job_id, statuses: wait_job(client, job_id, statuses, TIMEOUT_S)


def test_a_reinforcement_job_learns_its_graders_task_through_the_sdk(server, wait_for):
    client, store = server
    train = client.files.create(file=("train.jsonl", items(48)), purpose="fine-tune")
    valid = client.files.create(file=("valid.jsonl", items(12, offset=100)),
                                purpose="fine-tune")
    method = {"type": "reinforcement", "reinforcement": {
        "grader": GRADER,
        "hyperparameters": {"n_epochs": 3, "batch_size": 4, "eval_interval": 6,
                            "eval_samples": 4, "compute_multiplier": 2}}}
    job = client.fine_tuning.jobs.create(
        model="tiny", training_file=train.id, validation_file=valid.id, method=method,
        seed=3, extra_body={"config": {"learning_rate": 0.03, "lora": False, "max_tokens": 1,
                                       "seq_len": 128, "save_steps": 8}})
    assert job.method.type == "reinforcement"
    assert job.method.reinforcement.grader.name == "has_letter"
    assert job.method.reinforcement.hyperparameters.eval_interval == 6

    job = wait_for(client, job.id, ("succeeded", "failed", "cancelled"))
    assert job.status == "succeeded", job.error
    assert job.fine_tuned_model == f"ft:tiny:preftune:{job.id}"

    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    metrics = [e.data for e in events if e.type == "metrics"]
    train_rows = sorted((m for m in metrics if "mean_reward" in m), key=lambda m: m["step"])
    assert [m["step"] for m in train_rows] == list(range(1, 37))  # 48 items x 3 / 4 a step
    # kl_coef 0 (the default): no reference model, so no KL is measured or reported
    assert all(0.0 <= m["mean_reward"] <= 1.0 and "kl" not in m and "clip_frac" in m
               for m in train_rows)
    assert any("mean reward=" in e.message for e in events)
    evals = sorted((m for m in metrics if "eval/mean_reward" in m), key=lambda m: m["step"])
    assert evals and evals[0]["step"] == 0 and evals[0]["eval/completions"] == 48
    assert len(evals) >= 4, evals  # at 0, 6, 12, ... while the environment serves
    first, last = evals[0]["eval/mean_reward"], evals[-1]["eval/mean_reward"]
    assert last > first + 0.3, [e["eval/mean_reward"] for e in evals]

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert sorted(c.step_number for c in checkpoints) == [8, 16, 24, 32, 36]
    assert (store.run_dir(job.id) / "final" / "config.json").is_file()


def test_a_paused_reinforcement_job_resumes_from_its_checkpoint(server, wait_for):
    client, store = server
    train = client.files.create(file=("train.jsonl", items(48)), purpose="fine-tune")
    method = {"type": "reinforcement", "reinforcement": {
        "grader": GRADER, "hyperparameters": {"n_epochs": 1, "batch_size": 4}}}
    job = client.fine_tuning.jobs.create(
        model="tiny", training_file=train.id, method=method,
        extra_body={"config": {"learning_rate": 0.01, "lora": False, "max_tokens": 1,
                               "seq_len": 128, "save_steps": 2}})
    deadline = time.monotonic() + TIMEOUT_S
    while not any(e.type == "metrics" and e.data["step"] >= 2
                  for e in client.fine_tuning.jobs.list_events(job.id, limit=100)):
        assert time.monotonic() < deadline, client.fine_tuning.jobs.retrieve(job.id).status
        time.sleep(0.5)
    client.fine_tuning.jobs.pause(job.id)
    paused = wait_for(client, job.id, ("paused", "succeeded", "failed"))
    assert paused.status == "paused", paused.error
    run_dir = store.run_dir(job.id)
    saved = [json.loads(line)["step"] for line in
             (run_dir / "checkpoints.jsonl").read_text().splitlines()]
    assert saved and saved[-1] < 12

    client.fine_tuning.jobs.resume(job.id)
    job = wait_for(client, job.id, ("succeeded", "failed", "cancelled"))
    assert job.status == "succeeded", job.error
    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert f"Resuming from checkpoint step-{saved[-1]}" in messages, messages
    steps = [json.loads(line)["step"] for line in
             (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 13))  # the steps after the checkpoint, run once more


def test_a_cosine_grader_job_embeds_with_the_operators_endpoint(tmp_path, serving, embeddings,
                                                               wait_for):
    """The operator's embedding endpoint and key reach the job's environment: every answer is
    scored by the cosine of letter counts against the item's word."""
    config = ServiceConfig(graders=Graders(embedding_base_url=embeddings.base_url,
                                           embedding_model="letters-1",
                                           embedding_api_key="sk-embed"))
    with contextlib.contextmanager(running)(tmp_path, serving, config) as (client, _):
        lines = "".join(json.dumps({"messages": [{"role": "user", "content": f"Say {w}."}],
                                    "word": w}) + "\n" for w in ["hello", "moon", "tree", "sun"])
        train = client.files.create(file=("train.jsonl", lines.encode()), purpose="fine-tune")
        grader = {"type": "text_similarity", "name": "close", "evaluation_metric": "cosine",
                  "input": "{{sample.output_text}}", "reference": "{{item.word}}"}
        method = {"type": "reinforcement", "reinforcement": {
            "grader": grader, "hyperparameters": {"n_epochs": 1, "batch_size": 2}}}
        job = client.fine_tuning.jobs.create(
            model="tiny", training_file=train.id, method=method,
            extra_body={"config": {"max_tokens": 4, "seq_len": 128, "kl_coef": 0.05}})
        job = wait_for(client, job.id, ("succeeded", "failed", "cancelled"))
        assert job.status == "succeeded", job.error
        events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    rows = [e.data for e in events if e.type == "metrics" and "mean_reward" in e.data]
    assert len(rows) == 2 and all(0.0 <= r["mean_reward"] <= 1.0 for r in rows)
    assert all(r["kl"] >= 0.0 for r in rows)  # kl_coef > 0: the KL to the base is measured
    assert any(", kl=" in e.message for e in events)
    assert embeddings.seen and all(auth == "Bearer sk-embed" and body["model"] == "letters-1"
                                   for auth, body in embeddings.seen)
    embedded = {text for _, body in embeddings.seen for text in body["input"]}
    assert {"hello", "moon", "tree", "sun"} <= embedded  # each reference, once or more
