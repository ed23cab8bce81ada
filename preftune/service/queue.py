"""The job queue: every state change of a job, as one short transaction each.

States (as the OpenAI fine-tuning API names them, plus ``paused``)::

    validating_files -> queued -> running -> succeeded | failed | cancelled
                                   running -> paused -> queued (resume)

Validation claims take tenants in turns (``claim_validation``). Claims to run are fair across
tenants (``claim_run``): among the tenants that have a queued
job and fewer running jobs than their cap, the one served least recently goes first (never
served first, then by tenant id), and of its queued jobs the one with the highest priority,
then the oldest. One tenant's backlog therefore delays another tenant's next job by at most
one claim per other waiting tenant. Claims are serialised, so two workers never read the same
tenant as least recently served or both fill its last free slot: SQLite's ``BEGIN IMMEDIATE``
(see ``db.Database``), a transaction-scoped advisory lock on PostgreSQL; the job row is also
taken ``FOR UPDATE SKIP LOCKED``. A claim grants a lease that heartbeats renew.

Each claim to run raises the job's ``attempt``; every write a worker makes afterwards is
*fenced*: it must name the attempt and the lease owner the row holds, or it is refused with
``StaleAttempt``. A worker that dies stops renewing; ``reap_expired`` then puts its job back
in the queue (or fails it after ``max_attempts`` lost leases), and the next attempt resumes
from the last durable checkpoint.

A cancel wins over a pause whatever their order: a job whose attempt stops to pause (or whose
worker shuts down) while a cancel is pending ends cancelled, and a pause is refused once a
cancel is pending.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select, text, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from preftune.errors import PreftuneError, UsageError
from preftune.service.db import (
    Database,
    File,
    Job,
    JobCheckpoint,
    JobEvent,
    Tenant,
    Worker,
    now,
)

TERMINAL = ("succeeded", "failed", "cancelled")
WAITING = ("validating_files", "queued", "paused")  # unfinished and not running
STATUSES = ("validating_files", "queued", "running", "paused", *TERMINAL)

# Every claim to run takes this PostgreSQL advisory lock (any constant all workers share): the
# fair choice reads every tenant's running count, which row locks cannot keep still.
CLAIM_LOCK = 0x7072656674756E65  # "preftune"


class NotFound(UsageError):
    """No such object for this tenant (another tenant's object is not found either)."""


class Conflict(UsageError):
    """The object exists but is in a state that does not allow the request."""


class IdempotencyConflict(Conflict):
    """An Idempotency-Key reused with a request other than the one that first used it."""


class StoreFull(UsageError):
    """A file would take the tenant past ``quota`` (max_files or max_stored_mb)."""

    def __init__(self, quota: str, used: int, cap: int) -> None:
        super().__init__(f"{quota}: {used} used, the cap is {cap}")
        self.quota, self.used, self.cap = quota, used, cap


class QueueFull(UsageError):
    """The tenant already has ``cap`` jobs waiting (validating files, queued or paused)."""

    def __init__(self, waiting: int, cap: int) -> None:
        super().__init__(f"{waiting} jobs waiting; the cap is {cap}")
        self.waiting, self.cap = waiting, cap


class StaleAttempt(PreftuneError):
    """A write from an attempt that no longer holds the job's lease."""


@dataclass(frozen=True)
class Lease:
    """What a worker holds while it runs a job: the fencing token of every write it makes."""

    job_id: str
    attempt: int
    worker_id: str


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


# ------------------------------------------------------------------------------ the API side


def enqueue(db: Database, *, tenant_id: str, model: str, training_file: str,
            validation_file: str | None, method: dict[str, Any], config: dict[str, Any],
            seed: int, suffix: str | None = None, metadata: dict[str, str] | None = None,
            idempotency_key: str | None = None, request_hash: str | None = None,
            priority: int = 0, integrations: list[dict[str, Any]] | None = None,
            max_run_s: float | None = None, max_attempts: int = 3,
            max_waiting: int | None = None) -> tuple[Job, bool]:
    """A new job in ``validating_files``, or the job an earlier request with the same
    idempotency key created (then the second value is False).

    ``request_hash`` identifies the request body: a key reused with another body raises
    ``IdempotencyConflict`` rather than answer for a job the client did not ask for. With
    ``max_waiting``, a tenant that already has that many jobs waiting gets ``QueueFull``: the
    count and the insert are one transaction under the tenant's row lock, so concurrent
    requests cannot pass the cap together (a retried key is answered before it counts).
    """
    if idempotency_key is not None:
        existing = _by_idempotency_key(db, tenant_id, idempotency_key)
        if existing is not None:
            return _same_request(existing, request_hash), False
    job = Job(id=new_id("ftjob"), tenant_id=tenant_id, model=model, training_file=training_file,
              validation_file=validation_file, method=method, config=config, seed=seed,
              suffix=suffix, metadata_=metadata, idempotency_key=idempotency_key,
              request_hash=request_hash, priority=priority, integrations=integrations,
              max_run_s=max_run_s, run_s=0.0,
              status="validating_files", attempt=0, lost_leases=0, max_attempts=max_attempts,
              result_files=[], created_at=now(), order_key=time.time())
    try:
        with db.session() as session:
            if max_waiting is not None:
                _check_waiting(session, tenant_id, max_waiting)
            session.add(job)
            session.flush()
            _event(session, job.id, f"Created fine-tuning job: {job.id}")
            _event(session, job.id, f"Validating training file: {training_file}"
                   + (f" and validation file: {validation_file}" if validation_file else ""))
    except IntegrityError:
        if idempotency_key is None:
            raise
        existing = _by_idempotency_key(db, tenant_id, idempotency_key)  # a concurrent twin
        if existing is None:
            raise
        return _same_request(existing, request_hash), False
    return job, True


def _check_waiting(session: Session, tenant_id: str, cap: int) -> None:
    session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
    waiting = int(session.scalar(select(func.count()).select_from(Job).where(
        Job.tenant_id == tenant_id, Job.status.in_(WAITING))) or 0)
    if waiting >= cap:
        raise QueueFull(waiting, cap)


def _same_request(existing: Job, request_hash: str | None) -> Job:
    """``existing``, if the request that made it is the one retried (unknown hashes pass)."""
    if request_hash is not None and existing.request_hash not in (None, request_hash):
        raise IdempotencyConflict(
            f"the Idempotency-Key {existing.idempotency_key!r} was already used to create job "
            f"{existing.id} with a different request",
            ["send a new Idempotency-Key for a new request; retry with the same key only to "
             "repeat the same request"])
    return existing


def _by_idempotency_key(db: Database, tenant_id: str, key: str) -> Job | None:
    with db.session() as session:
        return session.scalars(select(Job).where(Job.tenant_id == tenant_id,
                                                 Job.idempotency_key == key)).first()


def get_job(db: Database, tenant_id: str | None, job_id: str) -> Job:
    """The job, if it belongs to ``tenant_id`` (None: any tenant, for workers and the CLI)."""
    with db.session() as session:
        job = session.get(Job, job_id)
        if job is None or (tenant_id is not None and job.tenant_id != tenant_id):
            raise NotFound(f"no fine-tuning job {job_id!r}")
        return job


def list_jobs(db: Database, tenant_id: str, after: str | None = None, limit: int = 20,
              metadata: dict[str, str] | None = None) -> tuple[list[Job], bool]:
    """A page of the tenant's jobs, newest first, starting after the job ``after``; the second
    value says whether more follow. ``metadata`` keeps jobs whose metadata has those pairs."""
    with db.session() as session:
        query = select(Job).where(Job.tenant_id == tenant_id)
        if after is not None:
            anchor = session.get(Job, after)
            if anchor is None or anchor.tenant_id != tenant_id:
                raise NotFound(f"no fine-tuning job {after!r} (the 'after' cursor)")
            query = query.where(or_(Job.order_key < anchor.order_key,
                                    (Job.order_key == anchor.order_key) & (Job.id < anchor.id)))
        query = query.order_by(Job.order_key.desc(), Job.id.desc())
        if not metadata:
            rows = list(session.scalars(query.limit(limit + 1)))
            return rows[:limit], len(rows) > limit
        page: list[Job] = []
        for job in session.scalars(query.execution_options(yield_per=200)):
            if all((job.metadata_ or {}).get(k) == v for k, v in metadata.items()):
                page.append(job)
                if len(page) > limit:
                    break
        return page[:limit], len(page) > limit


def request_cancel(db: Database, tenant_id: str | None, job_id: str) -> Job:
    """Cancel now if no worker holds the job; otherwise ask its worker to stop it."""
    with db.session() as session:
        job = _locked(session, tenant_id, job_id)
        if job.status in TERMINAL:
            raise Conflict(f"job {job_id} has already {_ended(job.status)}; nothing to cancel")
        if job.status == "running":
            job.requested = "cancel"
            _event(session, job.id, "Cancellation requested; stopping the training process")
        else:
            _end(session, job, "cancelled")
            _event(session, job.id, "Fine-tuning job cancelled")
        return job


def request_pause(db: Database, tenant_id: str | None, job_id: str) -> Job:
    """Pause a queued job now; ask a running job's worker to checkpoint and stop it."""
    with db.session() as session:
        job = _locked(session, tenant_id, job_id)
        if job.status in TERMINAL or job.status == "validating_files":
            raise Conflict(f"job {job_id} is {job.status}; only a queued or running job can "
                           "be paused")
        if job.requested == "cancel":  # a pause must not replace it: cancel wins
            raise Conflict(f"job {job_id} is being cancelled; it cannot be paused",
                           ["wait for it to end cancelled, then create a new job"])
        if job.status == "running":
            job.requested = "pause"
            _event(session, job.id, "Pause requested; saving a checkpoint and stopping")
        elif job.status == "queued":
            job.status = "paused"
            _event(session, job.id, "Fine-tuning job paused")
        return job


def request_resume(db: Database, tenant_id: str | None, job_id: str) -> Job:
    """Put a paused job back in the queue (it continues from its last checkpoint)."""
    with db.session() as session:
        job = _locked(session, tenant_id, job_id)
        if job.status == "running" and job.requested == "pause":
            job.requested = None
            _event(session, job.id, "Pause request withdrawn")
            return job
        if job.status != "paused":
            raise Conflict(f"job {job_id} is {job.status}; only a paused job can be resumed")
        job.status = "queued"
        _event(session, job.id, "Fine-tuning job resumed; queued to continue from its last "
                                "checkpoint")
        return job


def list_events(db: Database, tenant_id: str | None, job_id: str, after: str | None = None,
                limit: int = 20) -> tuple[list[JobEvent], bool]:
    """Events newest first, older than the event ``after`` when given."""
    get_job(db, tenant_id, job_id)
    with db.session() as session:
        query = select(JobEvent).where(JobEvent.job_id == job_id)
        if after is not None:
            query = query.where(JobEvent.id < event_number(after))
        rows = list(session.scalars(query.order_by(JobEvent.id.desc()).limit(limit + 1)))
        return rows[:limit], len(rows) > limit


def list_checkpoints(db: Database, tenant_id: str | None, job_id: str, after: str | None = None,
                     limit: int = 10) -> tuple[list[JobCheckpoint], bool]:
    """Checkpoints newest (highest step) first, after the checkpoint ``after`` when given."""
    get_job(db, tenant_id, job_id)
    with db.session() as session:
        query = select(JobCheckpoint).where(JobCheckpoint.job_id == job_id)
        if after is not None:
            anchor = session.get(JobCheckpoint, after)
            if anchor is None or anchor.job_id != job_id:
                raise NotFound(f"no checkpoint {after!r} of job {job_id}")
            query = query.where(JobCheckpoint.step < anchor.step)
        rows = list(session.scalars(query.order_by(JobCheckpoint.step.desc())
                                    .limit(limit + 1)))
        return rows[:limit], len(rows) > limit


def get_checkpoint(db: Database, tenant_id: str | None, job_id: str,
                   checkpoint_id: str) -> JobCheckpoint:
    get_job(db, tenant_id, job_id)
    with db.session() as session:
        row = session.get(JobCheckpoint, checkpoint_id)
        if row is None or row.job_id != job_id:
            raise NotFound(f"no checkpoint {checkpoint_id!r} of job {job_id}")
        return row


def event_id(number: int) -> str:
    return f"ftevent-{number}"


def event_number(event: str) -> int:
    digits = event.removeprefix("ftevent-")
    # isdigit() alone passes "²" (int() refuses it); over 18 digits is past a 64-bit row id,
    # which SQLite cannot even compare with.
    if not (digits.isascii() and digits.isdigit()) or len(digits) > 18:
        raise NotFound(f"no event {event!r}")
    return int(digits)


def queue_counts(db: Database) -> dict[str, int]:
    """Jobs by status, over all tenants (for /metrics)."""
    with db.session() as session:
        rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    counts = dict.fromkeys(STATUSES, 0)
    counts.update({status: int(n) for status, n in rows})
    return counts


def tenant_usage(db: Database, tenant_id: str) -> dict[str, int]:
    """What the tenant holds now, for its quota: ``running`` jobs, ``queued`` jobs (validating
    files, queued or paused: unfinished and not running), ``files`` and their ``stored_bytes``
    (uploads and results alike)."""
    with db.session() as session:
        by_status = {status: int(n) for status, n in session.execute(
            select(Job.status, func.count()).where(Job.tenant_id == tenant_id,
                                                   Job.status.in_((*WAITING, "running")))
            .group_by(Job.status))}
        files, stored = session.execute(
            select(func.count(), func.coalesce(func.sum(File.bytes), 0))
            .where(File.tenant_id == tenant_id)).one()
    return {"running": by_status.get("running", 0),
            "queued": sum(by_status.get(s, 0) for s in WAITING),
            "files": int(files), "stored_bytes": int(stored)}


def files_in_use(db: Database, file_id: str) -> int:
    """How many unfinished jobs read this file."""
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Job).where(
            or_(Job.training_file == file_id, Job.validation_file == file_id),
            Job.status.not_in(TERMINAL))) or 0)


