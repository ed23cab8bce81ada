"""The queue's state changes, claims and fencing, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
import time

import pytest

from preftune.service import queue
from preftune.service.queue import Conflict, Lease, NotFound, StaleAttempt


def _job(db, tenant_id, **kw):
    job, created = queue.enqueue(db, tenant_id=tenant_id, model="tiny", training_file="file-x",
                                 validation_file=None, method={"type": "dpo"}, config={},
                                 seed=42, **kw)
    return job, created


def _queued(db, tenant_id, n=1, **kw):
    jobs = []
    for _ in range(n):
        job, _ = _job(db, tenant_id, **kw)
        assert queue.claim_validation(db, "validator", 30) is not None
        assert queue.finish_validation(db, job.id, "validator", None)
        jobs.append(job)
    return jobs


def _expire(db, job_id):
    from preftune.service.db import Job

    with db.session() as session:
        session.get(Job, job_id).lease_expires_at = time.time() - 1


def test_a_job_moves_from_validation_to_queue_to_running(db, keys):
    job, created = _job(db, keys.alice_tenant)
    assert created and job.status == "validating_files" and job.attempt == 0
    assert queue.claim_run(db, "w1", 30) is None  # not validated yet
    claimed = queue.claim_validation(db, "v1", 30)
    assert claimed.id == job.id
    assert queue.claim_validation(db, "v2", 30) is None  # leased to v1
    assert queue.finish_validation(db, job.id, "v1", None)
    lease = queue.claim_run(db, "w1", 30)
    assert lease == Lease(job.id, 1, "w1")
    assert queue.get_job(db, None, job.id).status == "running"
    assert queue.claim_run(db, "w2", 30) is None


def test_failed_validation_ends_the_job_with_the_error(db, keys):
    job, _ = _job(db, keys.alice_tenant)
    queue.claim_validation(db, "v1", 30)
    error = {"code": "invalid_training_file", "message": "record 3: no 'chosen'",
             "param": "training_file"}
    assert queue.finish_validation(db, job.id, "v1", error)
    row = queue.get_job(db, None, job.id)
    assert row.status == "failed" and row.error == error and row.finished_at is not None
    assert queue.claim_run(db, "w1", 30) is None


def test_claims_take_the_oldest_job_first(db, keys):
    jobs = _queued(db, keys.alice_tenant, 3)
    assert [queue.claim_run(db, "w", 30).job_id for _ in jobs] == [j.id for j in jobs]


def test_stale_attempts_are_refused_after_the_lease_was_lost(db, keys):
    (job,) = _queued(db, keys.alice_tenant)
    first = queue.claim_run(db, "w1", 30)
    queue.add_event(db, job.id, "from attempt 1", lease=first)
    assert queue.record_checkpoint(db, first, 2, "step-2", "checkpoints/step-2/model", {})
    _expire(db, job.id)
    assert queue.reap_expired(db) == [job.id]
    row = queue.get_job(db, None, job.id)
    assert row.status == "queued" and row.lost_leases == 1 and row.lease_owner is None
    with pytest.raises(StaleAttempt):  # lost lease, before anyone claimed it again
        queue.heartbeat(db, first, 30)
    second = queue.claim_run(db, "w2", 30)
    assert second.attempt == 2
    for write in (lambda: queue.heartbeat(db, first, 30),
                  lambda: queue.add_event(db, job.id, "late", lease=first),
                  lambda: queue.record_checkpoint(db, first, 4, "step-4", "m", {}),
                  lambda: queue.finish_attempt(db, first, "succeeded")):
        with pytest.raises(StaleAttempt, match="attempt 1 .* no longer holds the lease"):
            write()
    assert queue.heartbeat(db, second, 30) is None
    assert not queue.record_checkpoint(db, second, 2, "step-2", "m", {})  # no duplicate row
    queue.finish_attempt(db, second, "succeeded")
    assert queue.get_job(db, None, job.id).status == "succeeded"
    checkpoints, _ = queue.list_checkpoints(db, None, job.id)
    assert [(c.step, c.attempt) for c in checkpoints] == [(2, 1)]
    events, _ = queue.list_events(db, None, job.id, limit=100)
    assert "late" not in [e.message for e in events]


def test_a_job_fails_after_max_attempts_lost_leases(db, keys):
    (job,) = _queued(db, keys.alice_tenant, max_attempts=2)
    for attempt in (1, 2):
        lease = queue.claim_run(db, f"w{attempt}", 30)
        assert lease.attempt == attempt
        _expire(db, job.id)
        queue.reap_expired(db)
    row = queue.get_job(db, None, job.id)
    assert row.status == "failed" and row.error["code"] == "worker_lost"
    assert "gave up after 2 lost attempts" in row.error["message"]


def test_cancel_pause_and_resume(db, keys):
    queued, running, paused = _queued(db, keys.alice_tenant, 3)
    assert queue.request_cancel(db, keys.alice_tenant, queued.id).status == "cancelled"
    with pytest.raises(Conflict, match="already been cancelled"):
        queue.request_cancel(db, keys.alice_tenant, queued.id)
    lease = queue.claim_run(db, "w", 30)
    assert lease.job_id == running.id
    job = queue.request_cancel(db, keys.alice_tenant, running.id)
    assert job.status == "running" and job.requested == "cancel"
    assert queue.heartbeat(db, lease, 30) == "cancel"
    queue.finish_attempt(db, lease, "cancelled")
    assert queue.request_pause(db, keys.alice_tenant, paused.id).status == "paused"
    assert queue.claim_run(db, "w", 30) is None  # paused jobs are not claimed
    assert queue.request_resume(db, keys.alice_tenant, paused.id).status == "queued"
    with pytest.raises(Conflict, match="only a paused job"):
        queue.request_resume(db, keys.alice_tenant, paused.id)
    lease = queue.claim_run(db, "w", 30)
    queue.request_pause(db, keys.alice_tenant, paused.id)
    assert queue.request_resume(db, keys.alice_tenant, paused.id).requested is None


def test_a_dead_workers_pending_cancel_takes_effect_when_reaped(db, keys):
    (job,) = _queued(db, keys.alice_tenant)
    queue.claim_run(db, "w", 30)
    queue.request_cancel(db, keys.alice_tenant, job.id)
    _expire(db, job.id)
    queue.reap_expired(db)
    assert queue.get_job(db, None, job.id).status == "cancelled"


def test_jobs_are_scoped_by_tenant(db, keys):
    job, _ = _job(db, keys.alice_tenant)
    assert queue.get_job(db, keys.alice_tenant, job.id).id == job.id
    for call in (queue.get_job, queue.request_cancel, queue.request_pause,
                 queue.request_resume, queue.list_events, queue.list_checkpoints):
        with pytest.raises(NotFound):
            call(db, keys.bob_tenant, job.id)
    assert queue.list_jobs(db, keys.bob_tenant) == ([], False)


def test_idempotency_keys_return_the_first_job(db, keys):
    first, created = _job(db, keys.alice_tenant, idempotency_key="k1")
    again, created_again = _job(db, keys.alice_tenant, idempotency_key="k1")
    other, _ = _job(db, keys.bob_tenant, idempotency_key="k1")  # keys are per tenant
    assert created and not created_again and again.id == first.id and other.id != first.id


def test_list_jobs_pages_newest_first_and_filters_metadata(db, keys):
    ids = [_job(db, keys.alice_tenant, metadata={"team": "a" if i % 2 else "b"})[0].id
           for i in range(5)]
    page, more = queue.list_jobs(db, keys.alice_tenant, limit=2)
    assert [j.id for j in page] == ids[::-1][:2] and more
    page, more = queue.list_jobs(db, keys.alice_tenant, after=page[-1].id, limit=10)
    assert [j.id for j in page] == ids[::-1][2:] and not more
    page, _ = queue.list_jobs(db, keys.alice_tenant, metadata={"team": "a"})
    assert [j.id for j in page] == [ids[3], ids[1]]


def test_events_deduplicate_by_key(db, keys):
    (job,) = _queued(db, keys.alice_tenant)
    lease = queue.claim_run(db, "w", 30)
    queue.add_event(db, job.id, "step 1", type="metrics", data={"loss": 0.7}, lease=lease,
                    dedupe_key="metrics:train:1")
    queue.add_event(db, job.id, "step 1", type="metrics", data={"loss": 0.6}, lease=lease,
                    dedupe_key="metrics:train:1")
    events, _ = queue.list_events(db, None, job.id, limit=100)
    metrics = [e for e in events if e.type == "metrics"]
    assert len(metrics) == 1 and metrics[0].data == {"loss": 0.6}


def test_concurrent_workers_never_claim_the_same_job(db, keys):
    jobs = _queued(db, keys.alice_tenant, 12)
    claimed: list[Lease] = []
    lock = threading.Lock()

    def work(name: str) -> None:
        while (lease := queue.claim_run(db, name, 30)) is not None:
            with lock:
                claimed.append(lease)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(c.job_id for c in claimed) == sorted(j.id for j in jobs)
    assert all(c.attempt == 1 for c in claimed)
