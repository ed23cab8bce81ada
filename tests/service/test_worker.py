"""Workers running real training processes on the tiny model: tracking, pause and resume,
cancel, failures, and the crash test (a SIGKILLed worker's job resumes on another worker);
and running a stand-in process: its environment, a cancel during a pause, the run-time
budget, and dead workers' jobs requeued by busy workers and by a lone validator."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from preftune.fsutil import read_jsonl
from preftune.service import queue
from preftune.service.auth import ensure_tenant
from preftune.service.db import Job
from preftune.service.jobspec import build_spec
from preftune.service.limits import ServiceConfig
from preftune.service.pipeline import register_local_file
from preftune.service.queue import Lease, StaleAttempt
from preftune.service.worker import Validator, Worker, validate_once

FAST = {"batch_size": 2, "grad_accum": 1, "learning_rate": 2e-3, "max_length": 256,
        "max_prompt_length": 128, "logging_steps": 1, "warmup_steps": 2}


def submit(db, store, data: Path, **config):
    tenant = ensure_tenant(db, "team-a")
    file_id = register_local_file(db, store, tenant, data)
    spec = build_spec("tiny", {"type": "dpo"}, {**FAST, **config}, seed=None)
    job, _ = queue.enqueue(db, tenant_id=tenant, model="tiny", training_file=file_id,
                           validation_file=None, method=spec.method, config=spec.config,
                           seed=42)
    return job


def wait_for(predicate, timeout=180, every=0.2):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout} s")


def status(db, job_id):
    return queue.get_job(db, None, job_id).status


def events(db, job_id):
    rows, _ = queue.list_events(db, None, job_id, limit=1000)
    return list(reversed(rows))


def metrics_steps(db, job_id):
    return [e.data["step"] for e in events(db, job_id) if e.type == "metrics"]


def checkpoint_steps(db, job_id):
    rows, _ = queue.list_checkpoints(db, None, job_id, limit=1000)
    return sorted(r.step for r in rows)


class Running:
    """A Worker in a thread, stopped at the end of the test."""

    def __init__(self, db, store, **options) -> None:
        self.stop = threading.Event()
        self.worker = Worker(db, store, **{"lease_s": 10, "poll_s": 0.1, "grace_s": 30,
                                           **options})
        self.thread = threading.Thread(target=self.worker.run, args=(self.stop,))
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=120)


@pytest.fixture
def running(db, store):
    workers: list[Running] = []

    def start(**options) -> Running:
        workers.append(Running(db, store, **options))
        return workers[-1]

    yield start
    for w in workers:
        w.close()


def test_a_job_runs_and_its_run_directory_is_mirrored(db, store, sample_pairs, running):
    job = submit(db, store, sample_pairs, n_examples=16, batch_size=4, epochs=1,
                 save_steps=2)
    running()
    wait_for(lambda: status(db, job.id) in ("succeeded", "failed"))
    row = queue.get_job(db, None, job.id)
    assert row.status == "succeeded", row.error
    run = store.run_dir(job.id)
    metrics = [r for r in read_jsonl(run / "metrics.jsonl")]
    assert [e.data for e in events(db, job.id) if e.type == "metrics"] == metrics
    assert checkpoint_steps(db, job.id) == [r["step"] for r in
                                            read_jsonl(run / "checkpoints.jsonl")] == [2, 4]
    assert row.fine_tuned_model == f"ft:tiny:preftune:{job.id}"
    assert row.trained_tokens == sum(r["tokens"] for r in metrics) > 0
    (results,) = row.result_files
    assert queue.file_row(db, row.tenant_id, results).purpose == "fine-tune-results"
    assert (run / "final").is_dir() and row.attempt == 1


def test_bad_data_fails_in_validation_before_any_training(db, store, tmp_path):
    data = tmp_path / "bad.jsonl"
    data.write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\n'
                    '{"prompt": "p", "chosen": "a"}\n', encoding="utf-8")
    job = submit(db, store, data)
    assert validate_once(db, store, "v", 30)
    row = queue.get_job(db, None, job.id)
    assert row.status == "failed" and row.error["code"] == "invalid_training_file"
    assert row.error["param"] == "training_file"
    assert "record 1" in row.error["message"] and "rejected" in row.error["message"]
    assert str(store.root) not in row.error["message"]  # no server path leaks out
    assert not store.job_dir(job.id).exists()


def test_a_failing_training_process_fails_the_job_with_its_error(db, store, sample_pairs,
                                                                 running, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    job = submit(db, store, sample_pairs, n_examples=8)
    with db.session() as session:  # a model that cannot be loaded: exit code 4
        session.get(Job, job.id).config = {**job.config, "model": "nobody/no-such-model"}
    running(config=ServiceConfig(pass_env=["HF_HUB_OFFLINE"]))  # no hub: fail at once
    wait_for(lambda: status(db, job.id) == "failed")
    error = queue.get_job(db, None, job.id).error
    assert error["code"] == "model_not_found" and "nobody/no-such-model" in error["message"]
    assert any(e.level == "error" for e in events(db, job.id))


def test_pause_keeps_a_checkpoint_and_resume_continues_from_it(db, store, sample_pairs,
                                                               running):
    # Enough steps that the pause (seen at the worker's next heartbeat, within 1 s) lands
    # before the run ends: 60 tiny steps could all finish first on a fast moment.
    job = submit(db, store, sample_pairs, max_steps=240, epochs=8)
    running()
    wait_for(lambda: len(metrics_steps(db, job.id)) >= 3)
    queue.request_pause(db, None, job.id)
    wait_for(lambda: status(db, job.id) in ("paused", "succeeded", "failed"))
    assert status(db, job.id) == "paused"
    paused_at = checkpoint_steps(db, job.id)
    assert paused_at and paused_at[-1] == max(metrics_steps(db, job.id)) < 240
    assert "Fine-tuning job paused at checkpoint step-" in events(db, job.id)[-1].message
    queue.request_resume(db, None, job.id)
    wait_for(lambda: status(db, job.id) in ("succeeded", "failed"))
    row = queue.get_job(db, None, job.id)
    assert row.status == "succeeded" and row.attempt == 2
    messages = [e.message for e in events(db, job.id)]
    assert f"Resuming from checkpoint step-{paused_at[-1]}" in messages
    assert metrics_steps(db, job.id) == list(range(1, 241))


def test_cancel_stops_the_training_process_group(db, store, sample_pairs, running):
    job = submit(db, store, sample_pairs, max_steps=400, epochs=13)
    running()
    wait_for(lambda: metrics_steps(db, job.id))
    log = store.job_dir(job.id) / "logs" / "attempt-1.log"
    queue.request_cancel(db, None, job.id)
    wait_for(lambda: status(db, job.id) in ("cancelled", "succeeded", "failed"), timeout=60)
    assert status(db, job.id) == "cancelled"
    size = log.stat().st_size
    time.sleep(1.5)
    assert log.stat().st_size == size  # nothing writes any more
    assert max(metrics_steps(db, job.id)) < 400


def test_a_sigkilled_workers_job_resumes_on_another_worker(database_url, db, store,
                                                           sample_pairs, tmp_path):
    """The crash test: kill a worker process after its job's first checkpoint."""
    job = submit(db, store, sample_pairs, max_steps=30, save_steps=3)
    validate_once(db, store, "validator", 30)
    log = (tmp_path / "worker-a.log").open("w")
    worker_a = subprocess.Popen(
        [sys.executable, "-m", "preftune", "worker", "--database-url", database_url,
         "--service-dir", str(store.root), "--lease-s", "3", "--poll-s", "0.2"],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: checkpoint_steps(db, job.id))
        dead = queue.get_job(db, None, job.id)
        stale = Lease(job.id, dead.attempt, dead.lease_owner)
        assert stale.attempt == 1
        worker_a.send_signal(signal.SIGKILL)
        worker_a.wait()
    finally:
        worker_a.kill()
    trainer = int(re.search(r"\(pid (\d+)\)", (tmp_path / "worker-a.log").read_text())[1])
    wait_for(lambda: not _alive(trainer), timeout=15)  # the orphan killed itself

    second = Running(db, store)
    try:
        wait_for(lambda: status(db, job.id) in ("succeeded", "failed"), timeout=240)
    finally:
        second.close()
    row = queue.get_job(db, None, job.id)
    assert row.status == "succeeded", row.error
    assert row.attempt == 2 and row.lost_leases == 1
    with pytest.raises(StaleAttempt):
        queue.add_event(db, job.id, "a late write from the dead attempt", lease=stale)
    with pytest.raises(StaleAttempt):
        queue.record_checkpoint(db, stale, 99, "step-99", "m", {})
    assert list(store.jobs_dir.iterdir()) == [store.job_dir(job.id)]
    # HOME is the job directory: tools may leave their dot-directories (.config/matplotlib).
    assert sorted(p.name for p in store.job_dir(job.id).iterdir()
                  if not p.name.startswith(".")) == ["logs", "run", "train.yaml"]
    assert sorted(p.name for p in (store.job_dir(job.id) / "logs").iterdir()) == [
        "attempt-1.log", "attempt-2.log"]
    messages = [e.message for e in events(db, job.id)]
    resumed = [m for m in messages if m.startswith("Resuming from checkpoint step-")]
    assert len(resumed) == 1
    assert any("stopped renewing its lease on attempt 1" in m for m in messages)
    on_disk = [r["step"] for r in read_jsonl(store.run_dir(job.id) / "checkpoints.jsonl")]
    assert checkpoint_steps(db, job.id) == sorted(set(on_disk)) == list(range(3, 31, 3))
    assert metrics_steps(db, job.id) == list(range(1, 31))
    assert json.loads((store.run_dir(job.id) / "config.json").read_text())["config"][
        "max_steps"] == 30


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its parent counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # the launch, not the DB
def test_gpus_runs_the_job_under_accelerate_launch(db, store, sample_pairs, running):
    """--gpus N: N training processes (here on the CPU, over gloo) in the job's group."""
    job = submit(db, store, sample_pairs, n_examples=16, batch_size=4, epochs=1)
    running(gpus=2)
    wait_for(lambda: status(db, job.id) in ("succeeded", "failed"), timeout=300)
    row = queue.get_job(db, None, job.id)
    assert row.status == "succeeded", row.error
    log = (store.job_dir(job.id) / "logs" / "attempt-1.log").read_text()
    assert log.count("data: ") == 2  # each process reads the data
    assert "accelerate launch started one process" not in log


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_worker_that_cannot_follow_its_job_kills_the_training_process(
        db, store, sample_pairs, monkeypatch):
    """The database goes away mid-job: the process must not run on unwatched."""
    job = submit(db, store, sample_pairs, max_steps=400)
    validate_once(db, store, "v", 30)
    lease = queue.claim_run(db, "w", 30)
    said: list[str] = []
    worker = Worker(db, store, worker_id="w", lease_s=30, poll_s=0.1, echo=said.append)
    real = queue.heartbeat
    calls = 0

    def failing(*args, **kwargs):
        nonlocal calls
        calls += 1
        if calls > 3:
            raise RuntimeError("database connection lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(queue, "heartbeat", failing)
    with pytest.raises(RuntimeError, match="database connection lost"):
        worker.run_job(lease, threading.Event())
    pid = int(re.search(r"\(pid (\d+)\)", "\n".join(said))[1])
    assert not _alive(pid)
    assert job.id in said[0]


# ------------------------------------------------------------- with a stand-in for training

FAKE_TRAINING = """\
import json, os, signal, sys, time
from pathlib import Path

Path("env.json").write_text(json.dumps(dict(os.environ)))

def stop(signum, frame):
    Path("sigterm").write_text("1")
    time.sleep({term_s})  # saving a checkpoint
    sys.exit(143)

signal.signal(signal.SIGTERM, stop)
time.sleep({run_s})
Path("run/final").mkdir(parents=True)
"""


@pytest.fixture
def fake_training(monkeypatch, tmp_path):
    """Workers start a stand-in for `preftune train` in the job directory: it writes its
    environment to env.json, runs ``run_s`` seconds (then succeeds), and takes ``term_s``
    seconds to stop on SIGTERM, leaving a file ``sigterm``."""

    def use(run_s: float = 60, term_s: float = 0.2) -> None:
        script = tmp_path / "fake_train.py"
        script.write_text(FAKE_TRAINING.format(run_s=run_s, term_s=term_s))
        monkeypatch.setattr(Worker, "_launcher", lambda self: [sys.executable, str(script)])

    return use


def queued(db, store, data: Path, **columns):
    """A job past validation, with ``columns`` of its row set."""
    job = submit(db, store, data)
    with db.session() as session:
        row = session.get(Job, job.id)
        row.status = "queued"
        for name, value in columns.items():
            setattr(row, name, value)
    return job


def environment(store, job_id):
    return json.loads((store.job_dir(job_id) / "env.json").read_text())


SECRETS = ("HF_TOKEN", "WANDB_API_KEY", "AWS_SECRET_ACCESS_KEY")


def test_the_training_process_gets_no_server_secrets_only_its_tenants(
        db, store, sample_pairs, running, fake_training, monkeypatch):
    for name in SECRETS:
        monkeypatch.setenv(name, f"server-{name}")
    fake_training(run_s=0)
    plain = queued(db, store, sample_pairs)
    tracked = queued(db, store, sample_pairs, integrations=[
        {"type": "wandb", "wandb": {"project": "p", "entity": "lab", "tags": ["a", "b"]}}])
    config = ServiceConfig(tenants={"team-a": {"integrations": {"wandb": {
        "env": {"WANDB_API_KEY": "team-key"}}}}})
    running(config=config)
    wait_for(lambda: {status(db, plain.id), status(db, tracked.id)} <= {"succeeded", "failed"})
    assert status(db, plain.id) == status(db, tracked.id) == "succeeded"
    env = environment(store, plain.id)
    assert not [name for name in SECRETS if name in env]
    assert env["HOME"] == str(store.job_dir(plain.id))
    assert env["PREFTUNE_WORKER_PID"] == str(os.getpid())
    env = environment(store, tracked.id)
    assert env["WANDB_API_KEY"] == "team-key"
    assert (env["WANDB_ENTITY"], env["WANDB_TAGS"]) == ("lab", "a,b")
    assert "HF_TOKEN" not in env and "AWS_SECRET_ACCESS_KEY" not in env


def test_an_integration_the_tenant_lost_fails_the_job_before_it_starts(
        db, store, sample_pairs, running, fake_training):
    fake_training(run_s=0)
    job = queued(db, store, sample_pairs,
                 integrations=[{"type": "wandb", "wandb": {"project": "p"}}])
    running()  # the default quota enables no integration
    wait_for(lambda: status(db, job.id) in ("succeeded", "failed"))
    error = queue.get_job(db, None, job.id).error
    assert error["code"] == "integration_not_allowed" and error["param"] == "integrations"
    assert "tenants.team-a.integrations.wandb" in error["message"]
    assert not (store.job_dir(job.id) / "env.json").exists()


def test_a_cancel_while_the_job_stops_to_pause_ends_it_cancelled(
        db, store, sample_pairs, running, fake_training):
    fake_training(run_s=60, term_s=3)
    job = queued(db, store, sample_pairs)
    said: list[str] = []
    running(echo=said.append)
    wait_for(lambda: (store.job_dir(job.id) / "env.json").exists())
    queue.request_pause(db, None, job.id)
    wait_for(lambda: (store.job_dir(job.id) / "sigterm").exists(), timeout=10)
    queue.request_cancel(db, None, job.id)  # it is saving its checkpoint for the pause
    wait_for(lambda: status(db, job.id) not in ("running", "validating_files"), timeout=20)
    assert status(db, job.id) == "cancelled"
    assert events(db, job.id)[-1].message == "Fine-tuning job cancelled"
    assert f"{job.id}: cancelled" in said and f"{job.id}: paused" not in said


def test_a_busy_worker_requeues_a_dead_workers_job(db, store, sample_pairs, running,
                                                   fake_training):
    fake_training(run_s=60)
    busy = queued(db, store, sample_pairs)
    running(lease_s=1)
    wait_for(lambda: (store.job_dir(busy.id) / "env.json").exists())
    orphan = queued(db, store, sample_pairs)
    lease = queue.claim_run(db, "dead-worker", 0.2)  # and never a heartbeat
    assert lease is not None and lease.job_id == orphan.id
    claimed = time.monotonic()
    wait_for(lambda: status(db, orphan.id) == "queued", timeout=3, every=0.05)
    assert time.monotonic() - claimed < 2 * 1 + 0.2  # two of the busy worker's leases
    assert status(db, busy.id) == "running"
    assert any("dead-worker stopped renewing its lease" in e.message
               for e in events(db, orphan.id))


def test_a_lone_validator_requeues_a_dead_workers_job(db, store, sample_pairs):
    orphan = queued(db, store, sample_pairs)
    assert queue.claim_run(db, "dead-worker", 0.2).job_id == orphan.id
    stop = threading.Event()
    thread = threading.Thread(target=Validator(db, store, lease_s=1, poll_s=0.1).run,
                              args=(stop,))
    thread.start()
    try:
        wait_for(lambda: status(db, orphan.id) == "queued", timeout=3, every=0.05)
    finally:
        stop.set()
        thread.join()


def test_a_job_past_its_run_time_is_stopped_and_fails(db, store, sample_pairs, running,
                                                      fake_training):
    fake_training(run_s=60)
    # 1.5 s over all attempts, 0.5 s of them used by an earlier attempt: 1 s left.
    job = queued(db, store, sample_pairs, max_run_s=1.5, run_s=0.5)
    running()
    started = time.monotonic()
    wait_for(lambda: status(db, job.id) in ("succeeded", "failed"), timeout=20)
    assert time.monotonic() - started < 10
    row = queue.get_job(db, None, job.id)
    assert row.error["code"] == "max_run_time_exceeded" and row.error["param"] is None
    assert f"max_run_hours={1.5 / 3600:g} (limits.max_run_hours)" in row.error["message"]
    assert (store.job_dir(job.id) / "sigterm").exists()  # it was asked to stop, then stopped
    assert 1.5 <= row.run_s < 8  # the attempt's time was added to the earlier attempt's


def test_a_job_with_no_run_time_left_fails_without_starting(db, store, sample_pairs, running,
                                                            fake_training):
    fake_training(run_s=0)
    job = queued(db, store, sample_pairs, max_run_s=2.0, run_s=2.0)
    running()
    wait_for(lambda: status(db, job.id) in ("succeeded", "failed"))
    assert queue.get_job(db, None, job.id).error["code"] == "max_run_time_exceeded"
    assert not (store.job_dir(job.id) / "env.json").exists()


def test_workers_keep_a_tenant_within_its_running_jobs_cap(db, store, sample_pairs, running,
                                                           fake_training):
    fake_training(run_s=60)
    first, second = queued(db, store, sample_pairs), queued(db, store, sample_pairs)
    config = ServiceConfig(quota={"max_running_jobs": 1})
    running(config=config), running(config=config)
    wait_for(lambda: (store.job_dir(first.id) / "env.json").exists())
    time.sleep(1.0)  # the second worker polls every 0.1 s: it had time to claim
    assert (status(db, first.id), status(db, second.id)) == ("running", "queued")


def test_the_validator_cleans_the_store_at_start(db, store):
    """What a killed upload left is removed when the API's validator starts."""
    store.files_dir.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = __import__("socket").gethostname().replace("-", "_")
    leftover = store.files_dir / f".upload-{host}-{dead.pid}-0123abcd"
    leftover.write_bytes(b"half an upload")
    live = store.files_dir / f".upload-{host}-{os.getpid()}-0123abcd"
    live.write_bytes(b"an upload in progress")
    stop = threading.Event()
    thread = threading.Thread(target=Validator(db, store, poll_s=0.1).run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: not leftover.exists(), timeout=5, every=0.05)
    finally:
        stop.set()
        thread.join()
    assert live.exists()