# --------------------------------------------------------------------------- the worker side


def register_worker(db: Database, worker_id: str, hostname: str, pid: int) -> None:
    with db.session() as session:
        t = time.time()
        session.merge(Worker(id=worker_id, hostname=hostname, pid=pid, started_at=t,
                             heartbeat_at=t, job_id=None))


def worker_alive(db: Database, worker_id: str, job_id: str | None) -> None:
    with db.session() as session:
        worker = session.get(Worker, worker_id)
        if worker is not None:
            worker.heartbeat_at = time.time()
            worker.job_id = job_id


def unregister_worker(db: Database, worker_id: str) -> None:
    with db.session() as session:
        session.execute(delete(Worker).where(Worker.id == worker_id))


def live_workers(db: Database, within_s: float) -> int:
    with db.session() as session:
        return int(session.scalar(select(func.count()).select_from(Worker).where(
            Worker.heartbeat_at >= time.time() - within_s)) or 0)


def claim_validation(db: Database, worker_id: str, lease_s: float) -> Job | None:
    """A job waiting for its files to be validated, leased to ``worker_id``.

    Tenants take turns: each tenant's oldest waiting job comes first, then each tenant's
    second, and so on (oldest first within a turn), so one tenant's 40 new jobs do not hold
    back another tenant's one.
    """
    t = time.time()
    free = or_(Job.lease_owner.is_(None), Job.lease_expires_at < t)
    turn = func.row_number().over(partition_by=Job.tenant_id,
                                  order_by=(Job.order_key, Job.id)).label("turn")
    # Turns count every waiting job, leased ones too: a tenant whose first job is being
    # validated has its second job in the second turn.
    waiting = select(Job.id, Job.order_key, Job.lease_owner, Job.lease_expires_at,
                     turn).where(Job.status == "validating_files").subquery()
    with db.session() as session:
        # Window functions cannot take row locks: rank first, then lock the first free one.
        ranked = session.scalars(select(waiting.c.id).where(
            or_(waiting.c.lease_owner.is_(None), waiting.c.lease_expires_at < t)).order_by(
            waiting.c.turn, waiting.c.order_key, waiting.c.id).limit(16)).all()
        for job_id in ranked:
            job = session.scalars(select(Job).where(
                Job.id == job_id, Job.status == "validating_files", free)
                .with_for_update(skip_locked=True)).first()
            if job is not None:
                job.lease_owner, job.lease_expires_at = worker_id, t + lease_s
                return job
        return None


