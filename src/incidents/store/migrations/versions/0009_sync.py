"""ITSM sync: ticket links, the write ledger, the conflict queue, poll cursors.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "sync_links",
        sa.Column("connector", sa.String, primary_key=True),
        sa.Column("incident_id", sa.String, primary_key=True),
        sa.Column("external_id", sa.String, nullable=False, server_default=""),
        sa.Column("external_key", sa.String, nullable=False, server_default=""),
        sa.Column("url", sa.String, nullable=True),
        sa.Column("base", sa.String, nullable=False, server_default="{}"),
        sa.Column("seen_version", sa.BigInteger, nullable=False, server_default="-1"),
        sa.Column("written_version", sa.BigInteger, nullable=False, server_default="-1"),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("synced_us", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.create_index("ix_sync_links_external", "sync_links", ["connector", "external_id"])
    op.create_index("ix_sync_links_incident", "sync_links", ["incident_id"])
    op.create_table(
        "sync_ledger",
        sa.Column("connector", sa.String, primary_key=True),
        sa.Column("key", sa.String, primary_key=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "sync_conflicts",
        sa.Column("id", sa.String, primary_key=True),
        sa.Column("connector", sa.String, nullable=False),
        sa.Column("incident_id", sa.String, nullable=False),
        sa.Column("field", sa.String, nullable=False),
        sa.Column("ours", sa.String, nullable=True),
        sa.Column("theirs", sa.String, nullable=True),
        sa.Column("base", sa.String, nullable=True),
        sa.Column("reason", sa.String, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("resolved_us", sa.BigInteger, nullable=True),
        sa.Column("resolution", sa.String, nullable=True),
        sa.Column("resolved_value", sa.String, nullable=True),
        sa.Column("resolved_by", sa.String, nullable=True),
    )
    op.create_index("ix_sync_conflicts_link", "sync_conflicts", ["connector", "incident_id"])
    op.create_table(
        "sync_polls",
        sa.Column("connector", sa.String, primary_key=True),
        sa.Column("cursor_us", sa.BigInteger, nullable=True),
        sa.Column("polled_us", sa.BigInteger, nullable=False),
        sa.Column("last_error", sa.String, nullable=True),
    )


def downgrade() -> None:
    for table in ("sync_polls", "sync_conflicts", "sync_ledger", "sync_links"):
        op.drop_table(table)
