"""A backup of a database that retention has worked on restores and verifies: archived
incidents come back readable, purged ones keep their tombstones."""

from __future__ import annotations

from pathlib import Path

from incidents.app import build_container
from incidents.backup.dump import backup_database
from incidents.backup.restore import restore_database
from incidents.store.engine import make_engine
from tests.conftest import make_settings
from tests.contract.test_retention import NOW, _append, _retention


def test_a_database_with_archived_and_purged_incidents_restores_verifiable(
    database_url: str, tmp_path: Path
) -> None:
    source = build_container(make_settings(database_url, outbox_relay=False))
    source.start()
    try:
        _append(source, "INC-OLD", 4, age_days=3000)
        _append(source, "INC-MID", 3, age_days=400)
        _append(source, "INC-NEW", 2, age_days=1)
        report = _retention(source).run(now_us=NOW)
        assert [s.incident_id for s in report.purged] == ["INC-OLD"]
        assert report.archived
        expected = {i: source.timeline.verify(i) for i in ("INC-OLD", "INC-MID", "INC-NEW")}
        archive = tmp_path / "backup.tar"
        backup_database(source.engine, archive)
    finally:
        source.close()

    target_url = f"sqlite:///{tmp_path / 'restored.db'}"
    engine = make_engine(target_url)
    try:
        restored = restore_database(engine, archive)
    finally:
        engine.dispose()
    assert restored.chains.broken is None
    target = build_container(make_settings(target_url, outbox_relay=False))
    target.start()
    try:
        for incident, before in expected.items():
            after = target.timeline.verify(incident)
            assert after.intact, (incident, after)
            assert after.events == before.events
    finally:
        target.close()