def finish_validation(db: Database, job_id: str, worker_id: str,
                      error: dict[str, Any] | None, messages: Sequence[str] = ()) -> bool:
    """Move a validated job to ``queued``, or fail it with ``error``; False if the job was
    cancelled (or its validation lease lost) meanwhile."""
    with db.session() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or job.status != "validating_files" or job.lease_owner != worker_id:
            return False
        job.lease_owner = job.lease_expires_at = None
        for message in messages:
            _event(session, job.id, message)
        if error is None:
            job.status = "queued"
            _event(session, job.id, "Files validated; fine-tuning job queued")
        else:
            _end(session, job, "failed", error)
            _event(session, job.id, error["message"], level="error")
        return True


def claim_run(db: Database, worker_id: str, lease_s: float,
              max_running: dict[str, int] | None = None) -> Lease | None:
    """The next queued job by the fair policy (module docstring), now ``running`` under a new
    attempt leased to ``worker_id``; None when no tenant under its cap has a queued job.

    ``max_running`` caps each tenant's running jobs by tenant name, ``""`` giving the cap of
    tenants not named; None (or no entry for a tenant and no ``""``) means no cap.
    """
    t = time.time()
    with db.session() as session:
        if db.dialect == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": CLAIM_LOCK})
        job = _next_fair(session, max_running)
        if job is None:
            return None
        # Never behind an earlier claim: a worker whose clock lags must not make its tenant
        # look less recently served than the others.
        newest = session.scalar(select(func.max(Tenant.last_served_at)))
        session.execute(update(Tenant).where(Tenant.id == job.tenant_id)
                        .values(last_served_at=max(t, (newest or 0.0) + 1e-3)))
        job.attempt += 1
        job.status, job.requested = "running", None
        job.lease_owner, job.lease_expires_at = worker_id, t + lease_s
        job.started_at = job.started_at or int(t)
        _event(session, job.id, f"Fine-tuning job started (attempt {job.attempt}, worker "
               f"{worker_id})", attempt=job.attempt)
        return Lease(job.id, job.attempt, worker_id)


