"""Identity: users, groups, memberships, and grants of roles, attributes and clearance.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import secrets
import time

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("user_id", sa.String, primary_key=True),
        sa.Column("email", sa.String, nullable=False, unique=True),
        sa.Column("display_name", sa.String, nullable=True),
        sa.Column("external_id", sa.String, nullable=True),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "groups",
        sa.Column("group_id", sa.String, primary_key=True),
        sa.Column("name", sa.String, nullable=False, unique=True),
        sa.Column("external_id", sa.String, nullable=True),
        sa.Column("created_us", sa.BigInteger, nullable=False),
        sa.Column("updated_us", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "group_members",
        sa.Column("group_id", sa.String, primary_key=True),
        sa.Column("user_id", sa.String, primary_key=True),
    )
    op.create_index("ix_group_members_user", "group_members", ["user_id"])
    # kind: role | attribute | clearance. Principals are users or groups.
    op.create_table(
        "grants",
        sa.Column("principal_type", sa.String, primary_key=True),
        sa.Column("principal_id", sa.String, primary_key=True),
        sa.Column("kind", sa.String, primary_key=True),
        sa.Column("value", sa.String, primary_key=True),
    )
    # Every token's owner becomes a user, with no grants: access is given explicitly.
    bind = op.get_bind()
    subjects = [row[0] for row in bind.execute(sa.text("SELECT DISTINCT subject FROM api_tokens"))]
    now = int(time.time() * 1_000_000)
    for subject in subjects:
        bind.execute(
            sa.text(
                "INSERT INTO users (user_id, email, display_name, external_id, active, "
                "created_us, updated_us) VALUES (:id, :email, NULL, NULL, :active, :now, :now)"
            ),
            {
                "id": "usr_" + secrets.token_hex(8),
                "email": subject.lower(),
                "active": True,
                "now": now,
            },
        )


def downgrade() -> None:
    for name in ("grants", "group_members", "groups", "users"):
        op.drop_table(name)
