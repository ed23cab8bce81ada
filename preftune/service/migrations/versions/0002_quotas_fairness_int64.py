"""64-bit integer columns; fair scheduling, priorities, idempotency hashes, run-time limits

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07

PostgreSQL's INTEGER is 32-bit: a job's trained tokens past 2**31 (or a file past 2 GiB)
overflowed it. Every integer column becomes BIGINT there; SQLite's INTEGER is 64-bit already,
so only the new columns are added on SQLite.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# table -> its integer columns (all of them, so that no count, size or time can overflow)
INTEGER_COLUMNS = {
    "tenants": ["created_at"],
    "api_keys": ["created_at", "revoked_at"],
    "files": ["bytes", "created_at"],
    "jobs": ["seed", "attempt", "lost_leases", "max_attempts", "trained_tokens",
             "created_at", "started_at", "finished_at"],
    "job_events": ["id", "created_at", "attempt"],
    "job_checkpoints": ["step", "attempt", "created_at"],
    "workers": ["pid"],
}


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, columns in INTEGER_COLUMNS.items():
            for column in columns:
                op.alter_column(table, column, type_=sa.BigInteger(),
                                existing_type=sa.Integer())
    op.add_column("tenants", sa.Column("last_served_at", sa.Float(), nullable=True))
    op.add_column("jobs", sa.Column("request_hash", sa.String(length=64), nullable=True))
    op.add_column("jobs", sa.Column("priority", sa.BigInteger().with_variant(
        sa.Integer(), "sqlite"), nullable=False, server_default="0"))
    op.add_column("jobs", sa.Column("integrations", sa.JSON(), nullable=True))
    op.add_column("jobs", sa.Column("max_run_s", sa.Float(), nullable=True))
    op.add_column("jobs", sa.Column("run_s", sa.Float(), nullable=False, server_default="0"))
    op.create_index("ix_jobs_status_tenant", "jobs", ["status", "tenant_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_status_tenant", table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        for column in ("run_s", "max_run_s", "integrations", "priority", "request_hash"):
            batch.drop_column(column)
    with op.batch_alter_table("tenants") as batch:
        batch.drop_column("last_served_at")
    if op.get_bind().dialect.name == "postgresql":
        for table, columns in INTEGER_COLUMNS.items():
            for column in columns:
                op.alter_column(table, column, type_=sa.Integer(),
                                existing_type=sa.BigInteger())