def _next_fair(session: Session, max_running: dict[str, int] | None) -> Job | None:
    """The queued job to run next, locked: the least recently served tenant under its cap,
    its highest priority, then its oldest job."""
    running = {tenant_id: int(n) for tenant_id, n in session.execute(
        select(Job.tenant_id, func.count()).where(Job.status == "running")
        .group_by(Job.tenant_id))}
    waiting = session.execute(
        select(Tenant.id, Tenant.name)
        .where(Tenant.id.in_(select(Job.tenant_id).where(Job.status == "queued")))
        .order_by(Tenant.last_served_at.asc().nulls_first(), Tenant.id)).all()
    for tenant_id, name in waiting:
        cap = None if max_running is None else max_running.get(name, max_running.get(""))
        if cap is not None and running.get(tenant_id, 0) >= cap:
            continue
        job = session.scalars(
            select(Job).where(Job.tenant_id == tenant_id, Job.status == "queued")
            .order_by(Job.priority.desc(), Job.order_key, Job.id).limit(1)
            .with_for_update(skip_locked=True)).first()
        if job is not None:
            return job
    return None


def heartbeat(db: Database, lease: Lease, lease_s: float) -> str | None:
    """Renew the lease; return what the user asked of the job meanwhile (cancel, pause)."""
    with db.session() as session:
        job = _fenced(session, lease)
        job.lease_expires_at = time.time() + lease_s
        return job.requested


