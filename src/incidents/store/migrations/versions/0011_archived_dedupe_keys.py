"""The dedupe keys of archived events, so a re-delivery after archiving is a duplicate.

Filled from the chunks already archived (zlib-compressed JSON rows, see
``incidents.retention.archive_codec``; decoded here with the format as it stands at
this revision).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import json
import zlib

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql, sqlite

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Positions in an archived row (the timeline_events columns in table order).
_EVENT_ID, _SOURCE, _ORIGIN_ID, _RECORDED_BY, _VISIBILITY, _CONTENT_HASH = 2, 3, 7, 9, 10, 15


def upgrade() -> None:
    keys = op.create_table(
        "archived_dedupe_keys",
        sa.Column("source", sa.String, primary_key=True),
        sa.Column("dedupe_id", sa.String, primary_key=True),
        sa.Column("event_id", sa.String, nullable=False),
        sa.Column("incident_id", sa.String, nullable=False),
        sa.Column("content_hash", sa.LargeBinary, nullable=False),
        sa.Column("recorded_by", sa.String, nullable=False),
        sa.Column("visibility", sa.String, nullable=True),
    )
    op.create_index("ix_archived_dedupe_keys_incident", "archived_dedupe_keys", ["incident_id"])
    conn = op.get_bind()
    chunks = conn.execute(sa.text("SELECT incident_id, data FROM archived_events"))
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    # A key already recorded stays: before this revision an event sent again after its
    # incident was archived could be stored under another incident, so one key may sit
    # in two archives; the first recorded answers for it.
    fill = dialect.insert(keys).on_conflict_do_nothing()
    for incident_id, data in chunks.all():
        rows = json.loads(zlib.decompress(bytes(data)))
        found = {}
        for row in rows:
            # As incidents.events.envelope.dedupe_id_of: the origin id when there is one.
            dedupe_id = row[_ORIGIN_ID] if row[_ORIGIN_ID] is not None else row[_EVENT_ID]
            found[(row[_SOURCE], dedupe_id)] = {
                "source": row[_SOURCE],
                "dedupe_id": dedupe_id,
                "event_id": row[_EVENT_ID],
                "incident_id": incident_id,
                "content_hash": bytes.fromhex(row[_CONTENT_HASH]),
                "recorded_by": row[_RECORDED_BY],
                "visibility": row[_VISIBILITY],
            }
        if found:
            conn.execute(fill, list(found.values()))


def downgrade() -> None:
    op.drop_table("archived_dedupe_keys")
