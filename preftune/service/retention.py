"""Deleting what tenants no longer need: an ended job on request, and old jobs and files by
the operator's retention policy (``limits.Retention``).

A row is deleted before its bytes. A crash in between leaves bytes that no row names, which
the next ``sweep`` removes as orphans; never a row whose bytes are gone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import delete, exists, or_, select
from sqlalchemy.orm import Session

from preftune.service.db import Database, File, Job
from preftune.service.limits import Retention
from preftune.service.queue import TERMINAL, Conflict, NotFound
from preftune.service.store import Store

DAY_S = 86400.0
RESULTS = "fine-tune-results"  # a job's own files: deleted with the job, not by age
# Bytes without a row are orphans only after this long: an upload's bytes are renamed into
# place a moment before its row is written.
ORPHAN_GRACE_S = 3600.0


def delete_job(db: Database, store: Store, tenant_id: str | None, job_id: str) -> None:
    """Delete an ended job: its row (its events and checkpoints cascade), its result files
    and their bytes, its job directory and its download archives.

    Refused with ``Conflict`` while the job is unfinished, or while an unfinished job of the
    tenant trains on from its fine-tuned model (that job reads the model's directory).
    """
    with db.session() as session:
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
        storage_names = [row.storage_name for row in results]
        session.execute(delete(File).where(File.id.in_([row.id for row in results])))
        session.execute(delete(Job).where(Job.id == job_id))
    for name in storage_names:
        store.delete(name)
    store.delete_job_dir(job_id)


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
    """Delete what the retention policy lets go, and the bytes no row names.

    Ended jobs go ``jobs_days`` after they ended (as ``delete_job``; one that an unfinished
    job trains on from stays until that job ends); uploaded files go ``files_days`` after
    upload once no unfinished job reads them. Returns the counts: ``jobs``, ``files`` and
    ``orphans`` (job directories, archives and files without a row).
    """
    t = time.time() if now is None else now
    counts = {"jobs": 0, "files": 0, "orphans": 0}
    if retention.jobs_days is not None:
        for job_id in _ended_before(db, t - retention.jobs_days * DAY_S):
            try:
                delete_job(db, store, None, job_id)
            except (Conflict, NotFound):  # a base of an unfinished job; deleted meanwhile
                continue
            counts["jobs"] += 1
    if retention.files_days is not None:
        counts["files"] = _delete_files_before(db, store, t - retention.files_days * DAY_S)
    counts["orphans"] = _delete_orphans(db, store, t - ORPHAN_GRACE_S)
    return counts


def _ended_before(db: Database, cutoff: float) -> list[str]:
    with db.session() as session:
        return list(session.scalars(select(Job.id).where(
            Job.status.in_(TERMINAL), Job.finished_at < cutoff).order_by(Job.finished_at)))


def _delete_files_before(db: Database, store: Store, cutoff: float) -> int:
    """Uploaded files older than ``cutoff`` that no unfinished job reads: rows, then bytes."""
    read = select(Job.id).where(or_(Job.training_file == File.id,
                                    Job.validation_file == File.id),
                                Job.status.not_in(TERMINAL))
    with db.session() as session:
        rows = session.scalars(select(File).where(
            File.created_at < cutoff, File.purpose != RESULTS, ~exists(read))
            .with_for_update(skip_locked=True)).all()
        storage_names = [row.storage_name for row in rows]
        session.execute(delete(File).where(File.id.in_([row.id for row in rows])))
    for name in storage_names:
        store.delete(name)
    return len(storage_names)


def _delete_orphans(db: Database, store: Store, cutoff: float) -> int:
    """Job directories, archives and files older than ``cutoff`` whose row is gone."""
    removed = 0
    with db.session() as session:
        job_ids = set(session.scalars(select(Job.id)))
        storage_names = set(session.scalars(select(File.storage_name)))
    for job_id in sorted(store.job_ids_on_disk() - job_ids):
        if _older(store.job_dir(job_id), cutoff) and all(
                _older(p, cutoff) for p in store.downloads_dir.glob(f"{job_id}-*")):
            store.delete_job_dir(job_id)
            removed += 1
    for path in _entries(store.files_dir):
        if path.name not in storage_names and _older(path, cutoff):
            store.delete(path.name)
            removed += 1
    return removed


def _entries(directory: Path) -> Iterator[Path]:
    """The entries of ``directory`` a row would name (no temporaries: they start with '.')."""
    if directory.is_dir():
        yield from (p for p in directory.iterdir() if not p.name.startswith("."))


def _older(path: Path, cutoff: float) -> bool:
    """Whether ``path`` was last changed before ``cutoff`` (a path that is gone is)."""
    try:
        return path.lstat().st_mtime < cutoff
    except FileNotFoundError:
        return True
