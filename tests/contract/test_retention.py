"""Retention on both backends: holds, dry runs, archive, purge, erasure, and verify."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from incidents.app import Container
from incidents.backup.database import upgrade
from incidents.events.envelope import normalize
from incidents.events.timeformat import format_micros, now_micros
from incidents.log.session import Outcome
from incidents.retention.tiers import DAY_US, Action, Tier
from incidents.store import migrate
from incidents.store.engine import writes
from incidents.timeline.export import ExportFormat
from tests.conftest import event

NOW = now_micros()
ACTOR = "retention@example.com"


def _append(container: Container, incident: str, n: int, age_days: float, **kw: Any) -> None:
    """``n`` notes on ``incident``, the last ``age_days`` old."""
    when = NOW - int(age_days * DAY_US)
    events = [
        normalize(
            event(
                f"{incident}-{i}-{when}",
                incident=incident,
                time=format_micros(when - (n - i) * 1_000_000),
                **kw,
            )
        )
        for i in range(n)
    ]
    results = container.timeline.append(events, ACTOR)
    assert all(r.outcome is Outcome.CREATED for r in results)


def _declare_and_close(container: Container, incident: str, age_days: float) -> None:
    when = NOW - int(age_days * DAY_US)
    steps = [
        ("im.incident.declare", {"title": f"{incident} outage", "severity": "SEV-2"}),
        ("im.incident.resolve", {}),
        ("im.incident.close", {}),
    ]
    for i, (type_, data) in enumerate(steps):
        raw = event(
            f"{incident}-{type_}",
            incident=incident,
            type_=type_,
            data=data,
            time=format_micros(when - (len(steps) - i) * 1_000_000),
        )
        container.timeline.append([normalize(raw)], ACTOR)


def _export(container: Container, incident: str) -> bytes:
    return b"".join(container.timeline.export(incident, ExportFormat.JSON).chunks)


def _retention(container: Container) -> Any:
    assert container.retention is not None
    return container.retention


def test_dry_run_says_what_and_why_and_changes_nothing(container: Container) -> None:
    _append(container, "INC-OLD", 3, age_days=3000)
    _append(container, "INC-MID", 2, age_days=400)
    _append(container, "INC-NEW", 2, age_days=5)
    _declare_and_close(container, "INC-CLOSED", age_days=200)
    _append(container, "INC-OPEN", 1, age_days=0, type_="im.incident.declare", data={"title": "x"})
    report = _retention(container).run(dry_run=True, now_us=NOW)
    by_id = {v.incident_id: v for v in report.verdicts}
    assert by_id["INC-OLD"].action is Action.PURGE
    assert "purge after" in by_id["INC-OLD"].reason
    assert by_id["INC-MID"].action is Action.ARCHIVE
    assert by_id["INC-CLOSED"].action is Action.ARCHIVE
    assert by_id["INC-NEW"].action is Action.KEEP and by_id["INC-NEW"].tier is Tier.RECENT
    assert by_id["INC-OPEN"].tier is Tier.ACTIVE
    assert not report.archived and not report.purged
    assert container.timeline.verify("INC-OLD").events == 3


def test_purge_leaves_a_signed_tombstone_and_verify_passes(container: Container) -> None:
    _append(container, "INC-OLD", 4, age_days=3000)
    _append(container, "INC-KEEP", 2, age_days=10)
    head_before = container.reader.chain_head("INC-OLD")
    assert head_before is not None
    report = _retention(container).run(now_us=NOW)
    (stone,) = report.purged
    assert stone.incident_id == "INC-OLD" and stone.event_count == 4
    assert stone.chain_tip == head_before.last_hash
    assert stone.rule.startswith("purge-after-")
    with container.engine.connect() as conn:
        left = conn.execute(
            text("SELECT count(*) FROM timeline_events WHERE incident_id = 'INC-OLD'")
        ).scalar_one()
    assert left == 0
    purged = container.timeline.verify("INC-OLD")
    assert purged.intact and purged.events == 0
    assert container.timeline.verify("INC-KEEP").intact
    # Events appended later continue the chain after the tombstone's tip.
    _append(container, "INC-OLD", 2, age_days=0)
    report_after = container.timeline.verify("INC-OLD")
    assert report_after.intact and report_after.events == 2


def test_a_forged_tombstone_makes_verify_fail(container: Container) -> None:
    _append(container, "INC-OLD", 3, age_days=3000)
    _retention(container).run(now_us=NOW)
    with writes(container.engine).begin() as conn:
        conn.execute(text("UPDATE retention_tombstones SET event_count = 1"))
    report = container.timeline.verify("INC-OLD")
    assert not report.intact


def test_the_database_still_refuses_deletes_no_tombstone_covers(container: Container) -> None:
    _append(container, "INC-OLD", 2, age_days=3000)
    _append(container, "INC-KEEP", 2, age_days=1)
    _retention(container).run(now_us=NOW)
    with pytest.raises(Exception, match="append-only"), writes(container.engine).begin() as conn:
        conn.execute(text("DELETE FROM timeline_events WHERE incident_id = 'INC-KEEP'"))
    with pytest.raises(Exception, match="append-only"), writes(container.engine).begin() as conn:
        conn.execute(text("UPDATE timeline_events SET actor = 'mallory'"))


def test_a_held_incident_is_neither_archived_nor_purged(container: Container) -> None:
    _append(container, "INC-OLD", 3, age_days=3000)
    _append(container, "INC-MID", 3, age_days=400)
    retention = _retention(container)
    retention.place_hold("INC-OLD", "litigation 2026-17", "counsel@example.com")
    retention.place_hold("INC-MID", "regulator request", "counsel@example.com")
    report = retention.run(now_us=NOW)
    assert not report.purged and not report.archived
    assert {h.incident_id for h in retention.holds()} == {"INC-OLD", "INC-MID"}
    hold = retention.hold("INC-OLD")
    assert hold is not None and hold.reason == "litigation 2026-17"
    assert hold.placed_by == "counsel@example.com"
    # The hold is on the incident's own timeline.
    types = [row.type for row in container.reader.chain("INC-OLD")]
    assert types[-1] == "im.retention.hold.place"
    retention.release_hold("INC-OLD", "case closed", "counsel@example.com")
    # The release is an event of today, but the incident finished years ago: the
    # hold events are part of the chain the purge removes.
    report = retention.run(now_us=NOW + 3000 * DAY_US)
    assert [s.incident_id for s in report.purged] == ["INC-OLD"]


def test_archive_read_back_equals_the_original_export(container: Container) -> None:
    _append(container, "INC-MID", 2500, age_days=400)
    _declare_and_close(container, "INC-CLOSED", age_days=200)
    before = {i: _export(container, i) for i in ("INC-MID", "INC-CLOSED")}
    verified = {i: container.timeline.verify(i) for i in before}
    report = _retention(container).run(now_us=NOW)
    assert report.archived == {"INC-MID": 2500, "INC-CLOSED": 3}
    assert _retention(container).is_archived("INC-MID")
    with container.engine.connect() as conn:
        live = conn.execute(
            text("SELECT count(*) FROM timeline_events WHERE incident_id = 'INC-MID'")
        ).scalar_one()
    assert live == 0
    for incident, exported in before.items():
        assert _export(container, incident) == exported
        after = container.timeline.verify(incident)
        assert after.intact and after.events == verified[incident].events
    # Pages read through the archive like through the live table.
    from incidents.log.query import TimelineFilter

    page = container.timeline.page(TimelineFilter(incident_id="INC-MID"), None, 100)
    assert len(page.events) == 100 and page.next_cursor is not None
    second = container.timeline.page(TimelineFilter(incident_id="INC-MID"), page.next_cursor, 100)
    assert second.events[0].position > page.events[-1].position
    # Purging an archived incident later removes the archive too.
    report = _retention(container).run(now_us=NOW + 3000 * DAY_US)
    assert {s.incident_id for s in report.purged} == {"INC-MID", "INC-CLOSED"}
    assert container.timeline.verify("INC-MID").intact
    with container.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM archived_events")).scalar_one() == 0


def test_erasing_a_field_keeps_the_chain_verifiable(container: Container) -> None:
    raw = event(
        "pii-1",
        incident="INC-PII",
        data={"customer": {"email": "jane@example.com", "plan": "gold"}, "note": "called"},
    )
    (created,) = container.timeline.append([normalize(raw)], ACTOR)
    _append(container, "INC-PII", 2, age_days=0)
    assert created.position is not None
    stone = _retention(container).erase(
        "INC-PII", created.position, ["customer.email"], "GDPR request 42", "dpo@example.com"
    )
    assert stone.detail["fields"] == ["customer.email"]
    stored = next(r for r in container.reader.chain("INC-PII") if r.position == created.position)
    assert b"jane@example.com" not in stored.body and b"gold" in stored.body
    report = container.timeline.verify("INC-PII")
    assert report.intact and report.events == 3
    # Any other change to the erased event is still caught.
    with writes(container.engine).begin() as conn:
        conn.execute(
            text("UPDATE timeline_events SET body = :b WHERE position = :p"),
            {"b": stored.body.replace(b"gold", b"free"), "p": created.position},
        )
    assert not container.timeline.verify("INC-PII").intact


def test_purge_under_concurrent_appends_loses_nothing_not_due(container: Container) -> None:
    for i in range(20):
        _append(container, f"INC-OLD-{i}", 5, age_days=3000)
    stop = threading.Event()
    appended: list[str] = []

    started = threading.Event()

    def writer() -> None:
        n = 0
        # Into live incidents and into the incidents being purged, until the run is
        # over and at least 30 appends were made.
        while not stop.is_set() or n < 30:
            incident = f"INC-LIVE-{n % 3}" if n % 2 else f"INC-OLD-{n % 20}"
            _append(container, incident, 1, age_days=0 if n % 2 else 3000, id=f"w-{n}")
            appended.append(incident)
            n += 1
            if n == 3:
                started.set()

    thread = threading.Thread(target=writer)
    thread.start()
    started.wait(10)
    try:
        report = _retention(container).run(now_us=NOW)
    finally:
        stop.set()
        thread.join()
    purged = {s.incident_id: s for s in report.purged}
    for incident in sorted(set(appended) | {f"INC-OLD-{i}" for i in range(20)}):
        verdict = container.timeline.verify(incident)
        assert verdict.intact, incident
        total = appended.count(incident) + (5 if incident.startswith("INC-OLD") else 0)
        removed = purged[incident].event_count if incident in purged else 0
        # Every event is either still stored or counted by the tombstone that removed it.
        assert verdict.events + removed == total, incident
    assert all(not i.startswith("INC-LIVE") for i in purged)


_AGES = st.sampled_from([0, 30, 89, 91, 400, 2000, 2554, 2556, 4000])


@settings(
    max_examples=8,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    plan=st.lists(
        st.tuples(_AGES, st.booleans(), st.booleans(), st.integers(min_value=1, max_value=4)),
        min_size=1,
        max_size=8,
    )
)
def test_retention_property(container: Container, plan: list[tuple[int, bool, bool, int]]) -> None:
    """Nothing held is removed; everything past its period and not held is gone;
    verify passes for every incident afterwards."""
    retention = _retention(container)
    run_id = now_micros()
    ids = []
    for k, (age, held, declared, n) in enumerate(plan):
        incident = f"P{run_id}-{k}"
        ids.append(incident)
        if declared:
            _declare_and_close(container, incident, age_days=age)
        else:
            _append(container, incident, n, age_days=age)
        if held:
            retention.place_hold(incident, "property test", "counsel@example.com")
    report = retention.run(now_us=NOW)
    purged = {s.incident_id for s in report.purged}
    for incident, (age, held, declared, notes) in zip(ids, plan, strict=True):
        n = 3 if declared else notes
        verdict = container.timeline.verify(incident)
        assert verdict.intact, (incident, verdict)
        stored = sum(1 for _ in container.reader.chain(incident))
        if held:
            assert incident not in purged and incident not in report.archived
            assert stored == n + 1  # the incident's events and the hold event
            assert not retention.is_archived(incident)
        elif age >= 2555:
            assert incident in purged and stored == 0
        elif age >= 90:
            assert report.archived.get(incident) == n and stored == n
            assert retention.is_archived(incident)
        else:
            assert stored == n and not retention.is_archived(incident)


def test_the_periodic_job_purges_without_a_command(database_url: str) -> None:
    from incidents.app import build_container
    from tests.conftest import make_settings

    container = build_container(make_settings(database_url, retention_interval_seconds=0.2))
    container.start()
    try:
        _append(container, "INC-OLD", 2, age_days=3000)
        _append(container, "INC-NEW", 2, age_days=1)
        retention = _retention(container)
        deadline = now_micros() + 20_000_000
        while retention.tombstones("INC-OLD") == [] and now_micros() < deadline:
            threading.Event().wait(0.1)
        (stone,) = retention.tombstones("INC-OLD")
        assert stone.event_count == 2
        assert container.timeline.verify("INC-NEW").events == 2
    finally:
        container.close()


def test_a_damaged_chain_is_not_purged_and_the_run_goes_on(container: Container) -> None:
    _append(container, "INC-BAD", 3, age_days=3000)
    _append(container, "INC-OLD", 2, age_days=3000)
    # Damage: the chain head records one event more than is stored.
    with writes(container.engine).begin() as conn:
        conn.execute(text("UPDATE chain_heads SET event_count = 4 WHERE chain_key = 'INC-BAD'"))
    report = _retention(container).run(now_us=NOW)
    assert "INC-BAD" in report.failed and "verify" in report.failed["INC-BAD"]
    assert [s.incident_id for s in report.purged] == ["INC-OLD"]
    assert sum(1 for _ in container.reader.chain("INC-BAD")) == 3


def test_a_second_process_never_serves_a_purged_archive(database_url: str) -> None:
    from incidents.app import build_container
    from tests.conftest import make_settings

    # `reader` keeps serving reads while `runner` archives and then purges.
    reader = build_container(make_settings(database_url))
    reader.start()
    try:
        runner = build_container(make_settings(database_url))
        runner.start()
        try:
            _append(runner, "INC-MID", 5, age_days=400)
            _retention(runner).run(now_us=NOW)
            assert sum(1 for _ in reader.reader.chain("INC-MID")) == 5  # cached now
            _retention(runner).run(now_us=NOW + 3000 * DAY_US)
            assert sum(1 for _ in reader.reader.chain("INC-MID")) == 0
            assert reader.timeline.verify("INC-MID").intact
        finally:
            runner.close()
    finally:
        reader.close()


def test_rebuilding_projections_keeps_archived_incidents(container: Container) -> None:
    _declare_and_close(container, "INC-A", age_days=200)
    _declare_and_close(container, "INC-B", age_days=10)
    _append(container, "INC-A2", 1500, age_days=300)
    before = {i: container.incidents.get(i, None) for i in ("INC-A", "INC-B")}
    assert all(before.values())
    report = _retention(container).run(now_us=NOW)
    assert set(report.archived) == {"INC-A", "INC-A2"}
    positions = [r.position for r in container.reader.in_position_order(10**12)]
    assert positions == sorted(positions) and len(positions) == len(set(positions)) == 1506
    container.incidents.rebuild()
    for incident, was in before.items():
        now = container.incidents.get(incident, None)
        assert now is not None and was is not None and now.to_json() == was.to_json()


def test_a_purge_takes_the_incident_board_with_it(container: Container) -> None:
    _declare_and_close(container, "INC-OLD", age_days=3000)
    _declare_and_close(container, "INC-NEW", age_days=1)

    def boards() -> set[str]:
        with container.engine.connect() as conn:
            return {r[0] for r in conn.execute(text("SELECT incident_id FROM boards"))}

    assert {"INC-OLD", "INC-NEW"} <= boards()
    # A ticket link and a chat channel for each (as the sync engine and ChatOps keep them).
    with writes(container.engine).begin() as conn:
        for incident in ("INC-OLD", "INC-NEW"):
            conn.execute(
                text(
                    "INSERT INTO sync_links (connector, incident_id, created_us) "
                    "VALUES ('servicenow:prod', :i, 1)"
                ),
                {"i": incident},
            )
            conn.execute(
                text(
                    "INSERT INTO chat_channels (connector, incident_id, channel_id, name, "
                    "private, created_us) VALUES ('slack:acme', :i, :c, :c, false, 1)"
                ),
                {"i": incident, "c": f"C-{incident}"},
            )
    (stone,) = _retention(container).run(now_us=NOW).purged
    assert stone.incident_id == "INC-OLD"
    # The board summarised the purged events: it must not outlive them.
    assert "INC-OLD" not in boards() and "INC-NEW" in boards()
    # Nor may a ticket or a channel still map to the purged incident.
    with container.engine.connect() as conn:
        for table in ("sync_links", "chat_channels"):
            left = {r[0] for r in conn.execute(text(f"SELECT incident_id FROM {table}"))}
            assert left == {"INC-NEW"}, table


def test_migration_fills_the_archived_dedupe_keys_from_the_archive(container: Container) -> None:
    _append(container, "INC-MID", 3, age_days=400)
    raw = event("with-origin", incident="INC-MID", time=format_micros(NOW - 400 * DAY_US))
    raw["im.origin_id"] = "upstream-77"
    container.timeline.append([normalize(raw)], ACTOR)
    assert "INC-MID" in _retention(container).run(now_us=NOW).archived
    with container.engine.connect() as conn:
        keys_after_archive = sorted(
            tuple(r)
            for r in conn.execute(text("SELECT source, dedupe_id FROM archived_dedupe_keys"))
        )
    assert ("im://tests", "upstream-77") in keys_after_archive and len(keys_after_archive) == 4
    # A database archived before revision 0011 had no keys: the migration derives them.
    with writes(container.engine).begin() as conn:
        config = Config()
        config.set_main_option(
            "script_location", str(Path(migrate.__file__).with_name("migrations"))
        )
        config.attributes["connection"] = conn
        command.downgrade(config, "0010")
    with writes(container.engine).begin() as conn:
        upgrade(conn, "head")
    with container.engine.connect() as conn:
        rows = sorted(
            tuple(r)
            for r in conn.execute(text("SELECT source, dedupe_id FROM archived_dedupe_keys"))
        )
    assert rows == keys_after_archive
    (again,) = container.timeline.append([normalize(raw)], ACTOR)
    assert again.outcome is Outcome.DUPLICATE


def test_a_key_stored_twice_before_keys_were_kept_neither_stops_archive_nor_migration(
    container: Container,
) -> None:
    """Before archived events kept their dedupe keys, an event sent again after its
    incident was archived was stored when it named another incident: one key in two
    chains. Archiving the second and migrating again both keep the first key."""
    shared = event("first", incident="INC-ONE", time=format_micros(NOW - 400 * DAY_US))
    shared["im.origin_id"] = "upstream-shared"
    container.timeline.append([normalize(shared)], ACTOR)
    assert "INC-ONE" in _retention(container).run(now_us=NOW).archived
    # As such a database was written: the key was not known to the archive.
    with writes(container.engine).begin() as conn:
        kept = conn.execute(text("SELECT * FROM archived_dedupe_keys")).mappings().one()
        conn.execute(text("DELETE FROM archived_dedupe_keys"))
    again = {**shared, "id": "second"}
    again["subject"] = "incident/INC-TWO"
    (stored,) = container.timeline.append([normalize(again)], ACTOR)
    assert stored.outcome is Outcome.CREATED
    with writes(container.engine).begin() as conn:
        conn.execute(
            text(
                "INSERT INTO archived_dedupe_keys (source, dedupe_id, event_id, incident_id, "
                "content_hash, recorded_by, visibility) VALUES (:source, :dedupe_id, "
                ":event_id, :incident_id, :content_hash, :recorded_by, :visibility)"
            ),
            dict(kept),
        )

    report = _retention(container).run(now_us=NOW)
    assert "INC-TWO" in report.archived, report.failed
    with container.engine.connect() as conn:
        keys = conn.execute(text("SELECT dedupe_id, incident_id FROM archived_dedupe_keys")).all()
    assert [tuple(k) for k in keys] == [("upstream-shared", "INC-ONE")]

    with writes(container.engine).begin() as conn:
        config = Config()
        config.set_main_option(
            "script_location", str(Path(migrate.__file__).with_name("migrations"))
        )
        config.attributes["connection"] = conn
        command.downgrade(config, "0010")
    with writes(container.engine).begin() as conn:
        upgrade(conn, "head")
    with container.engine.connect() as conn:
        keys = conn.execute(text("SELECT dedupe_id FROM archived_dedupe_keys")).all()
    assert [k[0] for k in keys] == ["upstream-shared"]
    (third,) = container.timeline.append([normalize(shared)], ACTOR)
    assert third.outcome is Outcome.DUPLICATE
