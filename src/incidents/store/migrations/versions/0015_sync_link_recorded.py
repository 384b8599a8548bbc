"""ITSM sync: whether a link's ticket has been put on its incident's timeline.

A delivery records the link (the ``...:linked`` event) right after saving it; when
that record fails, the next delivery sees the flag unset and records it again. Links
made before this revision start unset: their next delivery records them once more,
which the event's deterministic id turns into a duplicate where it was recorded.

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("sync_links") as batch:
        batch.add_column(
            sa.Column("recorded", sa.Boolean, nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_links") as batch:
        batch.drop_column("recorded")
