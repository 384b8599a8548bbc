"""``incidents admin restore``: an archive into a database, all or nothing.

Every check that can refuse the archive runs before the transaction commits: the
table checksums before anything is written, then the hash chains while the events
are loaded, then the recorded chain heads and log head against the events. A
refused archive leaves the target exactly as it was. Once committed, the stored
chains are verified again, as ``incidents timeline verify`` would.

The schema is first migrated to the archive's revision, the rows loaded, then the
migrations since applied: an archive made by an older release restores into a
newer one the way its database would have been upgraded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Connection, Engine, delete, func, insert, select, text

from incidents.backup.archive import ArchiveError, ArchiveReader, Manifest, TableEntry
from incidents.backup.chains import ChainSummary, ChainWalker, verify_stored_chains
from incidents.backup.database import (
    KNOWN_TABLES,
    VERSION_TABLE,
    ProgressCallback,
    current_revision,
    known_revisions,
    shape_of,
    table_names,
    upgrade,
)
from incidents.log.records import EVENT_COLUMNS, ChainHead, StoredEvent
from incidents.store.engine import writes
from incidents.store.migrate import _MIGRATION_LOCK

EVENTS = "timeline_events"
# Tables whose rows mean the database is in use: restoring over them needs --force.
_IN_USE = ("timeline_events", "api_tokens", "users", "groups")


class TargetNotEmpty(Exception):
    """The target database already holds data and --force was not given."""


@dataclass(frozen=True, slots=True)
class RestoreReport:
    manifest: Manifest
    revision: str | None
    chains: ChainSummary


def restore_database(
    engine: Engine,
    path: Path,
    *,
    force: bool = False,
    progress: ProgressCallback | None = None,
) -> RestoreReport:
    """Replace the platform's tables in ``engine``'s database with the archive's rows."""
    with ArchiveReader(path) as archive:
        archive.check()
        manifest = archive.manifest
        _check_revision(manifest)
        if manifest.table(EVENTS) is None:
            raise ArchiveError(f"the archive holds no {EVENTS} table")
        # SQLite: take the write lock at once; PostgreSQL: hold off servers' migrations.
        with writes(engine).begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            held = _rows_in_use(conn)
            if held and not force:
                counts = ", ".join(f"{n} {name}" for name, n in held.items())
                raise TargetNotEmpty(
                    f"the database already holds data ({counts}); restore into an empty "
                    "database, or pass --force to replace everything in it"
                )
            _drop_platform_tables(conn)
            upgrade(conn, manifest.schema_revision)
            missing = sorted(set(table_names(conn)) - {t.name for t in manifest.tables})
            if missing:
                raise ArchiveError(
                    f"the archive lacks table {missing[0]!r} of schema revision "
                    f"{manifest.schema_revision}"
                )
            walker = ChainWalker(sealed=_sealed_chains(archive, manifest))
            for entry in manifest.tables:
                _load(conn, archive, entry, manifest.schema_revision, walker, progress)
            _check_heads(conn, walker, manifest)
            if conn.dialect.name == "postgresql":
                _reset_sequences(conn, manifest)
            upgrade(conn, "head")
            revision = current_revision(conn)
    return RestoreReport(manifest, revision, verify_stored_chains(engine))


# Tables of retention whose incidents' chains are not all in the events table.
_SEALING_TABLES = ("archived_events", "retention_tombstones")


def _sealed_chains(archive: ArchiveReader, manifest: Manifest) -> frozenset[str]:
    """The incidents whose events retention archived or purged (or erased fields of):
    their chains are verified whole once the restore has stored everything."""
    sealed: set[str] = set()
    for name in _SEALING_TABLES:
        entry = manifest.table(name)
        if entry is None:
            continue
        at = entry.columns.index("incident_id")
        for batch in archive.rows(entry):
            sealed.update(str(values[at]) for values in batch)
    return frozenset(sealed)


