"""ChatOps: incident channels per chat connector, and events already posted to chat.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chat_channels",
        sa.Column("connector", sa.String, primary_key=True),
        sa.Column("incident_id", sa.String, primary_key=True),
        sa.Column("channel_id", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=False),
        sa.Column("private", sa.Boolean, nullable=False),
        sa.Column("pinned_ts", sa.String, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
    )
    op.create_index(
        "uq_chat_channels_channel", "chat_channels", ["connector", "channel_id"], unique=True
    )
    op.create_table(
        "chat_deliveries",
        sa.Column("connector", sa.String, primary_key=True),
        sa.Column("event_id", sa.String, primary_key=True),
        sa.Column("delivered_us", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("chat_deliveries")
    op.drop_table("chat_channels")
