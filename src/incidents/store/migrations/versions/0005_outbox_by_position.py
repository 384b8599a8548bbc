"""Outbox rows point at their event instead of carrying a copy of it.

New rows leave ``payload`` empty: the relay renders the CloudEvent from the stored
event (by ``position``) when it delivers. Rows written before keep their payload.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("outbox") as batch:
        batch.alter_column("payload", existing_type=sa.LargeBinary, nullable=True)


def downgrade() -> None:
    # Rows written since carry no payload; a downgrade would have to render them.
    raise NotImplementedError("outbox rows written since 0005 have no payload to restore")
