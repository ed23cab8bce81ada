"""The job queue: every state change of a job, as one short transaction each.

States (as the OpenAI fine-tuning API names them, plus ``paused``)::

    validating_files -> queued -> running -> succeeded | failed | cancelled
                                   running -> paused -> queued (resume)

Claiming takes the oldest free job under a row lock: SQLite's ``BEGIN IMMEDIATE`` (see
``db.Database``) or PostgreSQL's ``FOR UPDATE SKIP LOCKED``, so two workers never claim the
same job. A claim grants a lease that heartbeats renew. Each claim to run raises the job's
``attempt``; every write a worker makes afterwards is *fenced*: it must name the attempt and
the lease owner the row holds, or it is refused with ``StaleAttempt``. A worker that dies
stops renewing; ``reap_expired`` then puts its job back in the queue (or fails it after
``max_attempts`` lost leases), and the next attempt resumes from the last durable checkpoint.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from preftune.errors import PreftuneError, UsageError
from preftune.service.db import (
    Database,
    File,
    Job,
    JobCheckpoint,
    JobEvent,
    Worker,
    now,
)

TERMINAL = ("succeeded", "failed", "cancelled")
STATUSES = ("validating_files", "queued", "running", "paused", *TERMINAL)


class NotFound(UsageError):
    """No such object for this tenant (another tenant's object is not found either)."""


class Conflict(UsageError):
    """The object exists but is in a state that does not allow the request."""


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
            idempotency_key: str | None = None,
            max_attempts: int = 3) -> tuple[Job, bool]:
    """A new job in ``validating_files``, or the job an earlier request with the same
    idempotency key created (then the second value is False)."""
    if idempotency_key is not None:
        existing = _by_idempotency_key(db, tenant_id, idempotency_key)
        if existing is not None:
            return existing, False
    job = Job(id=new_id("ftjob"), tenant_id=tenant_id, model=model, training_file=training_file,
              validation_file=validation_file, method=method, config=config, seed=seed,
              suffix=suffix, metadata_=metadata, idempotency_key=idempotency_key,
              status="validating_files", attempt=0, lost_leases=0, max_attempts=max_attempts,
              result_files=[], created_at=now(), order_key=time.time())
    try:
        with db.session() as session:
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
        return existing, False
    return job, True


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
    """The oldest job waiting for its files to be validated, leased to ``worker_id``."""
    t = time.time()
    with db.session() as session:
        job = session.scalars(
            select(Job).where(Job.status == "validating_files",
                              or_(Job.lease_owner.is_(None), Job.lease_expires_at < t))
            .order_by(Job.order_key, Job.id).limit(1)
            .with_for_update(skip_locked=True)).first()
        if job is None:
            return None
        job.lease_owner, job.lease_expires_at = worker_id, t + lease_s
        return job


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


def claim_run(db: Database, worker_id: str, lease_s: float) -> Lease | None:
    """The oldest queued job, now ``running`` under a new attempt leased to ``worker_id``."""
    t = time.time()
    with db.session() as session:
        job = session.scalars(select(Job).where(Job.status == "queued")
                              .order_by(Job.order_key, Job.id).limit(1)
                              .with_for_update(skip_locked=True)).first()
        if job is None:
            return None
        job.attempt += 1
        job.status, job.requested = "running", None
        job.lease_owner, job.lease_expires_at = worker_id, t + lease_s
        job.started_at = job.started_at or int(t)
        _event(session, job.id, f"Fine-tuning job started (attempt {job.attempt}, worker "
               f"{worker_id})", attempt=job.attempt)
        return Lease(job.id, job.attempt, worker_id)


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
                   level: str = "info", **fields: Any) -> None:
    """End the attempt (fenced): a final status, or ``paused`` / ``queued`` to go on later.
    ``fields`` sets result columns (fine_tuned_model, trained_tokens, result_files)."""
    with db.session() as session:
        job = _fenced(session, lease)
        for key, value in fields.items():
            setattr(job, key, value)
        if status in TERMINAL:
            _end(session, job, status, error)
        else:
            job.status, job.requested = status, None
            job.lease_owner = job.lease_expires_at = None
        if message:
            _event(session, job.id, message, level=level, attempt=lease.attempt)


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


def add_file(db: Database, file_id: str, tenant_id: str, filename: str, purpose: str,
             size: int, storage_name: str) -> File:
    """Record a file already stored under ``storage_name``."""
    row = File(id=file_id, tenant_id=tenant_id, filename=filename, purpose=purpose, bytes=size,
               storage_name=storage_name, created_at=now())
    with db.session() as session:
        session.add(row)
    return row
