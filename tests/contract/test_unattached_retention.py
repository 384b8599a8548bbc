"""Retention of events of no incident, on both backends: the start of their chain is
purged once older than the period, under signed tombstones; nothing of an incident is
touched, and every chain still verifies."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import count
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from incidents.app import Container, build_container
from incidents.backup.chains import verify_stored_chains
from incidents.events.envelope import normalize
from incidents.events.timeformat import format_micros, now_micros
from incidents.log.session import Outcome
from incidents.retention.tiers import DAY_US
from incidents.retention.tombstone import TombstoneKind
from incidents.store.engine import writes
from tests.conftest import event, make_settings, stored_at

NOW = now_micros()
PERIOD_DAYS = 30
ACTOR = "retention@example.com"
LATER = NOW + 3650 * DAY_US


@pytest.fixture
def container(database_url: str) -> Iterator[Container]:
    c = build_container(
        make_settings(database_url, retention_unattached_purge_after_days=PERIOD_DAYS)
    )
    c.start()
    try:
        yield c
    finally:
        c.close()


def _stored(container: Container) -> dict[str, Any]:
    """Every stored event id, with its incident (None for no incident)."""
    with container.engine.connect() as conn:
        rows = conn.execute(text("SELECT event_id, incident_id FROM timeline_events"))
        return {row[0]: row[1] for row in rows}


def _unattached_positions(container: Container) -> list[tuple[int, int]]:
    with container.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT position, created_us FROM timeline_events WHERE incident_id IS NULL "
                "ORDER BY position"
            )
        )
        return [(int(r[0]), int(r[1])) for r in rows]


_ids = count()


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    plan=st.lists(
        st.tuples(
            st.sampled_from([None, "INC-A", "INC-B"]),
            st.integers(min_value=0, max_value=80),
            st.booleans(),
        ),
        min_size=1,
        max_size=25,
    )
)
def test_due_events_of_no_incident_go_and_nothing_else(
    container: Container, plan: list[tuple[str | None, int, bool]]
) -> None:
    """Any mix of events (with and without an incident, of any age, some alerts that
    never joined an incident): after a run the due start of the unattached chain is
    gone, everything else stays, and every chain verifies."""
    retention = container.retention
    assert retention is not None
    cutoff = NOW - PERIOD_DAYS * DAY_US
    sent: dict[str, tuple[str | None, int]] = {}
    for incident, age_days, alert in plan:
        n = next(_ids)
        when = NOW - age_days * DAY_US - n
        kind: dict[str, Any] = (
            {"type_": "im.alert.trigger", "data": {"alert": {"key": f"k{n % 3}", "summary": "s"}}}
            if alert
            else {}
        )
        raw = event(f"u{n}", incident=incident, time=format_micros(when), **kind)
        with stored_at(when):
            (result,) = container.timeline.append([normalize(raw)], ACTOR)
        assert result.outcome is Outcome.CREATED
        sent[f"evt-u{n}"] = (incident, when)
    before = _stored(container)
    planned = retention.plan_unattached(NOW)
    report = retention.run(now_us=NOW)
    after = _stored(container)

    removed = set(before) - set(after)
    assert all(before[i] is None for i in removed), "an event of an incident was removed"
    assert sum(s.event_count for s in report.unattached_purged) == len(removed)
    assert len(removed) == planned.events
    # What was removed was due; what stays starts with an event that is not.
    with container.engine.connect() as conn:
        stones = [
            row
            for row in conn.execute(
                text("SELECT kind, incident_id FROM retention_tombstones WHERE incident_id = ''")
            )
        ]
    assert all(kind == TombstoneKind.PURGE.value for kind, _ in stones)
    for event_id in removed:
        if event_id in sent:
            assert sent[event_id][1] < cutoff
    remaining = _unattached_positions(container)
    if remaining:
        assert remaining[0][1] >= cutoff
    # Alerts that never joined an incident and lost every event lose their row.
    with container.engine.connect() as conn:
        orphans = conn.execute(
            text(
                "SELECT count(*) FROM alerts a WHERE a.incident_id IS NULL AND NOT EXISTS "
                "(SELECT 1 FROM timeline_events e WHERE e.incident_id IS NULL "
                "AND e.position = a.last_position)"
            )
        ).scalar_one()
    assert orphans == 0
    assert verify_stored_chains(container.engine).broken is None
    assert retention.plan_unattached(NOW).events == 0


def test_the_dry_run_lists_them_and_changes_nothing(container: Container) -> None:
    for n, age in enumerate((100, 90, 10)):
        raw = event(f"dry-{n}", incident=None, time=format_micros(NOW - age * DAY_US))
        with stored_at(NOW - age * DAY_US):
            container.timeline.append([normalize(raw)], ACTOR)
    retention = container.retention
    assert retention is not None
    report = retention.run(dry_run=True, now_us=NOW)
    assert report.unattached is not None and report.unattached.events == 2
    assert report.unattached.rule == f"unattached-purge-after-{PERIOD_DAYS}d"
    assert "2 events of no incident" in report.unattached.reason
    assert not report.unattached_purged and len(_stored(container)) == 3
    done = retention.run(now_us=NOW)
    (stone,) = done.unattached_purged
    assert stone.event_count == 2 and stone.incident_id == ""
    assert set(_stored(container)) == {"evt-dry-2"}
    assert verify_stored_chains(container.engine).broken is None


def test_the_database_refuses_deleting_unattached_events_no_tombstone_covers(
    container: Container,
) -> None:
    raw = event("loose", incident=None, time=format_micros(NOW))
    container.timeline.append([normalize(raw)], ACTOR)
    from incidents.store.engine import writes

    with pytest.raises(Exception, match="append-only"), writes(container.engine).begin() as conn:
        conn.execute(text("DELETE FROM timeline_events WHERE incident_id IS NULL"))


def test_events_of_no_incident_age_from_when_they_were_stored(container: Container) -> None:
    """The ``time`` a sender claims does not decide: a claimed future does not hold the
    purge back for good, and a claimed past does not purge early."""
    retention = container.retention
    assert retention is not None
    stored_long_ago = NOW - 100 * DAY_US
    future = format_micros(NOW + 3650 * DAY_US)
    with stored_at(stored_long_ago):
        for n in range(2):
            raw = event(f"claims-future-{n}", incident=None, time=future)
            container.timeline.append([normalize(raw)], ACTOR)
    backdated = event("claims-past", incident=None, time=format_micros(NOW - 1000 * DAY_US))
    with stored_at(NOW - DAY_US):
        container.timeline.append([normalize(backdated)], ACTOR)
    assert retention.plan_unattached(NOW).events == 2
    done = retention.run(now_us=NOW)
    assert sum(s.event_count for s in done.unattached_purged) == 2
    assert set(_stored(container)) == {"evt-claims-past"}
    assert verify_stored_chains(container.engine).broken is None


def test_batches_remove_their_events_and_outbox_rows_and_a_broken_link_stops_them(
    container: Container, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("incidents.retention.service.UNATTACHED_BATCH", 2)
    retention = container.retention
    assert retention is not None
    for n in range(7):
        when = NOW - (90 - n) * DAY_US
        raw = event(f"b{n}", incident=None, time=format_micros(when))
        with stored_at(when):
            container.timeline.append([normalize(raw)], ACTOR)
    with stored_at(NOW):
        container.timeline.append([normalize(event("b-new", incident=None))], ACTOR)
    positions = [p for p, _ in _unattached_positions(container)]
    with writes(container.engine).begin() as conn:
        for position in positions:
            conn.execute(
                text(
                    "INSERT INTO outbox (position, aggregate_id, event_type, destination, "
                    "created_us, next_attempt_us, attempts) VALUES (:p, NULL, 't', 'bus', 1, :n, 0)"
                ),
                # Due only far ahead: the running relay leaves them alone.
                {"p": position, "n": LATER},
            )
    report = retention.run(now_us=NOW)
    assert [s.event_count for s in report.unattached_purged] == [2, 2, 2, 1], report.failed
    assert set(_stored(container)) == {"evt-b-new"}
    with container.engine.connect() as conn:
        outbox = [
            r[0]
            for r in conn.execute(
                text("SELECT position FROM outbox WHERE next_attempt_us = :n"), {"n": LATER}
            )
        ]
    assert set(outbox) == {positions[-1]}
    assert verify_stored_chains(container.engine).broken is None

    # A chain that does not continue from the last purge's tip is left alone.
    for n in range(3):
        with stored_at(NOW - 80 * DAY_US):
            container.timeline.append([normalize(event(f"c{n}", incident=None))], ACTOR)
    with writes(container.engine).begin() as conn:
        conn.execute(
            text(
                "UPDATE retention_tombstones SET chain_tip = :tip WHERE incident_id = '' "
                "AND last_position = (SELECT max(last_position) FROM retention_tombstones "
                "WHERE incident_id = '')"
            ),
            {"tip": bytes(32)},
        )
    before = _stored(container)
    blocked = retention.run(now_us=NOW + 60 * DAY_US)
    assert "does not link" in blocked.failed["(no incident)"]
    assert _stored(container) == before
