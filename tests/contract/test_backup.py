"""``incidents admin backup`` / ``restore``: a portable archive whose restore keeps every
hash chain verifiable, on SQLite and PostgreSQL (and from one to the other).

A tampered or damaged archive is refused with one line and a non-zero exit, and the
target database is left as it was.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, inspect, select, text

from incidents.app import Container, build_container
from incidents.backup.archive import MANIFEST, ArchiveError, ArchiveReader
from incidents.backup.chains import verify_stored_chains
from incidents.backup.database import KNOWN_TABLES, shape_of, upgrade
from incidents.backup.dump import backup_database
from incidents.backup.restore import TargetNotEmpty, restore_database
from incidents.events.envelope import normalize
from incidents.incident.projection import incident_projection
from incidents.log.projections import Projections
from incidents.log.session import PendingEvent
from incidents.store.engine import make_engine
from incidents.store.migrate import current_revision, head_revision
from incidents.store.schema import metadata
from incidents.store.sqlite_writer import SqliteWriter
from incidents.timeline.export import ExportFormat
from incidents.timeline.group_commit import GroupCommitAppender
from tests.conftest import (
    CONSOLE_SCRIPT,
    Fresh,
    event,
    grant_access,
    make_settings,
)


def _append(c: Container, events: list[dict[str, Any]], who: str = "alice@example.com") -> None:
    pending = [PendingEvent(normalize(e), who) for e in events]
    c.appender.submit(pending).result(timeout=60)


def _populate(database_url: str) -> str:
    """A database in use: incidents with projections, events without an incident, a
    user with grants and a token, outbox rows not yet delivered. Returns the token."""
    c = build_container(make_settings(database_url, outbox_relay=False))
    c.start()
    try:
        grant_access(c, "alice@example.com")
        _, token = c.tokens.create("alice@example.com", "laptop")
        declare = [
            event(
                f"declare-{n}",
                incident=f"INC-{n}",
                type_="im.incident.declare",
                data={"title": f"Outage {n}", "severity": "SEV-2"},
            )
            for n in range(1, 4)
        ]
        notes = [
            event(f"note-{n}", incident=f"INC-{n % 3 + 1}", data={"note": f"n{n}", "b": "é"})
            for n in range(60)
        ]
        loose = [event(f"loose-{n}", incident=None) for n in range(3)]
        binary = event("binary-1", incident="INC-2", datacontenttype="application/octet-stream")
        binary.pop("data")
        binary["data_base64"] = "AAEC/w=="
        _append(c, declare)
        _append(c, [*notes, *loose, binary])
        return token
    finally:
        c.close()


def _tables(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every platform table's rows, in primary-key order, bytes as bytes."""
    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            out = {}
            for name in sorted(set(inspect(conn).get_table_names()) & KNOWN_TABLES):
                shape = shape_of(conn, name)
                clause = shape.clause()
                rows = conn.execute(
                    select(clause).order_by(*(clause.c[k] for k in shape.primary_key))
                )
                out[name] = [
                    tuple(bytes(v) if isinstance(v, memoryview) else v for v in row) for row in rows
                ]
            return out
    finally:
        engine.dispose()


def _exports(database_url: str) -> dict[str, bytes]:
    c = build_container(make_settings(database_url), apply_migrations=False)
    try:
        return {
            incident: b"".join(c.timeline.export(incident, ExportFormat.JSON).chunks)
            for incident in ("INC-1", "INC-2", "INC-3")
        }
    finally:
        c.close()


def _engine_run(database_url: str, work: Callable[[Engine], Any]) -> Any:
    engine = make_engine(database_url)
    try:
        return work(engine)
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("sqlite", "sqlite"),
        ("postgresql", "postgresql"),
        ("sqlite", "postgresql"),
        ("postgresql", "sqlite"),
    ],
)
def test_restore_reproduces_the_database_and_its_chains(
    fresh: Fresh, tmp_path: Path, source: str, target: str
) -> None:
    source_url, target_url = fresh(source), fresh(target)
    token = _populate(source_url)
    archive = tmp_path / "backup.tar"
    manifest = _engine_run(source_url, lambda e: backup_database(e, archive))
    assert manifest.schema_revision == head_revision()
    assert manifest.log_position == 67 and manifest.chains == 4
    assert oct(archive.stat().st_mode & 0o777) == "0o600"

    report = _engine_run(target_url, lambda e: restore_database(e, archive))
    assert report.chains.broken is None
    assert (report.chains.chains, report.chains.events) == (4, 67)
    assert _tables(target_url) == _tables(source_url)
    assert _exports(target_url) == _exports(source_url)

    # The restored database is in service: the token works, appends continue the log
    # and the chains, and the outbox numbers its rows after the restored ones.
    c = build_container(make_settings(target_url, outbox_relay=False))
    c.start()
    try:
        assert c.tokens.authenticate(token) == "alice@example.com"
        _append(c, [event("after-restore", incident="INC-1")])
        assert c.timeline.verify("INC-1").intact
        with c.engine.connect() as conn:
            positions = conn.execute(text("SELECT max(position) FROM timeline_events")).scalar()
            outbox_rows = conn.execute(text("SELECT count(*) FROM outbox")).scalar()
        assert positions == 68 and outbox_rows == 68
    finally:
        c.close()


