"""Slack events -> chat messages: deterministic ids, threads, edits, deletions, bots."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from incidents.chatops.messages import message_event_id, ts_micros
from incidents.chatops.replay import ReplayGuard
from incidents.integrations.slack.events import message_from_event

URL = "https://acme.slack.com"


def test_the_id_is_sha256_of_team_channel_and_ts() -> None:
    expected = hashlib.sha256(b"slack:T1:C1:1700000000.000100").hexdigest()
    assert message_event_id("slack", "T1", "C1", "1700000000.000100") == expected
    message = message_from_event(
        {"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": "1700000000.000100"},
        "T1",
        "acme",
        URL,
    )
    assert message is not None and message.event_id == expected


@given(st.text(min_size=1, max_size=20), st.text(min_size=1, max_size=20))
def test_different_messages_have_different_ids(a: str, b: str) -> None:
    if a != b:
        assert message_event_id("slack", "T", "C", a) != message_event_id("slack", "T", "C", b)


def test_ts_to_microseconds() -> None:
    assert ts_micros("1700000000.000100") == 1_700_000_000_000_100
    assert ts_micros("1700000000") == 1_700_000_000_000_000


def test_a_thread_reply_names_its_root() -> None:
    message = message_from_event(
        {
            "type": "message",
            "channel": "C1",
            "user": "U1",
            "text": "r",
            "ts": "2.0",
            "thread_ts": "1.0",
        },
        "T1",
        "acme",
        URL,
    )
    assert message is not None
    data = message.data("INC-1")
    assert data["thread_event_id"] == message_event_id("slack", "T1", "C1", "1.0")
    assert data["permalink"] == f"{URL}/archives/C1/p20?thread_ts=1.0&cid=C1"


def test_each_edit_is_its_own_event_and_a_deletion_keeps_no_text() -> None:
    def edit(edited: str) -> str:
        message = message_from_event(
            {
                "type": "message",
                "subtype": "message_changed",
                "channel": "C1",
                "message": {"user": "U1", "text": "v", "ts": "1.0", "edited": {"ts": edited}},
            },
            "T1",
            "acme",
            URL,
        )
        assert message is not None and message.kind == "edit"
        return message.event_id

    assert edit("2.0") != edit("3.0")
    assert edit("2.0") == edit("2.0")
    deleted = message_from_event(
        {
            "type": "message",
            "subtype": "message_deleted",
            "channel": "C1",
            "deleted_ts": "1.0",
            "previous_message": {"user": "U1", "text": "secret", "ts": "1.0"},
        },
        "T1",
        "acme",
        URL,
    )
    assert deleted is not None and deleted.kind == "delete"
    assert "text" not in deleted.data("INC-1")
    assert deleted.event_id not in (edit("2.0"), message_event_id("slack", "T1", "C1", "1.0"))


def test_bots_joins_and_other_events_are_ignored() -> None:
    for event in (
        {"type": "message", "channel": "C1", "bot_id": "B1", "text": "x", "ts": "1.0"},
        {"type": "message", "subtype": "bot_message", "channel": "C1", "text": "x", "ts": "1.0"},
        {"type": "message", "subtype": "channel_join", "channel": "C1", "user": "U", "ts": "1.0"},
        {"type": "reaction_added", "channel": "C1"},
        {"type": "message", "text": "no channel", "ts": "1.0"},
        {
            "type": "message",
            "subtype": "message_changed",
            "channel": "C1",
            "message": {"bot_id": "B1", "ts": "1.0"},
        },
    ):
        assert message_from_event(event, "T1", "acme", URL) is None


def test_the_replay_guard_accepts_each_signature_once_within_the_window() -> None:
    now = [0.0]
    guard = ReplayGuard(window=300, clock=lambda: now[0])
    assert guard.first_time("v0=aa")
    assert not guard.first_time("v0=aa")
    assert guard.first_time("v0=bb")
    now[0] = 601.0
    assert guard.first_time("v0=aa")


def test_recording_a_message_names_its_dedupe_key_before_the_lock() -> None:
    from incidents.chatops.messages import RecordChatMessage
    from incidents.log.commands import KeyedCommand

    message = message_from_event(
        {"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": "5.0"},
        "T1",
        "acme",
        URL,
    )
    assert message is not None
    command = RecordChatMessage.of("INC-1", message, "integration:slack:acme")
    assert isinstance(command, KeyedCommand)
    assert command.dedupe_keys == [("slack://acme", message.event_id)]


_TS = st.integers(min_value=1, max_value=30).map(lambda n: f"{1_700_000_000 + n}.000100")


@settings(max_examples=40, deadline=None)
@given(
    deliveries=st.lists(
        st.tuples(_TS, st.sampled_from(["message", "edit", "delete"]), st.integers(0, 2)),
        min_size=1,
        max_size=40,
    )
)
def test_any_sequence_of_deliveries_and_retries_stores_each_change_once(
    deliveries: list[tuple[str, str, int]],
) -> None:
    """Messages, edits and deletions delivered in any order and any number of times:
    the timeline holds exactly one event per distinct change, in the incident."""
    from incidents.app import build_replay_appender
    from incidents.chatops.messages import ChatMessage, RecordChatMessage
    from incidents.incident.commands import Declare

    appender, writer = build_replay_appender()
    appender.start()
    try:
        incident = appender.submit_command(Declare(title="t", actor="a@example.com")).result()
        incident_id = incident.incident.id
        for ts, kind, edit in deliveries:
            message = ChatMessage(
                "slack",
                "acme",
                "T1",
                "C1",
                ts,
                "U1",
                "text",
                kind=kind,  # type: ignore[arg-type]
                edited_ts=f"{ts}{edit}" if kind == "edit" else None,
            )
            command = RecordChatMessage.of(incident_id, message, "integration:slack:acme")
            appender.submit_command(command).result()
    finally:
        appender.stop()
    stored = [e for e in writer.events if e.type.startswith("im.slack.")]
    distinct = {(ts, kind, edit if kind == "edit" else 0) for ts, kind, edit in deliveries}
    assert len(stored) == len(distinct)
    assert len({e.event_id for e in stored}) == len(stored)
    assert all(e.incident_id == incident_id for e in stored)


def test_a_message_takes_its_incidents_classification() -> None:
    from incidents.app import build_replay_appender
    from incidents.chatops.messages import RecordChatMessage
    from incidents.incident.commands import Declare

    appender, writer = build_replay_appender()
    appender.start()
    try:
        declared = appender.submit_command(
            Declare(title="t", actor="a@example.com", classification="restricted")
        ).result()
        message = message_from_event(
            {"type": "message", "channel": "C1", "user": "U1", "text": "hi", "ts": "9.0"},
            "T1",
            "acme",
            URL,
        )
        assert message is not None
        command = RecordChatMessage.of(declared.incident.id, message, "integration:slack:acme")
        first = appender.submit_command(command).result()
        again = appender.submit_command(command).result()
    finally:
        appender.stop()
    (stored,) = [e for e in writer.events if e.type == "im.slack.message"]
    assert stored.visibility == "restricted"
    assert (first.outcome.value, again.outcome.value) == ("created", "duplicate")