def add_event(db: Database, job_id: str, message: str, *, level: str = "info",
              type: str = "message", data: dict[str, Any] | None = None,
              lease: Lease | None = None, dedupe_key: str | None = None) -> None:
    """Append an event (fenced when a lease is given); an event with the ``dedupe_key`` of an
    earlier one replaces its message and data instead."""
    with db.session() as session:
        attempt = _fenced(session, lease).attempt if lease is not None else 0
        if dedupe_key is not None:
            existing = session.scalars(select(JobEvent).where(
                JobEvent.job_id == job_id, JobEvent.dedupe_key == dedupe_key)).first()
            if existing is not None:
                existing.message, existing.data, existing.attempt = message, data, attempt
                existing.level = level
                return
        _event(session, job_id, message, level=level, type=type, data=data, attempt=attempt,
               dedupe_key=dedupe_key)


def record_checkpoint(db: Database, lease: Lease, step: int, name: str, model_path: str,
                      metrics: dict[str, Any]) -> bool:
    """One row per checkpoint step (fenced); False if that step already has its row."""
    with db.session() as session:
        _fenced(session, lease)
        if session.scalars(select(JobCheckpoint).where(
                JobCheckpoint.job_id == lease.job_id, JobCheckpoint.step == step)).first():
            return False
        session.add(JobCheckpoint(id=new_id("ftckpt"), job_id=lease.job_id, step=step,
                                  name=name, model_path=model_path, metrics=metrics,
                                  attempt=lease.attempt, created_at=now()))
        return True


