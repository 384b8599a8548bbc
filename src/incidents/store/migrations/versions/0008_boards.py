"""Status boards: one projection row per incident.

The table starts empty; the build marker is removed so that the next server start
rebuilds every projection from the log, boards included.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "boards",
        sa.Column("incident_id", sa.String(), primary_key=True),
        sa.Column("last_position", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Rewritten by every event of its incident: room for HOT updates (see 0006).
        op.execute("ALTER TABLE boards SET (fillfactor = 50)")
    op.execute("DELETE FROM projection_meta WHERE name = 'built'")


def downgrade() -> None:
    op.drop_table("boards")
