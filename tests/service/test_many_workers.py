"""Workers side by side: four claiming threads over three tenants with running caps never
claim a job twice nor run a tenant over its cap (SQLite and PostgreSQL); two worker processes
on one PostgreSQL database drain 12 queued jobs, each exactly once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time

import pytest

from preftune.service import queue
from preftune.service.auth import ensure_tenant
from preftune.service.jobspec import build_spec
from preftune.service.pipeline import register_local_file
from preftune.service.worker import validate_once

JOBS = 8


def test_concurrent_claims_respect_caps_and_claim_each_job_once(db):
    """Each thread claims, holds the job a moment, finishes it. The recorded hold of a job
    lies inside the time it was ``running`` in the database, so two overlapping holds of a
    capped tenant beyond its cap prove two claims read the same free slot."""
    from preftune.service.auth import ensure_tenant

    caps = {"team-a": 1, "team-b": 2, "": 1}
    tenants = {name: ensure_tenant(db, name) for name in ("team-a", "team-b", "team-c")}
    jobs = {}
    for name, tenant in tenants.items():
        for _ in range(6):
            job, _ = queue.enqueue(db, tenant_id=tenant, model="tiny", training_file="file-x",
                                   validation_file=None, method={"type": "dpo"}, config={},
                                   seed=1)
            jobs[job.id] = name
    while (claimed := queue.claim_validation(db, "validator", 30)) is not None:
        queue.finish_validation(db, claimed.id, "validator", None)
    holds: list[tuple[str, str, float, float]] = []  # (tenant, job, claimed, finishing)
    lock = threading.Lock()

    def work(worker: str) -> None:
        idle_since = time.monotonic()
        while time.monotonic() - idle_since < 1.0:  # others may still free a capped slot
            lease = queue.claim_run(db, worker, 30, caps)
            if lease is None:
                time.sleep(0.01)
                continue
            idle_since = start = time.monotonic()
            time.sleep(0.02)
            with lock:
                holds.append((jobs[lease.job_id], lease.job_id, start, time.monotonic()))
            queue.finish_attempt(db, lease, "succeeded")

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(job for _, job, _, _ in holds) == sorted(jobs)  # each job claimed once
    for name in tenants:
        mine = [(start, end) for tenant, _, start, end in holds if tenant == name]
        for start, _ in mine:
            at_once = sum(1 for s, e in mine if s <= start < e)
            assert at_once <= caps.get(name, caps[""]), (name, mine)
    assert queue.queue_counts(db)["succeeded"] == len(jobs)


@pytest.mark.postgres
@pytest.mark.slow
def test_two_workers_run_eight_jobs_exactly_once(postgres_url, store, tmp_path):
    from preftune.data.sample import iter_samples
    from preftune.service.db import Database

    db = Database(postgres_url)
    db.migrate()
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(
        json.dumps({"prompt": s.prompt, "chosen": s.responses[0], "rejected": s.responses[1]})
        + "\n" for s in iter_samples(8, seed=1)), encoding="utf-8")
    tenant = ensure_tenant(db, "team-a")
    file_id = register_local_file(db, store, tenant, data)
    spec = build_spec("tiny", {"type": "dpo"}, {
        "batch_size": 4, "grad_accum": 1, "max_steps": 1, "max_length": 128,
        "max_prompt_length": 64, "logging_steps": 1}, seed=None)
    jobs = [queue.enqueue(db, tenant_id=tenant, model="tiny", training_file=file_id,
                          validation_file=None, method=spec.method, config=spec.config,
                          seed=42)[0] for _ in range(JOBS)]
    while validate_once(db, store, "validator", 30):
        pass
    assert queue.queue_counts(db)["queued"] == JOBS

    workers = [subprocess.Popen(
        [sys.executable, "-m", "preftune", "worker", "--database-url", postgres_url,
         "--service-dir", str(store.root), "--poll-s", "0.2"],
        stdout=(tmp_path / f"worker-{i}.log").open("w"), stderr=subprocess.STDOUT)
        for i in range(2)]
    try:
        deadline = time.monotonic() + 600
        while queue.queue_counts(db)["succeeded"] + queue.queue_counts(db)["failed"] < JOBS:
            assert time.monotonic() < deadline, queue.queue_counts(db)
            assert all(w.poll() is None for w in workers)
            time.sleep(0.5)
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=60)

    ran_on: dict[str, int] = {}
    for job in jobs:
        row = queue.get_job(db, None, job.id)
        assert row.status == "succeeded", row.error
        assert row.attempt == 1 and row.lost_leases == 0
        events, _ = queue.list_events(db, None, job.id, limit=100)
        started = [e.message for e in events if e.message.startswith("Fine-tuning job started")]
        assert len(started) == 1 and "(attempt 1, worker " in started[0]
        worker = started[0].split("worker ")[1].rstrip(")")
        ran_on[worker] = ran_on.get(worker, 0) + 1
        logs = sorted(p.name for p in (store.job_dir(job.id) / "logs").iterdir())
        assert logs == ["attempt-1.log"]
        assert (store.run_dir(job.id) / "final").is_dir()
    assert sorted(ran_on.values()) != [JOBS] and len(ran_on) == 2  # both workers took jobs
    assert sum(ran_on.values()) == JOBS
    db.dispose()
