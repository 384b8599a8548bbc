"""The timeline: events, log head, chain heads, API tokens, instance secrets.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_APPEND_ONLY = "timeline events are append-only"


def upgrade() -> None:
    op.create_table(
        "timeline_events",
        sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("incident_id", sa.String, nullable=True),
        sa.Column("event_id", sa.String, nullable=False),
        sa.Column("source", sa.String, nullable=False),
        sa.Column("type", sa.String, nullable=False),
        sa.Column("subject", sa.String, nullable=True),
        sa.Column("time_us", sa.BigInteger, nullable=False),
        sa.Column("origin_id", sa.String, nullable=True),
        sa.Column("actor", sa.String, nullable=False),
        sa.Column("recorded_by", sa.String, nullable=False),
        sa.Column("visibility", sa.String, nullable=True),
        sa.Column("correlation_key", sa.String, nullable=True),
        sa.Column("fingerprint", sa.String, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("body", sa.LargeBinary, nullable=False),
        sa.Column("content_hash", sa.LargeBinary, nullable=False),
        sa.Column("prev_hash", sa.LargeBinary, nullable=True),
        sa.Column("hash", sa.LargeBinary, nullable=False),
    )
    op.create_index(
        "uq_timeline_events_dedupe",
        "timeline_events",
        ["source", sa.text("coalesce(origin_id, event_id)")],
        unique=True,
    )
    op.create_index(
        "ix_timeline_events_incident_time",
        "timeline_events",
        ["incident_id", "time_us", "position"],
    )
    op.create_index(
        "ix_timeline_events_incident_position", "timeline_events", ["incident_id", "position"]
    )
    op.create_index("ix_timeline_events_event_id", "timeline_events", ["event_id"])

    op.create_table(
        "log_head",
        sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("position", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO log_head (id, position) VALUES (1, 0)")

    op.create_table(
        "chain_heads",
        sa.Column("chain_key", sa.String, primary_key=True),
        sa.Column("last_position", sa.BigInteger, nullable=False),
        sa.Column("last_hash", sa.LargeBinary, nullable=False),
        sa.Column("event_count", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "api_tokens",
        sa.Column("token_id", sa.String, primary_key=True),
        sa.Column("subject", sa.String, nullable=False),
        sa.Column("name", sa.String, nullable=True),
        sa.Column("token_hash", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("revoked_us", sa.BigInteger, nullable=True),
    )
    op.create_table(
        "instance_secrets",
        sa.Column("name", sa.String, primary_key=True),
        sa.Column("value", sa.LargeBinary, nullable=False),
    )

    # The database itself refuses to rewrite history, whatever code talks to it.
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            f"""
            CREATE FUNCTION timeline_events_append_only() RETURNS trigger AS $$
            BEGIN
                RAISE EXCEPTION '{_APPEND_ONLY}';
            END;
            $$ LANGUAGE plpgsql
            """
        )
        op.execute(
            "CREATE TRIGGER timeline_events_append_only BEFORE UPDATE OR DELETE "
            "ON timeline_events FOR EACH ROW EXECUTE FUNCTION timeline_events_append_only()"
        )
    else:
        for action in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER timeline_events_no_{action.lower()} BEFORE {action} "
                f"ON timeline_events BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER IF EXISTS timeline_events_append_only ON timeline_events")
        op.execute("DROP FUNCTION IF EXISTS timeline_events_append_only()")
    for name in ("instance_secrets", "api_tokens", "chain_heads", "log_head", "timeline_events"):
        op.drop_table(name)
