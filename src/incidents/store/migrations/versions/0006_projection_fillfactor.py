"""Room on each page for the projection rows that are rewritten on every delivery.

An incident, its correlation groups and its chain tip are rewritten by every alert
delivery that touches it. With pages half empty PostgreSQL can keep the new version
on the same page without new index entries (a HOT update); full pages forced a
new index entry per rewrite. SQLite has no such setting.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TABLES = ("incidents", "correlation_groups", "chain_heads")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _TABLES:
        op.execute(f"ALTER TABLE {table} RESET (fillfactor)")
