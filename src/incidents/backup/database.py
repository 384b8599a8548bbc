"""What backup and restore need to know about a database: its tables, columns, revision."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, LargeBinary, column, inspect, table
from sqlalchemy.sql.expression import TableClause

from incidents.store.schema import metadata

# Reports progress: (table, rows done, rows in the table).
ProgressCallback = Callable[[str, int, int], None]

# Alembic's own bookkeeping: an archive records the revision in its manifest instead.
VERSION_TABLE = "alembic_version"
# The tables backup and restore touch. Others sharing the database (or PostgreSQL
# schema) are neither copied nor dropped.
KNOWN_TABLES = frozenset(metadata.tables)


@dataclass(frozen=True, slots=True)
class TableShape:
    """A table as the database has it: column names and types, primary key."""

    name: str
    columns: dict[str, Any]
    primary_key: tuple[str, ...]

    @property
    def binary(self) -> frozenset[str]:
        return frozenset(n for n, t in self.columns.items() if isinstance(t, LargeBinary))

    def clause(self, names: tuple[str, ...] | None = None) -> TableClause:
        """A lightweight table with the named columns (all by default), typed as stored."""
        return table(self.name, *(column(n, self.columns[n]) for n in names or self.columns))


def table_names(conn: Connection) -> list[str]:
    """The platform's tables present in the database, sorted."""
    return sorted(set(inspect(conn).get_table_names()) & KNOWN_TABLES)


def shape_of(conn: Connection, name: str) -> TableShape:
    # A fresh inspector: its cache would not see tables created since.
    inspector = inspect(conn)
    columns = {c["name"]: c["type"] for c in inspector.get_columns(name)}
    key = inspector.get_pk_constraint(name).get("constrained_columns") or list(columns)
    return TableShape(name, columns, tuple(key))


def current_revision(conn: Connection) -> str | None:
    return MigrationContext.configure(conn).get_current_revision()


def _config() -> Config:
    config = Config()
    location = resources.files("incidents.store") / "migrations"
    config.set_main_option("script_location", str(location))
    return config


def known_revisions() -> list[str]:
    """Every revision this build ships, oldest first."""
    scripts = ScriptDirectory.from_config(_config())
    return [s.revision for s in reversed(list(scripts.walk_revisions()))]


def upgrade(conn: Connection, revision: str) -> None:
    """Migrate to ``revision`` inside the caller's transaction on ``conn``."""
    config = _config()
    config.attributes["connection"] = conn
    command.upgrade(config, revision)
