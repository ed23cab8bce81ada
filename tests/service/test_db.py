"""The migrations build exactly the tables the models describe, on SQLite and PostgreSQL."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from preftune.service.db import Base, Database
from preftune.service.migrate import current, head, upgrade


def test_migrations_match_the_models(db):
    assert current(db.engine) == head()
    with db.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []


def test_migrating_twice_is_harmless(database_url):
    database = Database(database_url)
    try:
        upgrade(database.engine)
        upgrade(database.engine)
        assert current(database.engine) == head()
    finally:
        database.dispose()


def _running_job(db, tenant_id):
    from preftune.service import queue

    job, _ = queue.enqueue(db, tenant_id=tenant_id, model="tiny", training_file="file-x",
                           validation_file=None, method={"type": "dpo"}, config={}, seed=1)
    queue.claim_validation(db, "v", 30)
    queue.finish_validation(db, job.id, "v", None)
    return job, queue.claim_run(db, "w", 30)


def test_counts_past_32_bits_are_stored(db):
    """3e9 trained tokens and a 3 GiB file overflowed PostgreSQL's INTEGER columns."""
    from preftune.service import queue
    from preftune.service.auth import ensure_tenant

    tenant = ensure_tenant(db, "team-a")
    job, lease = _running_job(db, tenant)
    queue.finish_attempt(db, lease, "succeeded", trained_tokens=3 * 10**9)
    row = queue.get_job(db, None, job.id)
    assert (row.status, row.trained_tokens) == ("succeeded", 3 * 10**9)
    file_id = queue.new_id("file")
    queue.add_file(db, file_id, tenant, "big.jsonl", "fine-tune", 3 * 2**30, "big.jsonl")
    assert queue.file_row(db, tenant, file_id).bytes == 3 * 2**30


def test_upgrading_from_0001_keeps_rows_and_widens_integers(database_url):
    """A database made at revision 0001 (32-bit integers on PostgreSQL) with a job in it:
    after the upgrade the job is still there and takes 64-bit values."""
    from sqlalchemy import text

    from preftune.service import queue

    database = Database(database_url)
    try:
        upgrade(database.engine, "0001")
        with database.engine.begin() as connection:
            connection.execute(text(
                "INSERT INTO tenants (id, name, created_at) VALUES ('org-1', 'team-a', 1)"))
            connection.execute(text(
                "INSERT INTO jobs (id, tenant_id, model, training_file, method, config, seed, "
                "status, attempt, lost_leases, max_attempts, result_files, created_at, "
                "order_key) VALUES ('ftjob-old', 'org-1', 'tiny', 'file-x', '{}', '{}', 7, "
                "'running', 1, 0, 3, '[]', 1, 1.0)"))
        upgrade(database.engine)
        assert current(database.engine) == head()
        old = queue.get_job(database, None, "ftjob-old")
        assert (old.status, old.seed, old.priority, old.run_s) == ("running", 7, 0, 0.0)
        with database.session() as session:
            session.execute(text("UPDATE jobs SET trained_tokens = :n WHERE id = 'ftjob-old'"),
                            {"n": 3 * 10**9})
        assert queue.get_job(database, None, "ftjob-old").trained_tokens == 3 * 10**9
        job, lease = _running_job(database, "org-1")
        queue.finish_attempt(database, lease, "succeeded", trained_tokens=3 * 10**9)
        assert queue.get_job(database, None, job.id).trained_tokens == 3 * 10**9
    finally:
        database.dispose()