def test_an_older_revision_restores_and_is_migrated(fresh: Fresh, tmp_path: Path) -> None:
    source_url, target_url = fresh("sqlite"), fresh("sqlite")

    def at_0005(engine: Engine) -> None:
        with engine.begin() as conn:
            upgrade(conn, "0005")

    _engine_run(source_url, at_0005)

    def seed(engine: Engine) -> None:
        # The projections of revision 0005 only: later ones have no tables there. This
        # build's writer also looks dedupe keys up among archived ones (0011): their
        # table exists only while seeding.
        archived_keys = metadata.tables["archived_dedupe_keys"]
        archived_keys.create(engine)
        appender = GroupCommitAppender(
            SqliteWriter(engine), projection=Projections([incident_projection()]).open
        )
        appender.start()
        try:
            pending = [PendingEvent(normalize(event(n)), "alice@example.com") for n in range(5)]
            appender.submit(pending).result(timeout=60)
        finally:
            appender.stop()
            archived_keys.drop(engine)

    _engine_run(source_url, seed)
    archive = tmp_path / "old.tar"
    assert _engine_run(source_url, lambda e: backup_database(e, archive)).schema_revision == "0005"
    report = _engine_run(target_url, lambda e: restore_database(e, archive))
    assert report.revision == head_revision()
    assert (report.chains.events, report.chains.broken) == (5, None)


def test_a_database_in_use_is_replaced_only_with_force(fresh: Fresh, tmp_path: Path) -> None:
    source_url, target_url = fresh("sqlite"), fresh("sqlite")
    _populate(source_url)
    archive = tmp_path / "backup.tar"
    _engine_run(source_url, lambda e: backup_database(e, archive))
    c = build_container(make_settings(target_url))
    c.start()
    try:
        _append(c, [event("other", incident="INC-9")])
    finally:
        c.close()
    before = _tables(target_url)
    with pytest.raises(TargetNotEmpty, match="1 timeline_events"):
        _engine_run(target_url, lambda e: restore_database(e, archive))
    assert _tables(target_url) == before
    _engine_run(target_url, lambda e: restore_database(e, archive, force=True))
    assert _tables(target_url) == _tables(source_url)


# --- Tampering, through the installed command ---------------------------------------


