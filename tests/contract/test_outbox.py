"""The transactional outbox and its relay, on SQLite and PostgreSQL."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import func, insert, select
from typer.testing import CliRunner

from incidents.app import Container, build_container, build_relay, open_database
from incidents.bus.destination import BusDestination
from incidents.bus.memory import InProcessBus
from incidents.bus.message import BusMessage, subject_for
from incidents.bus.relay import OutboxRelay, RetryPolicy, describe_error
from incidents.cli.main import app as cli_app
from incidents.config import ConfigError, load_settings
from incidents.events.envelope import normalize
from incidents.events.timeformat import now_micros
from incidents.log.cloudevent import cloudevent_json
from incidents.log.records import OutboxRoute, StoredEvent
from incidents.log.session import AppendSession, PendingEvent, prepare
from incidents.store.engine import Backend, backend_of, make_engine, writes
from incidents.store.outbox_store import OutboxRecord, OutboxStore
from incidents.store.schema import outbox, timeline_events
from incidents.timeline.render import to_cloudevent
from tests.conftest import event, make_settings

CONSOLE_SCRIPT = Path(sys.executable).with_name("incidents")


@pytest.fixture
def quiet(database_url: str) -> Iterator[Container]:
    """A container whose relay does not run: outbox rows stay for the test to drain."""
    c = build_container(make_settings(database_url, outbox_relay=False))
    c.start()
    try:
        yield c
    finally:
        c.close()


def append(c: Container, *events: dict[str, Any]) -> list[Any]:
    pending = [PendingEvent(normalize(e), "alice@example.com") for e in events]
    return c.appender.submit(pending).result(timeout=30)


def outbox_rows(c: Container) -> list[Any]:
    with c.engine.connect() as conn:
        return list(conn.execute(select(outbox).order_by(outbox.c.id)))


def store_of(c: Container, lease_seconds: float = 60.0) -> OutboxStore:
    return OutboxStore(c.engine, c.backend, lease_seconds)


class Recorder:
    """A destination that records what it was given; fails the first ``failures`` times."""

    def __init__(self, name: str = "bus", failures: int = 0) -> None:
        self.name = name
        self.failures = failures
        self.calls = 0
        self.delivered: Counter[int] = Counter()
        self.lock = threading.Lock()

    def deliver(self, rows: Sequence[OutboxRecord]) -> list[Exception | None]:
        with self.lock:
            self.calls += 1
            if self.calls <= self.failures:
                return [ConnectionError("connect to nats://relay:s3cret@bus:4222 refused")] * len(
                    rows
                )
            self.delivered.update(row.id for row in rows)
        return [None] * len(rows)


class Clock:
    """A settable clock (microseconds), so that backoff is observed without waiting."""

    def __init__(self) -> None:
        self.now = now_micros()

    def __call__(self) -> int:
        return self.now


def test_append_writes_one_outbox_row_per_created_event(quiet: Container) -> None:
    results = append(quiet, event(1), event(2, type_="im.incident.declare"))
    rows = outbox_rows(quiet)
    assert [(r.position, r.event_type, r.destination) for r in rows] == [
        (results[0].position, "im.note.add", "bus"),
        (results[1].position, "im.incident.declare", "bus"),
    ]
    assert all(r.aggregate_id == "INC-1" for r in rows)
    assert all(r.processed_us is None and r.dead_us is None and r.attempts == 0 for r in rows)
    # The row names its event by position; a claim renders the stored event as a
    # structured-mode CloudEvent.
    assert all(r.payload is None for r in rows)
    with store_of(quiet).claim(["bus"], now_micros(), 10) as claim:
        claimed = claim.rows
    assert [r.event_id for r in claimed] == ["evt-1", "evt-2"]
    payload = orjson.loads(claimed[0].payload)
    assert payload["specversion"] == "1.0"
    assert payload["id"] == "evt-1"
    assert payload["type"] == "im.note.add"
    assert payload["data"] == {"note": "note 1"}
    with quiet.engine.connect() as conn:
        stored = StoredEvent(*conn.execute(select(timeline_events).limit(1)).one())
    assert claimed[0].payload == cloudevent_json(stored)
    # A duplicate and a conflict store nothing, and queue nothing.
    append(quiet, event(1), {**event(2, type_="im.incident.declare"), "data": {"x": 1}})
    assert len(outbox_rows(quiet)) == 2


def test_one_row_per_destination(quiet: Container) -> None:
    with quiet.writer.transaction() as tx:
        session = AppendSession(
            tx, now_micros(), destinations=(OutboxRoute("bus"), OutboxRoute("chat"))
        )
        session.begin([])
        session.emit(normalize(event(7)), "alice@example.com")
        session.finish()
    rows = outbox_rows(quiet)
    assert sorted(r.destination for r in rows) == ["bus", "chat"]
    assert len({r.position for r in rows}) == 1


def test_a_destination_gets_rows_only_for_the_events_it_takes(quiet: Container) -> None:
    notes_of_incidents = OutboxRoute("tickets", lambda kind, in_incident: in_incident)
    alerts_only = OutboxRoute("pager", lambda kind, _: kind.startswith("im.alert."))
    with quiet.writer.transaction() as tx:
        session = AppendSession(
            tx, now_micros(), destinations=(OutboxRoute("bus"), notes_of_incidents, alerts_only)
        )
        session.begin([])
        session.emit(normalize(event(1)), "alice@example.com")
        session.emit(normalize(event(2, incident=None, type_="im.alert.firing")), "am")
        session.finish()
    rows = {(r.event_type, r.destination) for r in outbox_rows(quiet)}
    assert rows == {
        ("im.note.add", "bus"),
        ("im.note.add", "tickets"),
        ("im.alert.firing", "bus"),
        ("im.alert.firing", "pager"),
    }


def test_connectors_take_incident_changes_not_alerts(database_url: str) -> None:
    connectors = {
        "servicenow": [
            {
                "name": "prod",
                "instance_url": "http://127.0.0.1:9",
                "username": "svc-incidents",
                "password": "s3cret-pass",
            }
        ],
        "slack": [
            {
                "name": "acme",
                "bot_token": "xoxb-1234567890-abcdef",
                "signing_secret": "8f14e45fceea167a5a36dedd4bea2543",
            }
        ],
    }
    settings = make_settings(database_url, connectors=connectors, outbox_relay=False)
    container = build_container(settings)
    try:
        container.start()
        append(
            container,
            event(1, incident=None, type_="im.alert.firing", data={"alert": {"key": "a"}}),
            event(2, type_="im.note.add"),
        )
        rows = {(r.event_type, r.destination) for r in outbox_rows(container)}
    finally:
        container.close()
    assert rows == {
        ("im.alert.firing", "bus"),
        ("im.note.add", "bus"),
        ("im.note.add", "servicenow:prod"),
        ("im.note.add", "slack:acme"),
    }


class Boom(Exception):
    pass


class EmitThenFail:
    """A command that appends an event and then fails (not a rejection)."""

    def execute(self, session: AppendSession) -> None:
        session.emit(normalize(event(99)), "alice@example.com")
        raise Boom("after the event was appended")


def test_failed_transaction_writes_neither_event_nor_outbox_row(quiet: Container) -> None:
    with pytest.raises(Boom):
        quiet.appender.submit_command(EmitThenFail()).result(timeout=30)
    with quiet.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(timeline_events)).scalar() == 0
    assert outbox_rows(quiet) == []


def test_relay_delivers_each_row_once(quiet: Container) -> None:
    append(quiet, *(event(n) for n in range(1, 26)))
    recorder = Recorder()
    relay = OutboxRelay(store_of(quiet), [recorder], batch_size=10)
    assert relay.drain() == 25
    assert sorted(recorder.delivered.values()) == [1] * 25
    rows = outbox_rows(quiet)
    assert all(r.processed_us is not None and r.attempts == 1 for r in rows)
    assert relay.drain() == 0
    assert store_of(quiet).list() == []


def test_without_retention_delivered_rows_are_deleted_and_failed_ones_kept(
    quiet: Container,
) -> None:
    append(quiet, *(event(n) for n in range(1, 6)))
    store = OutboxStore(quiet.engine, quiet.backend, keep_delivered=False)
    flaky = Recorder(failures=1)
    relay = OutboxRelay(store, [flaky], batch_size=3)
    # The first batch fails and stays for a retry; the second is delivered and gone.
    assert relay.run_once() == 3
    assert relay.run_once() == 2
    rows = outbox_rows(quiet)
    assert len(rows) == 3
    assert all(r.processed_us is None and r.last_error is not None for r in rows)


def test_retention_setting_decides_whether_delivered_rows_stay(database_url: str) -> None:
    for retention, remaining in (("0", 0), ("3600", 3)):
        settings = make_settings(
            database_url, outbox_relay=False, outbox_retention_seconds=float(retention)
        )
        c = build_container(settings)
        c.start()
        try:
            before = len(outbox_rows(c))
            append(c, *(event(n) for n in range(int(retention) + 1, int(retention) + 4)))
            # The relay as the settings build it.
            assert build_relay(settings, open_database(settings), c.bus).drain() == 3
            assert len(outbox_rows(c)) - before == remaining
        finally:
            c.close()


def test_failing_destination_is_retried_with_growing_backoff(quiet: Container) -> None:
    append(quiet, event(1))
    clock = Clock()
    recorder = Recorder(failures=3)
    retry = RetryPolicy(max_attempts=10, base_seconds=2.0, cap_seconds=600.0, jitter=lambda c: c)
    relay = OutboxRelay(store_of(quiet), [recorder], retry=retry, clock=clock)
    delays = []
    for _ in range(3):
        assert relay.run_once() == 1
        (row,) = outbox_rows(quiet)
        assert row.processed_us is None
        # Never the credentials of the URL in the error.
        assert "s3cret" not in row.last_error
        assert "ConnectionError" in row.last_error
        delays.append(row.next_attempt_us - clock.now)
        # Not due yet: nothing is claimed.
        assert relay.run_once() == 0
        clock.now = row.next_attempt_us
    assert delays == [2_000_000, 4_000_000, 8_000_000]
    assert relay.run_once() == 1
    (row,) = outbox_rows(quiet)
    assert row.processed_us is not None
    assert row.attempts == 4
    assert recorder.delivered == Counter({row.id: 1})


def test_full_jitter_stays_under_the_ceiling() -> None:
    retry = RetryPolicy(base_seconds=1.0, cap_seconds=30.0)
    assert [retry.ceiling(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    for attempts in range(1, 8):
        assert 0 <= retry.delay_us(attempts) <= retry.ceiling(attempts) * 1_000_000


def test_error_text_masks_secrets() -> None:
    text = describe_error(RuntimeError("GET https://u:pw@h/x?token=abc&b=1 failed\nsecond line"))
    assert text == "RuntimeError: GET https://u:***@h/x?token=***&b=1 failed"


def cli(database_url: str, *args: str) -> Any:
    return CliRunner().invoke(cli_app, ["admin", "outbox", *args], env=_env(database_url))


def _env(database_url: str) -> dict[str, str]:
    return {"IM_DATABASE_URL": database_url, "COLUMNS": "250"}


def test_dead_letter_list_retry_and_discard(database_url: str, quiet: Container) -> None:
    append(quiet, event(1), event(2))
    clock = Clock()
    failing = Recorder(failures=1_000)
    retry = RetryPolicy(max_attempts=3, jitter=lambda c: c)
    relay = OutboxRelay(store_of(quiet), [failing], retry=retry, clock=clock)
    for _ in range(3):
        assert relay.run_once() == 2
        clock.now += 10_000_000
    rows = outbox_rows(quiet)
    assert all(r.dead_us is not None and r.attempts == 3 for r in rows)
    # Dead rows are never claimed again.
    clock.now += 3_600_000_000
    assert relay.run_once() == 0

    listed = cli(database_url, "list", "--failed")
    assert listed.exit_code == 0, listed.output
    assert listed.stdout.count("│ dead ") == 2
    assert str(rows[0].id) in listed.stdout
    assert "s3cret" not in listed.stdout

    assert cli(database_url, "retry", str(rows[0].id)).exit_code == 0
    assert cli(database_url, "discard", str(rows[1].id)).exit_code == 0
    healthy = Recorder()
    assert OutboxRelay(store_of(quiet), [healthy]).drain() == 1
    assert healthy.delivered == Counter({rows[0].id: 1})
    assert [r.id for r in outbox_rows(quiet)] == [rows[0].id]
    # Delivered: no longer listed, as failed or otherwise.
    assert store_of(quiet).list() == []
    assert "retrying" not in cli(database_url, "list", "--failed").stdout


def test_unknown_outbox_id_is_one_line_and_non_zero(sqlite_url: str) -> None:
    env = {"PATH": "/usr/bin:/bin", **_env(sqlite_url)}
    for command in ("retry", "discard"):
        done = subprocess.run(
            [str(CONSOLE_SCRIPT), "admin", "outbox", command, "424242"],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert done.returncode != 0
        assert done.stderr.strip() == "error: no outbox row with id 424242"


def test_relay_killed_mid_delivery_redelivers_after_restart(quiet: Container) -> None:
    append(quiet, *(event(n) for n in range(1, 11)))

    class Killed(BaseException):
        """Stands for the process dying between delivery and marking."""

    class DiesAfterDelivering(Recorder):
        def deliver(self, rows: Sequence[OutboxRecord]) -> list[Exception | None]:
            super().deliver(rows)
            raise Killed

    first = DiesAfterDelivering()
    with pytest.raises(Killed):
        OutboxRelay(store_of(quiet), [first]).run_once()
    assert all(r.processed_us is None for r in outbox_rows(quiet))
    clock = Clock()
    if quiet.backend is Backend.SQLITE:
        # SQLite claims with a lease: the rows come due again when it ends.
        clock.now += 61_000_000
    second = Recorder()
    assert OutboxRelay(store_of(quiet), [second], clock=clock).drain() == 10
    # At least once: every row delivered after the restart (the bus absorbs the repeat).
    assert set(second.delivered) == set(first.delivered) == {r.id for r in outbox_rows(quiet)}
    assert all(r.processed_us is not None for r in outbox_rows(quiet))


def test_two_relays_on_postgresql_deliver_every_row_exactly_once(postgres_url: str) -> None:
    c = build_container(make_settings(postgres_url, outbox_relay=False))
    c.start()
    try:
        for chunk in range(10):
            append(c, *(event(chunk * 100 + n) for n in range(100)))
        shared = Recorder()
        relays = [OutboxRelay(store_of(c), [shared], batch_size=25) for _ in range(2)]
        handled: list[int] = []
        threads = [threading.Thread(target=lambda r=r: handled.append(r.drain())) for r in relays]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert sum(handled) == 1000
        assert len(shared.delivered) == 1000
        assert set(shared.delivered.values()) == {1}
    finally:
        c.close()


def test_in_process_bus_receives_appended_events(database_url: str) -> None:
    c = build_container(make_settings(database_url))
    c.start()
    try:
        assert isinstance(c.bus, InProcessBus)
        received: list[BusMessage] = []
        arrived = threading.Event()

        def listener(message: BusMessage) -> None:
            received.append(message)
            arrived.set()

        subscription = c.bus.subscribe(listener)
        (result,) = append(c, event(1, type_="im.incident.declare"))
        assert arrived.wait(30)
        (message,) = received
        assert message.event_id == "evt-1"
        assert message.type == "im.incident.declare"
        assert message.position == result.position
        assert orjson.loads(message.payload)["id"] == "evt-1"
        subscription.close()
    finally:
        c.close()


def test_subject_follows_the_event_type() -> None:
    assert subject_for("im.incident.declare") == "incidents.events.im.incident.declare"
    assert subject_for("odd type.*.>", "p") == "p.odd_type._._"
    assert subject_for("a..b", "p") == "p.a._.b"


def _insert_outbox_row(c: Container, position: int, payload: bytes | None) -> None:
    now = now_micros()
    with writes(c.engine).begin() as conn:
        conn.execute(
            insert(outbox).values(
                position=position,
                aggregate_id="INC-1",
                event_type="im.note.add",
                payload=payload,
                destination="bus",
                created_us=now,
                next_attempt_us=now,
            )
        )


def test_rows_written_with_a_payload_deliver_that_payload(quiet: Container) -> None:
    # Rows from before revision 0005 carry their CloudEvent; it is delivered as it is.
    legacy = orjson.dumps({"specversion": "1.0", "id": "old-1", "source": "//x", "type": "t"})
    _insert_outbox_row(quiet, 999, legacy)
    bus = InProcessBus()
    seen: list[BusMessage] = []
    bus.subscribe(seen.append)
    assert OutboxRelay(store_of(quiet), [BusDestination(bus)]).drain() == 1
    assert [(m.event_id, m.payload) for m in seen] == [("old-1", legacy)]


def test_row_whose_event_is_gone_is_dead_lettered_at_once(quiet: Container) -> None:
    _insert_outbox_row(quiet, 12345, None)
    recorder = Recorder()
    assert OutboxRelay(store_of(quiet), [recorder]).drain() == 1
    assert recorder.calls == 0
    (item,) = store_of(quiet).list(failed=True)
    assert item.state == "dead"
    assert item.last_error == "the event at position 12345 is no longer stored"


def test_bus_destination_publishes_with_event_ids(quiet: Container) -> None:
    append(quiet, event(5, type_="im.incident.resolve"))
    bus = InProcessBus()
    seen: list[BusMessage] = []
    bus.subscribe(seen.append)
    assert OutboxRelay(store_of(quiet), [BusDestination(bus)]).drain() == 1
    assert [(m.event_id, m.type) for m in seen] == [("evt-5", "im.incident.resolve")]
    assert backend_of(str(quiet.settings.database_url)) is quiet.backend


@pytest.mark.parametrize(
    "raw",
    [
        event(1),
        event(2, incident=None, time=None, data="plain text", datacontenttype="text/plain"),
        event(3, data_base64="aGVsbG8=", data=None) | {"data": None},
        event(
            4,
            im__actor="bob@example.com",
            im__origin_id="pd:1",
            im__visibility="restricted",
            im__data_class=["pii"],
            im__related_ids=["INC-2", "INC-3"],
            im__correlation_key="k",
            im__fingerprint="f",
            dataschema="https://example.com/s",
            customext="x",
        ),
    ],
)
def test_outbox_payload_is_the_rendered_cloudevent(raw: dict[str, Any]) -> None:
    if raw.get("data") is None:
        raw = {k: v for k, v in raw.items() if k != "data"}
    ev = normalize(raw)
    (prep,) = prepare([PendingEvent(ev, "alice@example.com")], now_micros())
    row = StoredEvent._make((1, *prep.tail, None, b"h"))
    expected = orjson.dumps(to_cloudevent(row))
    assert cloudevent_json(row) == expected
    assert cloudevent_json(row, ev.body()) == expected


# Strings that look like the body's own keys, to tempt the renderer's shortcut.
_TRICKY = st.sampled_from(
    ['"data_class":["pii"]', ',"datacontenttype":"application/json"}', '{"data":', "x", ""]
)
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8) | _TRICKY,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=6) | _TRICKY, inner, max_size=3)
    ),
    max_leaves=8,
)


@given(
    data=_JSON,
    data_class=st.sampled_from([None, ["pii"], {"pii": ["customer.email"]}]),
    extra=st.dictionaries(st.sampled_from(["dataschema", "customext"]), st.just("x"), max_size=2),
    content_type=st.sampled_from([None, "application/json", "text/plain"]),
)
def test_outbox_payload_equals_the_general_renderer(
    data: Any, data_class: Any, extra: dict[str, str], content_type: str | None
) -> None:
    raw = event(1, data=data, **extra)
    if data_class is not None:
        raw["imdataclass"] = (
            data_class if isinstance(data_class, list) else orjson.dumps(data_class).decode()
        )
    if content_type is not None:
        raw["datacontenttype"] = content_type
    if content_type == "text/plain":
        raw["data"] = "plain"
    ev = normalize(raw)
    (prep,) = prepare([PendingEvent(ev, "alice@example.com")], now_micros())
    row = StoredEvent._make((1, *prep.tail, None, b"h"))
    assert cloudevent_json(row) == orjson.dumps(to_cloudevent(row))


def test_worker_delivers_the_outbox_and_stops_on_sigterm(sqlite_url: str) -> None:
    c = build_container(make_settings(sqlite_url, outbox_relay=False))
    c.start()
    try:
        append(c, *(event(n) for n in range(1, 6)))
    finally:
        c.close()
    env = {"PATH": "/usr/bin:/bin", **_env(sqlite_url), "IM_OUTBOX_POLL_SECONDS": "0.1"}
    worker = subprocess.Popen(
        [str(CONSOLE_SCRIPT), "worker"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    engine = make_engine(sqlite_url)
    try:
        store = OutboxStore(engine, Backend.SQLITE)
        for _ in range(600):
            if store.list() == []:
                break
            threading.Event().wait(0.1)
        assert store.list() == []
    finally:
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=60)
        engine.dispose()
    assert worker.returncode == 0
    assert "worker stopped" in stderr


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("IM_OUTBOX_DESTINATIONS", "bus,pager", "unknown destination pager"),
        ("IM_OUTBOX_MAX_ATTEMPTS", "0", "IM_OUTBOX_MAX_ATTEMPTS"),
        ("IM_OUTBOX_RETENTION_SECONDS", "-1", "IM_OUTBOX_RETENTION_SECONDS: must be 0"),
        ("IM_NATS_URL", "http://nats:4222", "IM_NATS_URL"),
        ("IM_NATS_SUBJECT_PREFIX", "a..b", "IM_NATS_SUBJECT_PREFIX"),
    ],
)
def test_bad_outbox_settings_are_refused(variable: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings({variable: value})