def finish_attempt(db: Database, lease: Lease, status: str, *,
                   error: dict[str, Any] | None = None, message: str | None = None,
                   level: str = "info", ran_s: float = 0.0, **fields: Any) -> str:
    """End the attempt (fenced): a final status, or ``paused`` / ``queued`` to go on later.
    ``ran_s`` (the attempt's wall time) is added to the job's ``run_s``; ``fields`` sets result
    columns (fine_tuned_model, trained_tokens, result_files). Returns the status the job has
    now: ``cancelled`` instead of ``paused`` or ``queued`` when a cancel is pending."""
    with db.session() as session:
        job = _fenced(session, lease)
        job.run_s = (job.run_s or 0.0) + ran_s
        for key, value in fields.items():
            setattr(job, key, value)
        if status in ("paused", "queued") and job.requested == "cancel":
            why = "paused" if status == "paused" else "stopped by its worker"
            _end(session, job, "cancelled")
            _event(session, job.id, f"Fine-tuning job cancelled: the cancellation requested "
                   f"while it was being {why} takes precedence", attempt=lease.attempt)
            return job.status
        if status in TERMINAL:
            _end(session, job, status, error)
        else:
            job.status, job.requested = status, None
            job.lease_owner = job.lease_expires_at = None
        if message:
            _event(session, job.id, message, level=level, attempt=lease.attempt)
        return job.status


def reap_expired(db: Database) -> list[str]:
    """Jobs whose worker stopped renewing its lease: back to the queue (the next attempt
    resumes from the last checkpoint), or failed once ``max_attempts`` leases were lost; a
    pending cancel or pause takes effect instead. Returns the ids it changed."""
    t = time.time()
    changed: list[str] = []
    with db.session() as session:
        expired = session.scalars(
            select(Job).where(Job.status.in_(("running", "validating_files")),
                              Job.lease_owner.is_not(None), Job.lease_expires_at < t)
            .with_for_update(skip_locked=True)).all()
        for job in expired:
            changed.append(job.id)
            owner = job.lease_owner
            if job.status == "validating_files":  # validation simply starts over
                job.lease_owner = job.lease_expires_at = None
                continue
            job.lost_leases += 1
            lost = (f"worker {owner} stopped renewing its lease on attempt {job.attempt}")
            if job.requested in ("cancel", "pause"):
                status = "cancelled" if job.requested == "cancel" else "paused"
                if status == "cancelled":
                    _end(session, job, status)
                else:
                    job.status, job.requested = status, None
                    job.lease_owner = job.lease_expires_at = None
                _event(session, job.id, f"{lost}; the job is {status}", level="warn")
            elif job.lost_leases >= job.max_attempts:
                error = {"code": "worker_lost", "param": None,
                         "message": f"{lost}; gave up after {job.lost_leases} lost attempts"}
                _end(session, job, "failed", error)
                _event(session, job.id, str(error["message"]), level="error")
            else:
                job.status, job.lease_owner, job.lease_expires_at = "queued", None, None
                _event(session, job.id, f"{lost}; queued again to resume from its last "
                                        "checkpoint", level="warn")
    return changed


