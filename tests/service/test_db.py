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
