"""Service fixtures: a migrated database (SQLite, and PostgreSQL under the ``postgres``
marker), a file store, and API keys of two tenants.

PostgreSQL tests run against PREFTUNE_TEST_POSTGRES_URL (default: the local server's ``test``
database); each test gets a schema of its own, dropped afterwards.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass

import pytest

from preftune.service.db import Database
from preftune.service.store import Store

POSTGRES_URL = os.environ.get("PREFTUNE_TEST_POSTGRES_URL",
                              "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def postgres_url():
    """A fresh schema in the test database; the URL selects it through search_path."""
    import psycopg

    schema = f"preftune_{secrets.token_hex(6)}"
    conninfo = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    sep = "&" if "?" in POSTGRES_URL else "?"
    yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request, tmp_path):
    """Each test that takes this runs twice: on a SQLite file and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'service.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def db(database_url):
    database = Database(database_url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def store(tmp_path):
    return Store(tmp_path / "service")


@dataclass
class Keys:
    alice: str  # tenant team-a
    bob: str  # tenant team-b
    alice_tenant: str
    bob_tenant: str


@pytest.fixture
def keys(db):
    from preftune.service.auth import create_key

    a, alice = create_key(db, "alice", "team-a")
    b, bob = create_key(db, "bob", "team-b")
    return Keys(alice, bob, a.tenant_id, b.tenant_id)


@pytest.fixture
def client(db, store):
    """The API app without its lifespan (no ``with``): no validator thread moves jobs on
    behind the test's back."""
    from fastapi.testclient import TestClient

    from preftune.service.app import create_app

    return TestClient(create_app(db, store))


def wait_for_job(client, job_id: str, statuses: tuple[str, ...], timeout_s: float,
                 poll_s: float = 0.5):
    """Poll an ``openai`` client until the job is in one of ``statuses``; fail after
    ``timeout_s`` naming the status it was still in."""
    import time

    deadline = time.monotonic() + timeout_s
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.status}"
        time.sleep(poll_s)


@pytest.fixture(scope="session")
def wait_job():
    """``wait_job(client, job_id, statuses, timeout_s)``: the job once it reaches a status."""
    return wait_for_job
