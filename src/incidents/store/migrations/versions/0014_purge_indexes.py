"""Indexes for purges: outbox rows by their aggregate and position, alert rows by their
incident and last position, so a purge deletes what it covers without scanning either
table while it holds the log lock.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_aggregate_position", "outbox", ["aggregate_id", "position"])
    op.create_index("ix_alerts_incident_last", "alerts", ["incident_id", "last_position"])


def downgrade() -> None:
    op.drop_index("ix_alerts_incident_last", "alerts")
    op.drop_index("ix_outbox_aggregate_position", "outbox")