def _cli(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IM_")}
    env["IM_DATABASE_URL"] = database_url
    done = subprocess.run(
        [str(CONSOLE_SCRIPT), "admin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def _one_line_error(done: subprocess.CompletedProcess[str], code: int, needle: str) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert needle in lines[0], lines[0]


def _rewrite(
    archive: Path,
    out: Path,
    *,
    events: Callable[[list[list[Any]]], list[list[Any]]] | None = None,
    manifest: Callable[[dict[str, Any]], None] | None = None,
    recompute: bool = True,
) -> Path:
    """A copy of ``archive`` with its events edited; checksums and counts recomputed
    (as a careful forger would) unless ``recompute`` is false."""
    with tarfile.open(archive) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    document = orjson.loads(files[MANIFEST])
    name = "tables/timeline_events.jsonl.gz"
    if events is not None:
        rows = [orjson.loads(line) for line in gzip.decompress(files[name]).splitlines()]
        rows = events(rows)
        files[name] = gzip.compress(b"".join(orjson.dumps(r) + b"\n" for r in rows))
        if recompute:
            entry = next(t for t in document["tables"] if t["file"] == name)
            entry["rows"] = len(rows)
            entry["sha256"] = hashlib.sha256(files[name]).hexdigest()
    if manifest is not None:
        manifest(document)
    files[MANIFEST] = orjson.dumps(document)
    with tarfile.open(out, "w") as tar:
        for member, data in files.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return out


@pytest.fixture
def archive(fresh: Fresh, tmp_path: Path) -> Path:
    source_url = fresh("sqlite")
    _populate(source_url)
    path = tmp_path / "good.tar"
    done = _cli(source_url, "backup", "--output", str(path))
    assert done.returncode == 0, done.stderr
    assert "67 events in 4 chains" in done.stdout
    return path


def _untouched(database_url: str) -> None:
    assert _engine_run(database_url, current_revision) is None


def _column(name: str) -> int:
    from incidents.log.records import EVENT_COLUMNS

    return EVENT_COLUMNS.index(name)


def _edit_note(rows: list[list[Any]]) -> list[list[Any]]:
    # Rewrite what an actor is recorded as having done, keeping everything else.
    rows[10][_column("actor")] = "mallory@example.com"
    return rows


def _garbage(_archive: Path, out: Path) -> Path:
    out.write_bytes(b"not a tar file" * 100)
    return out


def _drop_event(rows: list[list[Any]]) -> list[list[Any]]:
    return rows[:20] + rows[21:]


@pytest.mark.parametrize(
    ("tamper", "code", "needle"),
    [
        (lambda a, o: _rewrite(a, o, events=_edit_note), 3, "breaks at position 11"),
        (lambda a, o: _rewrite(a, o, events=_drop_event), 3, "breaks at position"),
        (
            lambda a, o: _rewrite(a, o, events=_edit_note, recompute=False),
            1,
            "does not match its checksum",
        ),
        (
            lambda a, o: _rewrite(a, o, events=lambda r: r[:-1]),
            3,
            "recorded head of incident INC-2 does not match its events",
        ),
        (
            lambda a, o: _rewrite(a, o, manifest=lambda m: m.update(schema_revision="9999")),
            1,
            "schema revision '9999', which this build does not know",
        ),
        (
            lambda a, o: _rewrite(
                a, o, manifest=lambda m: m["tables"][0].update(rows=m["tables"][0]["rows"] + 1)
            ),
            1,
            "holds 0 rows but the manifest says 1",
        ),
        (_garbage, 1, "not a backup archive"),
    ],
    ids=[
        "edited-event",
        "removed-event",
        "damaged-file",
        "truncated-chain",
        "unknown-revision",
        "wrong-count",
        "not-an-archive",
    ],
)
def test_a_tampered_archive_is_refused_and_nothing_is_restored(
    archive: Path,
    fresh: Fresh,
    tmp_path: Path,
    tamper: Callable[[Path, Path], Path],
    code: int,
    needle: str,
) -> None:
    bad = tamper(archive, tmp_path / "bad.tar")
    target_url = fresh("sqlite")
    done = _cli(target_url, "restore", str(bad))
    _one_line_error(done, code, needle)
    assert "nothing was restored" in done.stderr
    _untouched(target_url)


def test_the_cli_restores_and_reports_every_chain_verified(archive: Path, fresh: Fresh) -> None:
    for kind in ("sqlite", "postgresql"):
        target_url = fresh(kind)
        done = _cli(target_url, "restore", str(archive))
        assert done.returncode == 0, done.stderr
        assert "67 events in 4 chains" in done.stdout
        assert "every hash chain verified" in done.stdout
        again = _cli(target_url, "restore", str(archive))
        _one_line_error(again, 1, "already holds data")
        assert _engine_run(target_url, verify_stored_chains).broken is None


def test_backup_refuses_bad_input_with_one_line(fresh: Fresh, tmp_path: Path) -> None:
    existing = tmp_path / "exists.tar"
    existing.write_bytes(b"")
    _one_line_error(_cli(fresh("sqlite"), "backup", "-o", str(existing)), 1, "already exists")
    _one_line_error(
        _cli(fresh("sqlite"), "backup", "-o", str(tmp_path / "no" / "dir.tar")),
        1,
        "is not a directory",
    )
    _one_line_error(
        _cli(fresh("sqlite"), "backup", "-o", str(tmp_path / "empty.tar")), 1, "no schema yet"
    )
    _one_line_error(
        _cli(fresh("sqlite"), "restore", str(tmp_path / "missing.tar")), 1, "no such file"
    )


def test_the_archive_reader_checks_before_trusting(archive: Path, tmp_path: Path) -> None:
    extra = tmp_path / "extra.tar"
    with tarfile.open(archive) as src, tarfile.open(extra, "w") as out:
        for member in src.getmembers():
            out.addfile(member, src.extractfile(member))
        info = tarfile.TarInfo("tables/../../etc/passwd")
        info.size = 1
        out.addfile(info, io.BytesIO(b"x"))
    with ArchiveReader(extra) as reader, pytest.raises(ArchiveError, match="does not list"):
        reader.check()
