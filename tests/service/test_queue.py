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


# ------------------------------------------------------------------------- fair claims


def _tenant_of(db, lease):
    return queue.get_job(db, None, lease.job_id).tenant_id


def _drain(db, max_running=None):
    leases = []
    while (lease := queue.claim_run(db, "w", 30, max_running)) is not None:
        leases.append(lease)
    return leases


def test_a_tenants_backlog_does_not_delay_another_tenants_job(db, keys):
    _queued(db, keys.bob_tenant, 40)
    (mine,) = _queued(db, keys.alice_tenant)
    first_two = [queue.claim_run(db, "w", 30).job_id for _ in range(2)]
    assert mine.id in first_two  # a global FIFO claimed it 41st


def test_claims_go_round_robin_over_tenants(db, keys):
    from preftune.service.auth import ensure_tenant

    carol = ensure_tenant(db, "team-c")
    for tenant in (keys.alice_tenant, keys.bob_tenant, carol):  # each tenant's jobs together
        _queued(db, tenant, 3)
    order = [_tenant_of(db, lease) for lease in _drain(db)]
    assert len(order) == 9 and sorted(set(order[:3])) == sorted(
        {keys.alice_tenant, keys.bob_tenant, carol})
    assert order == order[:3] * 3


def test_a_tenants_jobs_run_by_priority_then_age(db, keys):
    jobs = [_queued(db, keys.alice_tenant, priority=p)[0] for p in (0, 5, 1, 5)]
    claimed = [lease.job_id for lease in _drain(db)]
    assert claimed == [jobs[1].id, jobs[3].id, jobs[2].id, jobs[0].id]


def test_a_tenant_at_its_running_cap_is_skipped_while_others_are_served(db, keys):
    from preftune.service.auth import ensure_tenant

    carol = ensure_tenant(db, "team-c")
    alice_jobs = _queued(db, keys.alice_tenant, 3)
    _queued(db, keys.bob_tenant, 3)
    _queued(db, carol, 1)
    caps = {"team-a": 1, "team-c": 0, "": 2}  # team-b has the default cap
    leases = _drain(db, caps)
    assert sorted(_tenant_of(db, lease) for lease in leases) == sorted(
        [keys.alice_tenant, keys.bob_tenant, keys.bob_tenant])
    (alice_lease,) = [lease for lease in leases if lease.job_id in {j.id for j in alice_jobs}]
    queue.finish_attempt(db, alice_lease, "succeeded")
    assert _tenant_of(db, queue.claim_run(db, "w", 30, caps)) == keys.alice_tenant
    assert queue.claim_run(db, "w", 30, caps) is None
    assert len(_drain(db)) == 2 + 1  # no caps: the rest of alice's and carol's


def test_tenant_usage_counts_jobs_and_stored_bytes(db, keys):
    running, _, paused = _queued(db, keys.alice_tenant, 3)
    _queued(db, keys.bob_tenant, 2)
    _job(db, keys.alice_tenant)  # validating_files
    queue.claim_run(db, "w", 30, {"team-b": 0})  # alice's oldest
    queue.request_pause(db, keys.alice_tenant, paused.id)
    queue.add_file(db, queue.new_id("file"), keys.alice_tenant, "a.jsonl", "fine-tune", 100,
                   "a.jsonl")
    queue.add_file(db, queue.new_id("file"), keys.alice_tenant, "metrics.jsonl",
                   "fine-tune-results", 20, "m.jsonl")
    assert queue.get_job(db, None, running.id).status == "running"
    assert queue.tenant_usage(db, keys.alice_tenant) == {
        "running": 1, "queued": 3, "files": 2, "stored_bytes": 120}
    assert queue.tenant_usage(db, keys.bob_tenant) == {
        "running": 0, "queued": 2, "files": 0, "stored_bytes": 0}


# ------------------------------------------------------------------- cancel wins over pause


def _events(db, job_id):
    events, _ = queue.list_events(db, None, job_id, limit=100)
    return [e.message for e in events]


def test_a_cancel_after_a_pause_ends_the_job_cancelled(db, keys):
    (job,) = _queued(db, keys.alice_tenant)
    lease = queue.claim_run(db, "w", 30)
    queue.request_pause(db, keys.alice_tenant, job.id)
    assert queue.heartbeat(db, lease, 30) == "pause"  # the worker starts stopping to pause
    assert queue.request_cancel(db, keys.alice_tenant, job.id).requested == "cancel"
    ended = queue.finish_attempt(db, lease, "paused", message="Fine-tuning job paused at x")
    row = queue.get_job(db, None, job.id)
    assert ended == row.status == "cancelled" and row.finished_at is not None
    assert row.requested is None and row.lease_owner is None
    assert any("cancellation requested while it was being paused" in m
               for m in _events(db, job.id))
    with pytest.raises(Conflict, match="only a paused job"):
        queue.request_resume(db, keys.alice_tenant, job.id)


def test_a_pause_after_a_cancel_is_refused_and_the_cancel_stands(db, keys):
    (job,) = _queued(db, keys.alice_tenant)
    lease = queue.claim_run(db, "w", 30)
    queue.request_cancel(db, keys.alice_tenant, job.id)
    with pytest.raises(Conflict, match="is being cancelled; it cannot be paused"):
        queue.request_pause(db, keys.alice_tenant, job.id)
    assert queue.heartbeat(db, lease, 30) == "cancel"
    assert queue.finish_attempt(db, lease, "cancelled") == "cancelled"


def test_a_cancel_pending_when_the_worker_shuts_down_ends_the_job_cancelled(db, keys):
    (job,) = _queued(db, keys.alice_tenant)
    lease = queue.claim_run(db, "w", 30)
    queue.request_cancel(db, keys.alice_tenant, job.id)
    assert queue.finish_attempt(db, lease, "queued", message="The worker stopped") == "cancelled"
    assert queue.get_job(db, None, job.id).status == "cancelled"
    assert queue.claim_run(db, "w", 30) is None


