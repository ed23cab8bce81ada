"""Deleting what tenants no longer need: an ended job on request, and old jobs and files by
the operator's retention policy (``limits.Retention``).

Bytes are set aside (renamed, ``Store.set_aside``) before their row is deleted and put back if
the deletion fails, so a crash leaves no bytes that no row names; ``Store.clean_temporaries``
removes what was set aside. Nothing here deletes bytes by looking for ones without a row: a
service directory pointed at the wrong database keeps its data.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import delete, exists, func, or_, select
from sqlalchemy.orm import Session

from preftune.service.db import Database, File, Job
from preftune.service.limits import Retention
from preftune.service.queue import TERMINAL, Conflict, NotFound
from preftune.service.store import Store

DAY_S = 86400.0
RESULTS = "fine-tune-results"  # a job's own files: deleted with the job, not by age


def delete_job(db: Database, store: Store, tenant_id: str | None, job_id: str) -> None:
    """Delete an ended job: its row (its events and checkpoints cascade), its result files
    and their bytes, its job directory and its download archives.

    Refused with ``Conflict`` while the job is unfinished, or while an unfinished job of the
    tenant trains on from its fine-tuned model (that job reads the model's directory).
    """
    deletion = _Deletion(db, store)
    with deletion.session() as session:
        job = session.get(Job, job_id, with_for_update=True)
        if job is None or (tenant_id is not None and job.tenant_id != tenant_id):
            raise NotFound(f"no fine-tuning job {job_id!r}")
        if job.status not in TERMINAL:
            raise Conflict(f"job {job_id} is {job.status}; only an ended job (succeeded, "
                           "failed or cancelled) can be deleted",
                           [f"cancel it first (POST /v1/fine_tuning/jobs/{job_id}/cancel), "
                            "then delete it once it has ended"])
        _refuse_if_a_base(session, job)
        results = session.scalars(select(File).where(
            File.id.in_(job.result_files or []), File.tenant_id == job.tenant_id,
            File.purpose == RESULTS)).all()
        deletion.aside([store.job_dir(job_id)]
                       + [store.file_path(row.storage_name) for row in results])
        session.execute(delete(File).where(File.id.in_([row.id for row in results])))
        session.execute(delete(Job).where(Job.id == job_id))
    store.delete_archives(job_id)


class _Deletion:
    """One transaction that deletes rows, and the bytes ``aside`` set aside for them: the
    bytes go once the transaction has committed, and come back if it fails."""

    def __init__(self, db: Database, store: Store) -> None:
        self.db, self.store = db, store
        self.moved: list[tuple[Path, Path]] = []

    def aside(self, paths: list[Path]) -> None:
        for path in paths:
            aside = self.store.set_aside(path)
            if aside is not None:
                self.moved.append((path, aside))

    @contextmanager
    def session(self) -> Iterator[Session]:
        try:
            with self.db.session() as session:  # commits as the block ends: inside the try
                yield session
        except BaseException:
            for path, aside in reversed(self.moved):
                os.replace(aside, path)
            raise
        for _, aside in self.moved:
            self.store.discard(aside)


def _refuse_if_a_base(session: Session, job: Job) -> None:
    if job.fine_tuned_model is None:
        return
    users = session.scalars(select(Job.id).where(
        Job.tenant_id == job.tenant_id, Job.model == job.fine_tuned_model,
        Job.status.not_in(TERMINAL)).order_by(Job.id).limit(3)).all()
    if users:
        raise Conflict(f"job {job.id} made {job.fine_tuned_model}, which unfinished job"
                       f"{'s' if len(users) > 1 else ''} {', '.join(users)} "
                       "train on from",
                       ["delete it once those jobs have ended, or cancel them first"])


def sweep(db: Database, store: Store, retention: Retention,
          now: float | None = None) -> dict[str, int]:
    """Delete what the retention policy lets go.

    Ended jobs go ``jobs_days`` after they ended (as ``delete_job``; one that an unfinished
    job trains on from stays until that job ends); uploaded files go ``files_days`` after
    upload once no unfinished job reads them. Returns the counts: ``jobs`` and ``files``.
    """
    t = time.time() if now is None else now
    counts = {"jobs": 0, "files": 0}
    if retention.jobs_days is not None:
        for job_id in _ended_before(db, t - retention.jobs_days * DAY_S):
            try:
                delete_job(db, store, None, job_id)
            except (Conflict, NotFound):  # a base of an unfinished job; deleted meanwhile
                continue
            counts["jobs"] += 1
    if retention.files_days is not None:
        counts["files"] = _delete_files_before(db, store, t - retention.files_days * DAY_S)
    return counts


def _ended_before(db: Database, cutoff: float) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(Job.id).where(
            Job.status.in_(TERMINAL), Job.finished_at < cutoff).order_by(Job.finished_at)))


def _delete_files_before(db: Database, store: Store, cutoff: float) -> int:
    """Uploaded files older than ``cutoff`` that no unfinished job reads: bytes set aside,
    rows deleted, then the bytes."""
    read = select(Job.id).where(or_(Job.training_file == File.id,
                                    Job.validation_file == File.id),
                                Job.status.not_in(TERMINAL))
    deletion = _Deletion(db, store)
    with deletion.session() as session:
        rows = session.scalars(select(File).where(
            File.created_at < cutoff, File.purpose != RESULTS, ~exists(read))
            .with_for_update(skip_locked=True)).all()
        deletion.aside([store.file_path(row.storage_name) for row in rows])
        session.execute(delete(File).where(File.id.in_([row.id for row in rows])))
    for row in rows:
        store.report_path(row.id).unlink(missing_ok=True)
    return len(rows)


def delete_file(db: Database, store: Store, tenant_id: str, file_id: str) -> None:
    """Delete a file no unfinished job reads (``Conflict`` otherwise): its row and bytes."""
    deletion = _Deletion(db, store)
    with deletion.session() as session:
        row = session.get(File, file_id, with_for_update=True)
        if row is None or row.tenant_id != tenant_id:
            raise NotFound(f"no file {file_id!r}")
        users = session.scalar(select(func.count()).select_from(Job).where(
            or_(Job.training_file == file_id, Job.validation_file == file_id),
            Job.status.not_in(TERMINAL))) or 0
        if users:
            raise Conflict(f"file {file_id} is read by {users} unfinished fine-tuning "
                           f"job{'s' if users > 1 else ''}",
                           ["cancel those jobs, or delete the file once they have ended"])
        deletion.aside([store.file_path(row.storage_name)])
        session.execute(delete(File).where(File.id == file_id))
    store.report_path(file_id).unlink(missing_ok=True)


