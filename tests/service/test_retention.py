"""Deleting a job, and the retention sweep, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy import func, select, update

from preftune.service import queue, retention
from preftune.service.db import File, Job, JobCheckpoint, JobEvent
from preftune.service.limits import Retention
from preftune.service.queue import Conflict, NotFound

DAY = 86400


def _upload(db, store, tenant_id, purpose="fine-tune"):
    file_id = queue.new_id("file")
    with store.saving(file_id, [b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n'],
                      "d.jsonl", limit=1000) as (name, size):
        queue.add_file(db, file_id, tenant_id, "d.jsonl", purpose, size, name)
    return file_id


def _job(db, tenant_id, training_file="file-x", model="tiny"):
    job, _ = queue.enqueue(db, tenant_id=tenant_id, model=model, training_file=training_file,
                           validation_file=None, method={"type": "dpo"}, config={}, seed=1)
    queue.claim_validation(db, "v", 30)
    assert queue.finish_validation(db, job.id, "v", None)
    return job


def _succeeded(db, store, tenant_id, training_file="file-x", model="tiny"):
    """A job that ran: a checkpoint row, a run directory, a result file and a download."""
    job = _job(db, tenant_id, training_file, model)
    lease = queue.claim_run(db, "w", 30)
    assert lease.job_id == job.id
    queue.record_checkpoint(db, lease, 2, "step-2", "checkpoints/step-2/model", {})
    final = store.run_dir(job.id) / "final"
    final.mkdir(parents=True)
    (final / "model.safetensors").write_bytes(b"weights")
    results = _upload(db, store, tenant_id, purpose="fine-tune-results")
    queue.finish_attempt(db, lease, "succeeded", fine_tuned_model=f"ft:tiny:x:{job.id}",
                         result_files=[results])
    store.archive(final, f"{job.id}-final")
    return queue.get_job(db, None, job.id)


def _ended_days_ago(db, job_id, days):
    with db.session() as session:
        session.execute(update(Job).where(Job.id == job_id)
                        .values(finished_at=int(time.time() - days * DAY)))


def _count(db, table, **where):
    with db.session() as session:
        query = select(func.count()).select_from(table)
        for column, value in where.items():
            query = query.where(getattr(table, column) == value)
        return session.scalar(query)


def test_deleting_an_ended_job_removes_its_rows_files_and_bytes(db, store, keys):
    job = _succeeded(db, store, keys.alice_tenant)
    other = _succeeded(db, store, keys.alice_tenant)
    (result,) = job.result_files
    result_path = store.file_path(queue.file_row(db, None, result).storage_name)
    assert _count(db, JobEvent, job_id=job.id) and _count(db, JobCheckpoint, job_id=job.id)
    retention.delete_job(db, store, keys.alice_tenant, job.id)
    with pytest.raises(NotFound):
        queue.get_job(db, None, job.id)
    assert _count(db, JobEvent, job_id=job.id) == 0  # the foreign keys cascade
    assert _count(db, JobCheckpoint, job_id=job.id) == 0
    with pytest.raises(NotFound):
        queue.file_row(db, None, result)
    assert not result_path.exists() and not store.job_dir(job.id).exists()
    assert not list(store.downloads_dir.glob(f"{job.id}-*"))
    # the other job keeps everything
    assert queue.get_job(db, None, other.id).status == "succeeded"
    assert _count(db, JobEvent, job_id=other.id) and _count(db, JobCheckpoint, job_id=other.id)
    assert (store.run_dir(other.id) / "final").is_dir()
    assert (store.downloads_dir / f"{other.id}-final.tar.gz").is_file()
    queue.file_row(db, None, other.result_files[0])


def test_only_an_ended_job_of_ones_own_can_be_deleted(db, store, keys):
    queued = _job(db, keys.alice_tenant)
    with pytest.raises(Conflict, match=f"job {queued.id} is queued; only an ended job") as e:
        retention.delete_job(db, store, keys.alice_tenant, queued.id)
    assert "cancel it first" in e.value.hints[0]
    queue.claim_run(db, "w", 30)
    with pytest.raises(Conflict, match="is running"):
        retention.delete_job(db, store, keys.alice_tenant, queued.id)
    with pytest.raises(NotFound):
        retention.delete_job(db, store, keys.bob_tenant, queued.id)
    queue.request_cancel(db, keys.alice_tenant, queued.id)
    queue.finish_attempt(db, queue.Lease(queued.id, 1, "w"), "cancelled")
    retention.delete_job(db, store, keys.alice_tenant, queued.id)
    with pytest.raises(NotFound):
        retention.delete_job(db, store, keys.alice_tenant, queued.id)


def test_a_model_an_unfinished_job_trains_on_from_is_kept(db, store, keys):
    base = _succeeded(db, store, keys.alice_tenant)
    child = _job(db, keys.alice_tenant, model=base.fine_tuned_model)
    with pytest.raises(Conflict, match=f"which unfinished job {child.id} train on from"):
        retention.delete_job(db, store, keys.alice_tenant, base.id)
    _ended_days_ago(db, base.id, 100)
    assert retention.sweep(db, store, Retention(jobs_days=30))["jobs"] == 0
    assert (store.run_dir(base.id) / "final").is_dir()
    queue.request_cancel(db, keys.alice_tenant, child.id)
    assert retention.sweep(db, store, Retention(jobs_days=30))["jobs"] == 1
    with pytest.raises(NotFound):
        queue.get_job(db, None, base.id)


def test_sweep_deletes_old_ended_jobs_only(db, store, keys):
    old = _succeeded(db, store, keys.alice_tenant)
    recent = _succeeded(db, store, keys.bob_tenant)
    unfinished = _job(db, keys.alice_tenant)
    _ended_days_ago(db, old.id, 31)
    _ended_days_ago(db, recent.id, 29)
    assert retention.sweep(db, store, Retention()) == {"jobs": 0, "files": 0}
    assert retention.sweep(db, store, Retention(jobs_days=30)) == {"jobs": 1, "files": 0}
    with pytest.raises(NotFound):
        queue.get_job(db, None, old.id)
    assert not store.job_dir(old.id).exists()
    assert queue.get_job(db, None, recent.id).status == "succeeded"
    assert queue.get_job(db, None, unfinished.id).status == "queued"
    far_future = time.time() + 1000 * DAY
    assert retention.sweep(db, store, Retention(jobs_days=30), now=far_future)["jobs"] == 1
    assert queue.get_job(db, None, unfinished.id).status == "queued"  # never by age


def test_sweep_deletes_old_files_no_unfinished_job_reads(db, store, keys):
    read = _upload(db, store, keys.alice_tenant)
    free = _upload(db, store, keys.alice_tenant)
    young = _upload(db, store, keys.bob_tenant)
    done = _succeeded(db, store, keys.bob_tenant, training_file=free)  # an ended reader
    _job(db, keys.alice_tenant, training_file=read)
    with db.session() as session:
        session.execute(update(File).where(File.id.in_([read, free]))
                        .values(created_at=int(time.time() - 8 * DAY)))
    free_path = store.file_path(queue.file_row(db, None, free).storage_name)
    for file_id in (read, free):  # their validation reports, as GET .../report keeps them
        store.report_path(file_id).parent.mkdir(parents=True, exist_ok=True)
        store.report_path(file_id).write_text("{}")
    counts = retention.sweep(db, store, Retention(files_days=7))
    assert counts == {"jobs": 0, "files": 1}
    with pytest.raises(NotFound):
        queue.file_row(db, None, free)
    assert not free_path.exists() and not store.report_path(free).exists()
    assert store.report_path(read).exists()
    for kept in (read, young, *done.result_files):  # results go with their job, not by age
        assert store.file_path(queue.file_row(db, None, kept).storage_name).is_file()


def test_sweep_never_deletes_bytes_that_no_row_names(db, store, keys):
    """A service directory pointed at another (or a fresh) database keeps its data."""
    job = _succeeded(db, store, keys.alice_tenant)
    with db.session() as session:
        session.execute(Job.__table__.delete().where(Job.id == job.id))
    stray = store.files_dir / "file-0123456789abcdef01234567.jsonl"
    stray.write_text("{}\n")
    far_future = time.time() + 1000 * DAY
    assert retention.sweep(db, store, Retention(jobs_days=1, files_days=1),
                           now=far_future) == {"jobs": 0, "files": 0}
    assert store.job_dir(job.id).is_dir() and stray.is_file()


def test_a_deletion_that_fails_puts_the_bytes_back(db, store, keys, monkeypatch):
    job = _succeeded(db, store, keys.alice_tenant)
    result = store.file_path(queue.file_row(db, None, job.result_files[0]).storage_name)

    def broken(*args, **kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(retention, "delete", broken)
    with pytest.raises(RuntimeError):
        retention.delete_job(db, store, keys.alice_tenant, job.id)
    assert queue.get_job(db, None, job.id).status == "succeeded"
    assert (store.run_dir(job.id) / "final").is_dir() and result.is_file()
    assert not [p for p in store.root.rglob(".deleted-*")]


def test_what_a_crash_set_aside_is_removed_at_start(db, store, keys):
    """A crash after the bytes were set aside, before the row went: the row stays (delete
    it again), the bytes set aside are removed by clean_temporaries, and so are archives of a
    job whose directory is gone."""
    job = _succeeded(db, store, keys.alice_tenant)
    store.archive(store.run_dir(job.id) / "final", f"{job.id}-final")
    aside = store.set_aside(store.job_dir(job.id))
    assert aside is not None and aside.name.startswith(".deleted-")
    removed = store.clean_temporaries()
    assert aside in removed and not aside.exists()
    assert not list(store.downloads_dir.glob(f"{job.id}-*"))
    retention.delete_job(db, store, keys.alice_tenant, job.id)
    with pytest.raises(NotFound):
        queue.get_job(db, None, job.id)
    assert os.listdir(store.jobs_dir) == []