def test_a_paused_job_is_cancelled_at_once(db, keys):
    (job,) = _queued(db, keys.alice_tenant)
    lease = queue.claim_run(db, "w", 30)
    queue.request_pause(db, keys.alice_tenant, job.id)
    assert queue.finish_attempt(db, lease, "paused") == "paused"
    assert queue.request_cancel(db, keys.alice_tenant, job.id).status == "cancelled"
    assert queue.get_job(db, None, job.id).status == "cancelled"


def test_a_lost_worker_with_a_cancel_after_a_pause_ends_cancelled(db, keys):
    (job,) = _queued(db, keys.alice_tenant)
    queue.claim_run(db, "w", 30)
    queue.request_pause(db, keys.alice_tenant, job.id)
    queue.request_cancel(db, keys.alice_tenant, job.id)
    _expire(db, job.id)
    assert queue.reap_expired(db) == [job.id]
    assert queue.get_job(db, None, job.id).status == "cancelled"


def test_run_seconds_add_up_over_attempts(db, keys):
    (job,) = _queued(db, keys.alice_tenant)
    queue.finish_attempt(db, queue.claim_run(db, "w", 30), "queued", ran_s=12.5)
    queue.finish_attempt(db, queue.claim_run(db, "w", 30), "succeeded", ran_s=7.5)
    assert queue.get_job(db, None, job.id).run_s == pytest.approx(20.0)


# ------------------------------------------------------------------------- idempotency


def test_an_idempotency_key_reused_with_another_request_is_refused(db, keys):
    from preftune.service.queue import IdempotencyConflict

    first, _ = _job(db, keys.alice_tenant, idempotency_key="k1", request_hash="a" * 64)
    again, created = _job(db, keys.alice_tenant, idempotency_key="k1", request_hash="a" * 64)
    assert again.id == first.id and not created
    with pytest.raises(IdempotencyConflict, match="'k1' was already used to create job "
                       f"{first.id} with a different request") as raised:
        _job(db, keys.alice_tenant, idempotency_key="k1", request_hash="b" * 64)
    assert isinstance(raised.value, Conflict)  # the API answers 409
    assert "new Idempotency-Key" in raised.value.hints[0]
    assert len(queue.list_jobs(db, keys.alice_tenant)[0]) == 1


def test_enqueue_stores_priority_integrations_and_run_limit(db, keys):
    integrations = [{"type": "wandb", "wandb": {"project": "p"}}]
    job, _ = _job(db, keys.alice_tenant, priority=3, integrations=integrations, max_run_s=60.0,
                  request_hash="c" * 64)
    row = queue.get_job(db, None, job.id)
    assert (row.priority, row.integrations, row.max_run_s, row.run_s, row.request_hash) == (
        3, integrations, 60.0, 0.0, "c" * 64)


def test_validation_takes_tenants_in_turns(db, keys):
    """bob's 5 new jobs, then alice's 2: validators take bob 1, alice 1, bob 2, alice 2, ..."""
    bob = [_job(db, keys.bob_tenant)[0].id for _ in range(5)]
    alice = [_job(db, keys.alice_tenant)[0].id for _ in range(2)]
    order = []
    while (job := queue.claim_validation(db, f"v{len(order)}", 30)) is not None:
        order.append(job.id)
    assert order == [bob[0], alice[0], bob[1], alice[1], *bob[2:]]
    expected_free = order[0]
    _expire(db, expected_free)  # an expired validation lease is free to claim again
    assert queue.claim_validation(db, "v-late", 30).id == expected_free


def test_concurrent_creates_cannot_pass_the_waiting_cap_together(db, keys):
    """Eight requests at once against a cap of 3 waiting jobs: exactly 3 are created; a
    retried key is answered with its job, not counted again."""
    first, _ = _job(db, keys.alice_tenant, idempotency_key="k", max_waiting=3)
    outcomes: list[str] = []
    lock = threading.Lock()

    def create() -> None:
        try:
            _job(db, keys.alice_tenant, max_waiting=3)
            outcome = "created"
        except queue.QueueFull as full:
            assert (full.waiting, full.cap) == (3, 3)
            outcome = "full"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["created"] * 2 + ["full"] * 6
    again, created = _job(db, keys.alice_tenant, idempotency_key="k", max_waiting=3)
    assert again.id == first.id and not created
    assert queue.tenant_usage(db, keys.alice_tenant)["queued"] == 3


def test_concurrent_files_cannot_pass_the_file_quota_together(db, keys):
    """Six files recorded at once against max_files=2 and 100 bytes: two are recorded; a
    file that would pass the bytes is refused naming max_stored_mb."""
    outcomes: list[str] = []
    lock = threading.Lock()

    def add(i: int) -> None:
        try:
            queue.add_file(db, queue.new_id("file"), keys.alice_tenant, f"{i}.jsonl",
                           "fine-tune", 10, f"s{i}", max_files=2, max_bytes=100)
            outcome = "added"
        except queue.StoreFull as full:
            assert (full.quota, full.used, full.cap) == ("max_files", 2, 2)
            outcome = "full"
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=add, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["added"] * 2 + ["full"] * 4
    with pytest.raises(queue.StoreFull) as error:
        queue.add_file(db, queue.new_id("file"), keys.alice_tenant, "big.jsonl", "fine-tune",
                       81, "s-big", max_files=5, max_bytes=100)
    assert (error.value.quota, error.value.used) == ("max_stored_mb", 20)
    assert queue.tenant_usage(db, keys.alice_tenant)["files"] == 2
