"""Orchestrator projections: incidents, labels, alerts, correlation groups.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("incident_id", sa.String, primary_key=True),
        sa.Column("number", sa.BigInteger, nullable=True),
        sa.Column("title", sa.String, nullable=False),
        sa.Column("title_lower", sa.String, nullable=False),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("severity", sa.String, nullable=False),
        sa.Column("service", sa.String, nullable=True),
        sa.Column("commander", sa.String, nullable=True),
        sa.Column("classification", sa.String, nullable=False),
        sa.Column("parent_id", sa.String, nullable=True),
        sa.Column("declared_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
        sa.Column("last_position", sa.BigInteger, nullable=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_incidents_status_declared", "incidents", ["status", "declared_us"])
    op.create_index("ix_incidents_declared", "incidents", ["declared_us", "incident_id"])
    op.create_index("ix_incidents_parent", "incidents", ["parent_id"])
    op.create_table(
        "incident_labels",
        sa.Column("incident_id", sa.String, primary_key=True),
        sa.Column("label", sa.String, primary_key=True),
    )
    op.create_index("ix_incident_labels_label", "incident_labels", ["label"])
    op.create_table(
        "alerts",
        sa.Column("alert_key", sa.String, primary_key=True),
        sa.Column("incident_id", sa.String, nullable=True),
        sa.Column("status", sa.String, nullable=False),
        sa.Column("provider", sa.String, nullable=False),
        sa.Column("severity", sa.String, nullable=True),
        sa.Column("summary", sa.String, nullable=True),
        sa.Column("first_us", sa.BigInteger, nullable=False),
        sa.Column("last_us", sa.BigInteger, nullable=False),
        sa.Column("last_position", sa.BigInteger, nullable=False),
        sa.Column("state", sa.LargeBinary, nullable=False),
    )
    op.create_index("ix_alerts_incident", "alerts", ["incident_id", "status"])
    op.create_index("ix_alerts_status_last", "alerts", ["status", "last_us"])
    op.create_table(
        "correlation_groups",
        sa.Column("group_key", sa.String, primary_key=True),
        sa.Column("incident_id", sa.String, nullable=False),
        sa.Column("rule", sa.String, nullable=False),
        sa.Column("opened_us", sa.BigInteger, nullable=False),
        sa.Column("last_us", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_correlation_groups_incident", "correlation_groups", ["incident_id"])
    op.create_table(
        "projection_meta",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("value", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    for table in ("projection_meta", "correlation_groups", "alerts", "incident_labels"):
        op.drop_table(table)
    op.drop_table("incidents")
