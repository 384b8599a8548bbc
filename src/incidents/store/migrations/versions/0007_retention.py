"""Retention: signed tombstones, the compressed archive, and the legal-hold index.

The append-only triggers of 0001 are replaced by ones that still refuse every
UPDATE and DELETE of a timeline event, except a DELETE of an event a purge tombstone
or an archive chunk covers, and an UPDATE an erasure tombstone names that keeps the
event's position and chain links.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_APPEND_ONLY = "timeline events are append-only"
HOLD_TYPES = "('im.retention.hold.place', 'im.retention.hold.release')"

# SQL conditions on OLD/NEW shared by both backends' triggers.
_DELETE_COVERED = (
    "EXISTS (SELECT 1 FROM retention_tombstones t WHERE t.kind = 'purge' "
    "AND t.incident_id = OLD.incident_id "
    "AND OLD.position BETWEEN t.first_position AND t.last_position) "
    "OR EXISTS (SELECT 1 FROM archived_events a WHERE a.incident_id = OLD.incident_id "
    "AND OLD.position BETWEEN a.first_position AND a.last_position)"
)
_UPDATE_ERASURE = (
    "EXISTS (SELECT 1 FROM retention_tombstones t WHERE t.kind = 'erasure' "
    "AND t.incident_id = OLD.incident_id AND t.first_position = OLD.position) "
    "AND NEW.position = OLD.position AND NEW.hash = OLD.hash "
    "AND NEW.incident_id = OLD.incident_id"
)


def upgrade() -> None:
    op.create_table(
        "retention_tombstones",
        sa.Column("tombstone_id", sa.String, primary_key=True),
        sa.Column("kind", sa.String, nullable=False),
        sa.Column("incident_id", sa.String, nullable=False),
        sa.Column("rule", sa.String, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("first_position", sa.BigInteger, nullable=False),
        sa.Column("last_position", sa.BigInteger, nullable=False),
        sa.Column("event_count", sa.BigInteger, nullable=False),
        sa.Column("chain_tip", sa.LargeBinary, nullable=False),
        sa.Column("detail", sa.LargeBinary, nullable=False),
        sa.Column("signature", sa.LargeBinary, nullable=False),
    )
    op.create_index(
        "ix_retention_tombstones_incident",
        "retention_tombstones",
        ["incident_id", "first_position"],
    )
    op.create_table(
        "archived_events",
        sa.Column("incident_id", sa.String, primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("first_position", sa.BigInteger, nullable=False),
        sa.Column("last_position", sa.BigInteger, nullable=False),
        sa.Column("events", sa.Integer, nullable=False),
        sa.Column("archived_us", sa.BigInteger, nullable=False),
        sa.Column("last_time_us", sa.BigInteger, nullable=False),
        sa.Column("rule", sa.String, nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "archived_event_ids",
        sa.Column("event_id", sa.String, primary_key=True),
        sa.Column("source", sa.String, primary_key=True),
        sa.Column("incident_id", sa.String, nullable=False),
    )
    op.create_index("ix_archived_event_ids_incident", "archived_event_ids", ["incident_id"])
    # Partial: only hold events are indexed, so appends of anything else pay nothing.
    op.execute(
        "CREATE INDEX ix_timeline_events_holds ON timeline_events (incident_id, position) "
        f"WHERE type IN {HOLD_TYPES}"
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION timeline_events_append_only() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'DELETE' AND ({_DELETE_COVERED}) THEN
                    RETURN OLD;
                END IF;
                IF TG_OP = 'UPDATE' AND ({_UPDATE_ERASURE}) THEN
                    RETURN NEW;
                END IF;
                RAISE EXCEPTION '{_APPEND_ONLY}';
            END;
            $$ LANGUAGE plpgsql
            """
        )
    else:
        op.execute("DROP TRIGGER IF EXISTS timeline_events_no_update")
        op.execute("DROP TRIGGER IF EXISTS timeline_events_no_delete")
        op.execute(
            "CREATE TRIGGER timeline_events_no_update BEFORE UPDATE ON timeline_events "
            f"WHEN NOT ({_UPDATE_ERASURE}) "
            f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
        )
        op.execute(
            "CREATE TRIGGER timeline_events_no_delete BEFORE DELETE ON timeline_events "
            f"WHEN NOT ({_DELETE_COVERED}) "
            f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION timeline_events_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '{_APPEND_ONLY}';
            END;
            $$ LANGUAGE plpgsql
            """
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(f"DROP TRIGGER IF EXISTS timeline_events_no_{action.lower()}")
            op.execute(
                f"CREATE TRIGGER timeline_events_no_{action.lower()} BEFORE {action} "
                f"ON timeline_events BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
            )
    op.execute("DROP INDEX IF EXISTS ix_timeline_events_holds")
    op.drop_table("archived_event_ids")
    op.drop_table("archived_events")
    op.drop_table("retention_tombstones")
