"""The transactional outbox: one row per created event and destination.

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_PENDING = "processed_us IS NULL AND dead_us IS NULL"


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("aggregate_id", sa.String, nullable=True),
        sa.Column("event_type", sa.String, nullable=False),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("destination", sa.String, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("next_attempt_us", sa.BigInteger, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.String, nullable=True),
        sa.Column("processed_us", sa.BigInteger, nullable=True),
        sa.Column("dead_us", sa.BigInteger, nullable=True),
    )
    op.create_index(
        "ix_outbox_pending",
        "outbox",
        ["next_attempt_us", "id"],
        postgresql_where=sa.text(_PENDING),
        sqlite_where=sa.text(_PENDING),
    )
    op.create_index("ix_outbox_processed", "outbox", ["processed_us"])


def downgrade() -> None:
    op.drop_table("outbox")
