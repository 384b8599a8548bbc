"""Reading and writing projection rows inside an append transaction.

Projections are updated in the same transaction as the events they fold, on the
writer's own connection; this adapter is the little SQL that needs, written once for
both backends (only the placeholder style differs).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import BigInteger, Integer, LargeBinary, Table

from incidents.store.schema import (
    alerts,
    boards,
    correlation_groups,
    incident_labels,
    incidents,
    projection_meta,
)

PROJECTION_TABLES: dict[str, Table] = {
    t.name: t
    for t in (incidents, incident_labels, alerts, correlation_groups, boards, projection_meta)
}


def _pg_type(column: Any) -> str:
    """The PostgreSQL type of a column's values (binary parameters and binary COPY
    need the exact type)."""
    if isinstance(column.type, BigInteger):
        return "int8"
    if isinstance(column.type, Integer):
        return "int4"
    if isinstance(column.type, LargeBinary):
        return "bytea"
    return "text"


def _clean(value: Any) -> Any:
    # PostgreSQL text cannot hold NUL; JSON (and so an event) can. The event keeps it,
    # the projection shows U+FFFD, on both backends alike.
    if isinstance(value, str) and "\x00" in value:
        return value.replace("\x00", "\ufffd")
    return value


def _text_positions(table: Table) -> tuple[int, ...]:
    return tuple(i for i, c in enumerate(table.columns) if _pg_type(c) == "text")


# Where each projection table has text: the only columns that can hold a NUL.
_TEXT_AT = {name: _text_positions(t) for name, t in PROJECTION_TABLES.items()}


def _clean_rows(table: str, rows: Sequence[Sequence[Any]]) -> list[Sequence[Any]]:
    """``rows`` with NUL replaced in their text; a row without one is kept as it is
    (a delivery of alerts writes thousands of rows, and almost none has a NUL)."""
    text_at = _TEXT_AT[table]
    out: list[Sequence[Any]] = []
    for row in rows:
        for i in text_at:
            value = row[i]
            if value.__class__ is str and "\x00" in value:
                row = tuple(_clean(v) for v in row)
                break
        out.append(row)
    return out


class ProjectionStore:
    """Key-addressed loads and upserts of projection rows on a DB-API connection."""

    def __init__(
        self, cursor: Callable[[], Any], placeholder: str, *, postgresql: bool = False
    ) -> None:
        self._cursor = cursor
        self._ph = placeholder
        # PostgreSQL: new rows go in with COPY and upserts as one statement over
        # arrays, each a fraction of the cost of a statement per row (a delivery of
        # alerts touches hundreds of rows).
        self._postgresql = postgresql

    def load(self, table: str, keys: Sequence[str]) -> dict[str, tuple[Any, ...]]:
        """Rows of ``table`` (single-column key) by key, all columns in table order."""
        if not keys:
            return {}
        spec = PROJECTION_TABLES[table]
        key = spec.primary_key.columns.values()[0].name
        cur = self._cursor()
        if self._postgresql:
            # One parameter however many keys: psycopg parses a long IN list anew on
            # every call, and a join keeps the primary-key index whatever the
            # statistics say.
            asked = {_clean(k): k for k in keys}
            selected = ", ".join(f"t.{c.name}" for c in spec.columns)
            cur.execute(
                f"SELECT {selected} FROM unnest(%b::text[]) AS k(key) "
                f"JOIN {table} t ON t.{key} = k.key",
                (list(asked),),
            )
            return {asked.get(row[0], row[0]): tuple(row) for row in cur.fetchall()}
        # Chunked IN lists: portable, and bounded for SQLite's parameter limit.
        columns = ", ".join(c.name for c in spec.columns)
        out: dict[str, tuple[Any, ...]] = {}
        for start in range(0, len(keys), 500):
            asked = {_clean(k): k for k in keys[start : start + 500]}
            chunk = list(asked)
            marks = ", ".join(self._ph for _ in chunk)
            cur.execute(f"SELECT {columns} FROM {table} WHERE {key} IN ({marks})", chunk)
            for row in cur.fetchall():
                out[asked.get(row[0], row[0])] = tuple(row)
        return out

    def save(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert or replace whole rows (all columns, in table order)."""
        if not rows:
            return
        spec = PROJECTION_TABLES[table]
        names = [c.name for c in spec.columns]
        keys = [c.name for c in spec.primary_key.columns]
        others = [n for n in names if n not in keys]
        update = (
            "DO UPDATE SET " + ", ".join(f"{n} = excluded.{n}" for n in others)
            if others
            else "DO NOTHING"
        )
        conflict = f"ON CONFLICT ({', '.join(keys)}) {update}"
        cleaned = _clean_rows(table, rows)
        if self._postgresql:
            # One row per key: a statement may not upsert the same row twice, and the
            # last of several writes is the one that counts (as with one per row).
            at = [names.index(k) for k in keys]
            unique = list({tuple(r[i] for i in at): r for r in cleaned}.values())
            arrays = ", ".join(f"%b::{_pg_type(c)}[]" for c in spec.columns)
            self._cursor().execute(
                f"INSERT INTO {table} ({', '.join(names)}) SELECT * FROM unnest({arrays}) "
                + conflict,
                [list(column) for column in zip(*unique, strict=True)],
            )
            return
        sql = (
            f"INSERT INTO {table} ({', '.join(names)}) "
            f"VALUES ({', '.join(self._ph for _ in names)}) " + conflict
        )
        self._cursor().executemany(sql, cleaned)

    def insert(self, table: str, rows: Sequence[Sequence[Any]]) -> None:
        """Insert rows whose keys are known to be new (a duplicate key is an error)."""
        if not rows:
            return
        names = [c.name for c in PROJECTION_TABLES[table].columns]
        cleaned = _clean_rows(table, rows)
        if self._postgresql:
            columns = PROJECTION_TABLES[table].columns
            # Binary: bytea values (the rows' JSON state) go as they are, not escaped.
            with self._cursor().copy(
                f"COPY {table} ({', '.join(names)}) FROM STDIN (FORMAT BINARY)"
            ) as copy:
                copy.set_types([_pg_type(c) for c in columns])
                for row in cleaned:
                    copy.write_row(row)
            return
        marks = ", ".join(self._ph for _ in names)
        self._cursor().executemany(
            f"INSERT INTO {table} ({', '.join(names)}) VALUES ({marks})", cleaned
        )

    def delete(self, table: str, column: str, values: Sequence[str]) -> None:
        """Delete the rows whose ``column`` is one of ``values``."""
        cur = self._cursor()
        for start in range(0, len(values), 500):
            chunk = [_clean(v) for v in values[start : start + 500]]
            marks = ", ".join(self._ph for _ in chunk)
            cur.execute(f"DELETE FROM {table} WHERE {column} IN ({marks})", chunk)

    def select(self, table: str, column: str, value: str) -> list[tuple[Any, ...]]:
        """Every row whose ``column`` equals ``value``."""
        spec = PROJECTION_TABLES[table]
        columns = ", ".join(c.name for c in spec.columns)
        cur = self._cursor()
        cur.execute(f"SELECT {columns} FROM {table} WHERE {column} = {self._ph}", (_clean(value),))
        return [tuple(row) for row in cur.fetchall()]

    def truncate(self, tables: Sequence[str]) -> None:
        """Empty the named projection tables (before a rebuild)."""
        cur = self._cursor()
        for table in tables:
            # Only known tables: the name goes into the statement.
            cur.execute(f"DELETE FROM {PROJECTION_TABLES[table].name}")