def _check_revision(manifest: Manifest) -> None:
    known = known_revisions()
    if manifest.schema_revision not in known:
        raise ArchiveError(
            f"the archive is at schema revision {manifest.schema_revision!r}, which this "
            f"build does not know (newest known: {known[-1]}): restore it with a newer release"
        )


def _rows_in_use(conn: Connection) -> dict[str, int]:
    present = set(table_names(conn))
    held: dict[str, int] = {}
    for name in _IN_USE:
        if name in present:
            count = conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()
            if count:
                held[name] = int(count)
    return held


def _drop_platform_tables(conn: Connection) -> None:
    """Drop the platform's tables (and nothing else), to rebuild them at the archive's
    revision. Inside the restore's transaction: a refused archive brings them back."""
    postgres = conn.dialect.name == "postgresql"
    for name in [*table_names(conn), VERSION_TABLE]:
        conn.execute(text(f'DROP TABLE IF EXISTS "{name}"{" CASCADE" if postgres else ""}'))
    if postgres:
        # Created by revision 0001 with the append-only trigger, which went with its table.
        conn.execute(text("DROP FUNCTION IF EXISTS timeline_events_append_only()"))


def _load(
    conn: Connection,
    archive: ArchiveReader,
    entry: TableEntry,
    revision: str,
    walker: ChainWalker,
    progress: ProgressCallback | None,
) -> None:
    if entry.name not in KNOWN_TABLES or entry.name not in table_names(conn):
        raise ArchiveError(
            f"the archive holds table {entry.name!r}, which schema revision {revision} lacks"
        )
    shape = shape_of(conn, entry.name)
    if set(entry.columns) != set(shape.columns):
        raise ArchiveError(
            f"the archive's columns of {entry.name} differ from schema revision {revision}"
        )
    clause = shape.clause(entry.columns)
    if entry.name != EVENTS:
        # Rows a migration seeded (the log head) make way for the archive's.
        conn.execute(delete(clause))
    events = entry.name == EVENTS
    if events and not set(EVENT_COLUMNS) <= set(entry.columns):
        raise ArchiveError(f"the archive's {EVENTS} lacks columns the hash chain covers")
    index = [entry.columns.index(c) for c in EVENT_COLUMNS] if events else []
    done = 0
    if progress is not None:
        progress(entry.name, 0, entry.rows)
    for batch in archive.rows(entry):
        if events:
            for values in batch:
                walker.add(StoredEvent(*(values[i] for i in index)))
        conn.execute(insert(clause), [dict(zip(entry.columns, v, strict=True)) for v in batch])
        done += len(batch)
        if progress is not None:
            progress(entry.name, done, entry.rows)


def _check_heads(conn: Connection, walker: ChainWalker, manifest: Manifest) -> None:
    rows = conn.execute(
        text("SELECT chain_key, last_position, last_hash, event_count FROM chain_heads")
    )
    recorded = {row[0]: ChainHead(row[1], bytes(row[2]), row[3]) for row in rows}
    walker.check_heads(recorded)
    head = conn.execute(text("SELECT position FROM log_head WHERE id = 1")).scalar()
    if head is None or head < walker.last_position:
        raise ArchiveError(
            f"the archive's log head ({head}) is behind its last event ({walker.last_position})"
        )
    # Every chain has a recorded head, even one whose events are all archived.
    if manifest.log_position != head or manifest.chains != len(recorded):
        raise ArchiveError("the manifest's log position or chain count does not match the rows")


def _reset_sequences(conn: Connection, manifest: Manifest) -> None:
    """Serial columns continue after the restored ids (the outbox's)."""
    for entry in manifest.tables:
        shape = shape_of(conn, entry.name)
        for name in shape.columns:
            sequence = conn.execute(
                select(func.pg_get_serial_sequence(f'"{entry.name}"', name))
            ).scalar()
            if sequence is not None:
                conn.execute(
                    text(
                        f'SELECT setval(:seq, COALESCE((SELECT max("{name}") '
                        f'FROM "{entry.name}"), 0) + 1, false)'
                    ),
                    {"seq": sequence},
                )