# ------------------------------------------------------------------------------------ helpers


def _locked(session: Session, tenant_id: str | None, job_id: str) -> Job:
    job = session.get(Job, job_id, with_for_update=True)
    if job is None or (tenant_id is not None and job.tenant_id != tenant_id):
        raise NotFound(f"no fine-tuning job {job_id!r}")
    return job


def _fenced(session: Session, lease: Lease) -> Job:
    job = session.get(Job, lease.job_id, with_for_update=True)
    if (job is None or job.status != "running" or job.attempt != lease.attempt
            or job.lease_owner != lease.worker_id):
        held = "none" if job is None else f"attempt {job.attempt} ({job.status})"
        raise StaleAttempt(f"job {lease.job_id}: attempt {lease.attempt} of worker "
                           f"{lease.worker_id} no longer holds the lease (now: {held}); "
                           "its write was refused")
    return job


def _end(session: Session, job: Job, status: str, error: dict[str, Any] | None = None) -> None:
    job.status, job.error, job.requested = status, error, None
    job.lease_owner = job.lease_expires_at = None
    job.finished_at = now()


def _ended(status: str) -> str:
    return {"succeeded": "succeeded", "failed": "failed", "cancelled": "been cancelled"}[status]


def _event(session: Session, job_id: str, message: str, *, level: str = "info",
           type: str = "message", data: dict[str, Any] | None = None, attempt: int = 0,
           dedupe_key: str | None = None) -> None:
    session.add(JobEvent(job_id=job_id, created_at=now(), level=level, type=type,
                         message=message, data=data, attempt=attempt, dedupe_key=dedupe_key))


def file_row(db: Database, tenant_id: str | None, file_id: str) -> File:
    with db.session() as session:
        row = session.get(File, file_id)
        if row is None or (tenant_id is not None and row.tenant_id != tenant_id):
            raise NotFound(f"no file {file_id!r}")
        return row


def file_stored(db: Database, storage_name: str) -> bool:
    """Whether a file row names ``storage_name`` (its upload was committed)."""
    with db.session() as session:
        return session.scalar(select(File.id).where(File.storage_name == storage_name)
                              ) is not None


def add_file(db: Database, file_id: str, tenant_id: str, filename: str, purpose: str,
             size: int, storage_name: str, *, max_files: int | None = None,
             max_bytes: int | None = None) -> File:
    """Record a file already stored under ``storage_name``.

    With ``max_files`` / ``max_bytes``, the tenant's files are counted under its row lock in
    the same transaction, and a file that would pass either raises ``StoreFull``: uploads
    that arrive together cannot pass the quota together.
    """
    row = File(id=file_id, tenant_id=tenant_id, filename=filename, purpose=purpose, bytes=size,
               storage_name=storage_name, created_at=now())
    with db.session() as session:
        if max_files is not None or max_bytes is not None:
            session.execute(select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
            files, stored = session.execute(
                select(func.count(), func.coalesce(func.sum(File.bytes), 0))
                .where(File.tenant_id == tenant_id)).one()
            if max_files is not None and int(files) >= max_files:
                raise StoreFull("max_files", int(files), max_files)
            if max_bytes is not None and int(stored) + size > max_bytes:
                raise StoreFull("max_stored_mb", int(stored), max_bytes)
        session.add(row)
    return row
