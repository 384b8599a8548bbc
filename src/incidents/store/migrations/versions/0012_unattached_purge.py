"""Purges of events of no incident: the append-only trigger also lets go of an event
without an incident that a purge tombstone of their chain (incident id '') covers.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_APPEND_ONLY = "timeline events are append-only"


def _covered(incident: str) -> str:
    return (
        "EXISTS (SELECT 1 FROM retention_tombstones t WHERE t.kind = 'purge' "
        f"AND t.incident_id = {incident} "
        "AND OLD.position BETWEEN t.first_position AND t.last_position) "
        "OR EXISTS (SELECT 1 FROM archived_events a WHERE a.incident_id = OLD.incident_id "
        "AND OLD.position BETWEEN a.first_position AND a.last_position)"
    )


# As revision 0007 wrote them, and the same with the chain of no incident ('').
_DELETE_COVERED_0007 = _covered("OLD.incident_id")
_DELETE_COVERED = _covered("coalesce(OLD.incident_id, '')")
_UPDATE_ERASURE = (
    "EXISTS (SELECT 1 FROM retention_tombstones t WHERE t.kind = 'erasure' "
    "AND t.incident_id = OLD.incident_id AND t.first_position = OLD.position) "
    "AND NEW.position = OLD.position AND NEW.hash = OLD.hash "
    "AND NEW.incident_id = OLD.incident_id"
)


def _install(delete_covered: str) -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE OR REPLACE FUNCTION timeline_events_append_only() RETURNS trigger AS $$
            BEGIN
                IF TG_OP = 'DELETE' AND ({delete_covered}) THEN
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
        return
    op.execute("DROP TRIGGER IF EXISTS timeline_events_no_delete")
    op.execute(
        "CREATE TRIGGER timeline_events_no_delete BEFORE DELETE ON timeline_events "
        f"WHEN NOT ({delete_covered}) "
        f"BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
    )


def upgrade() -> None:
    _install(_DELETE_COVERED)


def downgrade() -> None:
    _install(_DELETE_COVERED_0007)
