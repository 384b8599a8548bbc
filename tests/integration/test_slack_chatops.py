"""ChatOps on Slack end to end: signed slash commands, channels through the outbox,
channel messages on the timeline, and updates posted back, against a local server that
follows Slack's Web API, driven by the real slack_sdk client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from fastapi.testclient import TestClient

from incidents.app import Container, build_container, create_app
from incidents.chatops.messages import message_event_id
from incidents.incident.commands import AddNote, Declare, Update
from incidents.integrations.slack import routes
from incidents.store.alert_reader import AlertFilter
from tests.conftest import grant_access, make_settings
from tests.slack_api import FakeSlack, sign

SECRET = "8f14e45fceea167a5a36dedd4bea2543"
TEAM = "T0000001"
ALICE, BOB, CAROL, NOBODY, NOMAIL = "U0ALICE01", "U0BOB0001", "U0CAROL01", "U0NOBODY1", "U0NOMAIL1"


@dataclass
class Chat:
    slack: FakeSlack
    client: TestClient
    container: Container

    def command(
        self,
        text: str,
        *,
        user: str = ALICE,
        channel: str = "CGENERAL1",
        trigger: str | None = None,
        timestamp: int | None = None,
        secret: str = SECRET,
    ) -> Any:
        form = {
            "command": "/im",
            "text": text,
            "user_id": user,
            "channel_id": channel,
            "team_id": TEAM,
            "response_url": self.slack.response_url,
        }
        if trigger:
            form["trigger_id"] = trigger
        body = urlencode(form).encode()
        return self.client.post(
            "/api/v1/chat/slack/acme/commands",
            content=body,
            headers=sign(secret, body, timestamp),
        )

    def event(self, event: dict[str, Any], timestamp: int | None = None, **headers: str) -> Any:
        body = orjson.dumps(
            {"type": "event_callback", "team_id": TEAM, "event_id": "Ev1", "event": event}
        )
        signed = sign(SECRET, body, timestamp) | {"Content-Type": "application/json"} | headers
        return self.client.post("/api/v1/chat/slack/acme/events", content=body, headers=signed)

    def timeline(self, incident_id: str, type_prefix: str = "im.slack.") -> list[Any]:
        rows = list(self.container.reader.chain(incident_id))
        return [r for r in rows if r.type.startswith(type_prefix)]


def wait_for(check: Callable[[], Any], timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def build_chat(database_url: str, **slack: Any) -> Iterator[Chat]:
    fake = FakeSlack().start()
    connector = {
        "name": "acme",
        "bot_token": fake.token,
        "signing_secret": SECRET,
        "api_url": fake.url,
        "app_url": "https://incidents.example.com",
        **slack,
    }
    settings = make_settings(
        database_url, connectors={"slack": [connector]}, outbox_poll_seconds=0.1
    )
    container = build_container(settings)
    grant_access(container, "alice@example.com")
    grant_access(container, "bob@example.com")
    # Carol may read incidents but not change them.
    grant_access(container, "carol@example.com", roles=("incident.reader",), attributes=())
    fake.add_user(ALICE, "alice@example.com")
    fake.add_user(BOB, "bob@example.com")
    fake.add_user(CAROL, "carol@example.com")
    fake.add_user(NOBODY, "stranger@example.com")
    fake.add_user(NOMAIL, None)
    try:
        with TestClient(create_app(container)) as client:
            yield Chat(fake, client, container)
    finally:
        fake.stop()


@pytest.fixture
def chat(sqlite_url: str) -> Iterator[Chat]:
    yield from build_chat(sqlite_url)


@pytest.fixture
def chat_both(database_url: str) -> Iterator[Chat]:
    yield from build_chat(database_url, invite_roles=["incident.commander"])


def declared(chat: Chat, text: str = "new Database down sev2", **kw: Any) -> tuple[str, str]:
    """Declare through a slash command; the incident id and its channel's id."""
    answer = chat.command(text, **kw)
    assert answer.status_code == 200, answer.text
    reply = answer.json()["text"]
    assert reply.startswith("declared INC-"), reply
    incident_id = reply.split()[1]
    channel = wait_for(
        lambda: chat.container.chat["slack:acme"].channels.by_incident(  # type: ignore[attr-defined]
            "slack:acme", incident_id
        )
    )
    # The setup is recorded as done last, once the channel is fully set up.
    channels = chat.container.chat["slack:acme"].channels  # type: ignore[attr-defined]
    wait_for(lambda: channels.delivered("slack:acme", f"setup:{incident_id}"))
    return incident_id, channel.channel_id


# --- signatures ------------------------------------------------------------------------


def test_a_forged_signature_is_refused_and_nothing_is_stored(chat: Chat) -> None:
    answer = chat.command("new Forged sev1", secret="not-the-signing-secret-at-all")
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert chat.container.incidents.get("INC-1", None) is None


def test_a_request_older_than_300_seconds_is_refused(chat: Chat) -> None:
    answer = chat.command("new Old sev1", timestamp=int(time.time()) - 301)
    assert answer.status_code == 401
    assert chat.container.incidents.get("INC-1", None) is None


def test_a_replayed_request_is_refused(chat: Chat) -> None:
    form = urlencode(
        {"command": "/im", "text": "help", "user_id": ALICE, "channel_id": "C1", "team_id": TEAM}
    ).encode()
    headers = sign(SECRET, form)
    first = chat.client.post("/api/v1/chat/slack/acme/commands", content=form, headers=headers)
    again = chat.client.post("/api/v1/chat/slack/acme/commands", content=form, headers=headers)
    assert first.status_code == 200
    assert again.status_code == 401


def test_a_missing_or_malformed_signature_is_refused(chat: Chat) -> None:
    body = b"text=help"
    for headers in (
        {},
        {"X-Slack-Request-Timestamp": "abc", "X-Slack-Signature": "v0=00"},
        {"X-Slack-Request-Timestamp": str(int(time.time())), "X-Slack-Signature": "v1=00"},
    ):
        answer = chat.client.post("/api/v1/chat/slack/acme/commands", content=body, headers=headers)
        assert answer.status_code == 401


def test_an_unknown_connector_is_a_404(chat: Chat) -> None:
    answer = chat.client.post("/api/v1/chat/slack/other/commands", content=b"")
    assert answer.status_code == 404
    assert answer.json()["type"].endswith("not-found")


# --- commands --------------------------------------------------------------------------


def test_declare_creates_the_channel_through_the_outbox(chat_both: Chat) -> None:
    chat = chat_both
    incident_id, channel_id = declared(chat)
    incident = chat.container.incidents.get(incident_id, None)
    assert incident is not None
    assert (incident.title, incident.severity, incident.commander) == (
        "Database down",
        "SEV-2",
        "alice@example.com",
    )
    channel = chat.slack.channels[channel_id]
    number = incident_id.removeprefix("INC-")
    assert channel.name == f"inc-{number}-sev2-database-down"
    assert not channel.is_private
    wait_for(lambda: "SEV-2" in chat.slack.channels[channel_id].topic)
    assert "Database down" in channel.topic and "open" in channel.topic
    assert f"https://incidents.example.com/api/v1/incidents/{incident_id}" in channel.topic
    # The commander (alice) and holders of the invite role (bob, alice) are invited.
    assert {ALICE, BOB} <= channel.members
    assert len(channel.pins) == 1
    assert chat.slack.count("conversations.create") == 1


def test_help_and_an_unknown_command(chat: Chat) -> None:
    assert "/im new" in chat.command("help").json()["text"]
    assert "/im new" in chat.command("").json()["text"]
    reply = chat.command("launch rockets").json()
    assert reply["response_type"] == "ephemeral"
    assert "unknown command 'launch'" in reply["text"]


def test_status_in_the_channel_and_elsewhere(chat: Chat) -> None:
    incident_id, channel_id = declared(chat)
    reply = chat.command("status mitigated", channel=channel_id).json()["text"]
    assert reply == f"{incident_id} is now mitigated"
    reply = chat.command(f"status {incident_id} resolved").json()["text"]
    assert reply == f"{incident_id} is now resolved"
    assert chat.container.incidents.get(incident_id, None).status == "resolved"  # type: ignore[union-attr]


def test_status_bad_arguments_say_what_is_wrong(chat: Chat) -> None:
    incident_id, channel_id = declared(chat)
    assert "is not a status" in chat.command("status sideways", channel=channel_id).json()["text"]
    assert "name the new status" in chat.command("status", channel=channel_id).json()["text"]
    # Outside an incident channel, the incident must be named.
    assert "not an incident channel" in chat.command("status mitigated").json()["text"]
    # A move the state machine forbids names the allowed ones; nothing changes.
    reply = chat.command("status closed", channel=channel_id).json()["text"]
    assert "cannot move to closed" in reply and "Allowed from open" in reply
    assert "no incident INC-999" in chat.command("status INC-999 mitigated").json()["text"]
    assert chat.container.incidents.get(incident_id, None).status == "open"  # type: ignore[union-attr]


def test_note_and_ack_and_ic(chat: Chat) -> None:
    incident_id, channel_id = declared(chat)
    assert chat.command("note restarted the primary", channel=channel_id).json()["text"] == (
        f"note added to {incident_id}"
    )
    assert "write the note" in chat.command("note", channel=channel_id).json()["text"]
    reply = chat.command("ack", channel=channel_id).json()["text"]
    assert reply == f"acknowledged {incident_id}"
    assert "at most one alert" in chat.command("ack a b", channel=channel_id).json()["text"]
    reply = chat.command(f"ic <@{BOB}|bob>", channel=channel_id).json()["text"]
    assert reply == f"<@{BOB}> is now the commander of {incident_id}"
    assert chat.container.incidents.get(incident_id, None).commander == "bob@example.com"  # type: ignore[union-attr]
    assert "name one person" in chat.command("ic bob", channel=channel_id).json()["text"]
    assert "no email address" in chat.command(f"ic <@{NOMAIL}>", channel=channel_id).json()["text"]
    types = [r.type for r in chat.container.reader.chain(incident_id)]
    assert types.count("im.note.add") == 1
    assert types.count("im.incident.acknowledge") == 1
    assert types.count("im.incident.role.assign") == 1


def test_new_bad_arguments(chat: Chat) -> None:
    reply = chat.command("new " + "x" * 600).json()["text"]
    assert "title is too long" in reply
    assert chat.container.incidents.get("INC-1", None) is None


def test_a_user_without_the_role_is_refused_and_nothing_is_stored(chat: Chat) -> None:
    incident_id, channel_id = declared(chat)
    before = len(list(chat.container.reader.chain(incident_id)))
    reply = chat.command("note hello", user=CAROL, channel=channel_id).json()
    assert reply["response_type"] == "ephemeral"
    assert "lacks the incident.responder role" in reply["text"]
    reply = chat.command("new Carol's incident", user=CAROL).json()["text"]
    assert "lacks the incident.responder role" in reply
    # Closing needs the commander role: bob has it, alice too; carol not at all.
    assert len(list(chat.container.reader.chain(incident_id))) == before
    assert chat.container.incidents.get("INC-2", None) is None


def test_unknown_and_emailless_slack_users_are_refused(chat: Chat) -> None:
    reply = chat.command("new Something", user=NOBODY).json()["text"]
    assert "stranger@example.com is not a user of Incidents" in reply
    reply = chat.command("new Something", user=NOMAIL).json()["text"]
    assert "no email address" in reply
    reply = chat.command("new Something", user="U0UNKNOWN").json()["text"]
    assert "no email address" in reply
    assert chat.container.incidents.get("INC-1", None) is None


def test_the_same_trigger_declares_once(chat: Chat) -> None:
    first = chat.command("new Retry me", trigger="trig-1").json()["text"]
    # Sent again (signed anew, a second later): the same invocation declares once.
    again = chat.command("new Retry me", trigger="trig-1", timestamp=int(time.time()) + 1)
    second = again.json()["text"]
    assert first.split()[1] == second.split()[1]
    assert chat.container.incidents.get("INC-2", None) is None


def test_slow_commands_are_acknowledged_then_answered_through_response_url(
    chat: Chat, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(routes, "ACK_SECONDS", 0.0)
    reply = chat.command("new Slow one sev1").json()
    assert reply["text"].startswith("working on it")
    answered = wait_for(lambda: chat.slack.responses)
    assert answered[0]["text"].startswith("declared INC-")
    assert answered[0]["response_type"] == "ephemeral"


# --- channels --------------------------------------------------------------------------


def test_a_restricted_incident_gets_a_private_restricted_channel(chat: Chat) -> None:
    result = chat.container.incidents.execute(
        Declare(title="Payroll leak", actor="alice@example.com", classification="restricted")
    )
    channel = wait_for(
        lambda: chat.slack.by_name(f"inc-{result.incident.number}-sev3-payroll-leak-restricted")
    )
    assert channel.is_private


def test_a_lost_answer_to_create_does_not_make_a_second_channel(chat: Chat) -> None:
    # The first create reaches Slack but its answer is lost (name_taken on retry stands
    # for that): the channel is looked up by name and adopted.
    chat.slack.add_channel("inc-1-sev3-checkout-errors")
    chat.container.incidents.execute(Declare(title="Checkout errors", actor="alice@example.com"))
    wait_for(lambda: chat.container.chat["slack:acme"].channels.by_incident("slack:acme", "INC-1"))  # type: ignore[attr-defined]
    assert [c.name for c in chat.slack.channels.values()] == ["inc-1-sev3-checkout-errors"]


def test_an_archived_channel_with_the_name_gets_a_numbered_one(chat: Chat) -> None:
    chat.slack.add_channel("inc-1-sev3-checkout-errors", archived=True)
    chat.container.incidents.execute(Declare(title="Checkout errors", actor="alice@example.com"))
    wait_for(lambda: chat.slack.by_name("inc-1-sev3-checkout-errors-2"))


def test_rate_limits_and_errors_are_retried_without_duplicates(chat: Chat) -> None:
    chat.slack.fail("conversations.create", "ratelimited", retry_after=1)
    chat.slack.fail("pins.add", "internal_error")
    chat.container.incidents.execute(Declare(title="Flaky Slack", actor="alice@example.com"))
    channel = wait_for(lambda: chat.slack.by_name("inc-1-sev3-flaky-slack"))
    wait_for(lambda: channel.pins, timeout=30)
    assert len(chat.slack.channels) == 1
    # The declare is posted once, however often the row was delivered.
    wait_for(lambda: any("Flaky Slack" in t for t in chat.slack.texts(channel.id)[1:]))
    posted = [t for t in chat.slack.texts(channel.id) if t.startswith("*Flaky Slack*")]
    assert len(posted) == 1
    # The links were posted once, before the failed pin, and pinned on the retry.
    links = [m for m in chat.slack.messages if "links:" in m.text]
    assert len(links) == 1
    assert channel.pins == [links[0].ts]


# --- messages to the timeline ----------------------------------------------------------


def test_messages_threads_edits_and_deletions_become_events(chat: Chat) -> None:
    incident_id, channel_id = declared(chat)
    base = {"type": "message", "channel": channel_id, "user": BOB}
    first = chat.event(base | {"text": "looking at the db", "ts": "1700000100.000200"})
    assert first.json()["outcome"] == "created"
    reply = chat.event(
        base
        | {"text": "replica lag 30s", "ts": "1700000101.000300", "thread_ts": "1700000100.000200"}
    )
    assert reply.status_code == 200
    chat.event(
        {
            "type": "message",
            "subtype": "message_changed",
            "channel": channel_id,
            "ts": "1700000102.000000",
            "message": {
                "user": BOB,
                "text": "looking at the primary db",
                "ts": "1700000100.000200",
                "edited": {"user": BOB, "ts": "1700000102.000000"},
            },
        }
    )
    chat.event(
        {
            "type": "message",
            "subtype": "message_deleted",
            "channel": channel_id,
            "deleted_ts": "1700000101.000300",
            "previous_message": {"user": BOB, "ts": "1700000101.000300"},
        }
    )
    rows = chat.timeline(incident_id)
    assert [r.type for r in rows] == [
        "im.slack.message",
        "im.slack.message",
        "im.slack.message.edit",
        "im.slack.message.delete",
    ]
    root = message_event_id("slack", TEAM, channel_id, "1700000100.000200")
    assert rows[0].event_id == root
    body = orjson.loads(rows[1].body)
    assert body["data"]["thread_ts"] == "1700000100.000200"
    assert body["data"]["thread_event_id"] == root
    assert body["data"]["permalink"].endswith(
        f"/archives/{channel_id}/p1700000101000300?thread_ts=1700000100.000200&cid={channel_id}"
    )
    assert body["data"]["author_email"] == "bob@example.com"
    assert orjson.loads(rows[2].body)["data"]["message_event_id"] == root
    assert "text" not in orjson.loads(rows[3].body)["data"]
    assert rows[0].actor == f"slack:{TEAM}:{BOB}"


def test_retried_deliveries_are_stored_once(chat: Chat) -> None:
    incident_id, channel_id = declared(chat)
    event = {"type": "message", "channel": channel_id, "user": BOB, "text": "hi", "ts": "1.000001"}
    assert chat.event(event).json()["outcome"] == "created"
    # Slack signs a retry anew (a later timestamp), with the same event.
    retry = {"X-Slack-Retry-Num": "1", "X-Slack-Retry-Reason": "http_timeout"}
    again = chat.event(event, int(time.time()) + 3, **retry)
    assert again.json()["outcome"] == "duplicate"
    assert len(chat.timeline(incident_id)) == 1


def test_other_channels_bots_and_url_verification(chat: Chat) -> None:
    incident_id, channel_id = declared(chat)
    ignored = chat.event(
        {"type": "message", "channel": "CRANDOM01", "user": BOB, "text": "x", "ts": "2.0"}
    )
    assert ignored.json()["ignored"] == "not an incident channel"
    bot = chat.event(
        {"type": "message", "channel": channel_id, "bot_id": "B1", "text": "x", "ts": "3.0"}
    )
    assert bot.json()["ignored"] == "not a person's message"
    assert chat.timeline(incident_id) == []
    body = orjson.dumps({"type": "url_verification", "challenge": "abc123"})
    answer = chat.client.post(
        "/api/v1/chat/slack/acme/events",
        content=body,
        headers=sign(SECRET, body) | {"Content-Type": "application/json"},
    )
    assert answer.json() == {"challenge": "abc123"}
    bad = b"not json"
    answer = chat.client.post(
        "/api/v1/chat/slack/acme/events", content=bad, headers=sign(SECRET, bad)
    )
    assert answer.status_code == 400


# --- timeline to chat ------------------------------------------------------------------


def test_changes_are_posted_and_the_topic_kept_current(chat: Chat) -> None:
    _, channel_id = declared(chat)
    chat.command("status mitigated", channel=channel_id)
    wait_for(lambda: "mitigated" in chat.slack.channels[channel_id].topic)
    wait_for(lambda: any("Incident Mitigated" in t for t in chat.slack.texts(channel_id)))


def test_nothing_confidential_reaches_a_public_channel(chat: Chat) -> None:
    incident_id, channel_id = declared(chat, "new Login failures")
    container = chat.container
    # A confidential note on a public incident: the channel's audience may not see it.
    container.incidents.execute(
        AddNote(
            incident_id,
            "alice@example.com",
            None,
            text="root cause: vendor X breach",
            visibility="confidential",
        )
    )
    # A public note whose fields are personal data: redacted before it is posted.
    token = chat.client.app.state.container.tokens.create("alice@example.com")[1]
    answer = chat.client.post(
        "/api/v1/timeline/events",
        json={
            "specversion": "1.0",
            "id": "pii-1",
            "source": "im://tests",
            "type": "im.note.add",
            "subject": f"incident/{incident_id}",
            "data": {"text": "call jane.doe@example.com", "customer_email": "jane.doe@example.com"},
            "imdataclass": {"pii": ["$.text"]},
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code in (200, 201), answer.text
    container.incidents.execute(
        AddNote(incident_id, "alice@example.com", None, text="public marker note")
    )
    wait_for(lambda: any("public marker note" in t for t in chat.slack.texts(channel_id)))
    wait_for(lambda: any("[REDACTED]" in t for t in chat.slack.texts(channel_id)))
    everything = " ".join([*chat.slack.texts(channel_id), chat.slack.channels[channel_id].topic])
    assert "vendor X" not in everything
    assert "jane.doe" not in everything


def test_a_malformed_event_is_a_422_naming_the_field(chat: Chat) -> None:
    _, channel_id = declared(chat)
    answer = chat.event({"type": "message", "channel": channel_id, "user": BOB, "ts": "soon"})
    assert answer.status_code == 422
    assert answer.json()["errors"][0]["field"] == "event.ts"
    body = orjson.dumps({"type": "event_callback", "event": {}})
    answer = chat.client.post(
        "/api/v1/chat/slack/acme/events",
        content=body,
        headers=sign(SECRET, body) | {"Content-Type": "application/json"},
    )
    assert answer.status_code == 422


def test_a_public_channel_keeps_nothing_of_an_incident_made_confidential(chat: Chat) -> None:
    incident_id, channel_id = declared(chat, "new Card processor errors")
    chat.container.incidents.execute(
        Update(incident_id, "alice@example.com", None, changes={"classification": "confidential"})
    )
    note = chat.container.incidents.execute(
        AddNote(incident_id, "alice@example.com", None, text="the processor is Acme Pay")
    )
    wait_for(lambda: "not shown in this channel" in chat.slack.channels[channel_id].topic)
    topic = chat.slack.channels[channel_id].topic
    assert "Card processor" not in topic
    # Once the note's row is delivered, it was not posted.
    channels = chat.container.chat["slack:acme"].channels  # type: ignore[attr-defined]
    wait_for(lambda: channels.delivered("slack:acme", note.events[0].event_id))
    assert not any("Acme Pay" in t for t in chat.slack.texts(channel_id))


def test_incidents_worker_delivers_to_slack(tmp_path: Any) -> None:
    from incidents.app import build_worker

    fake = FakeSlack().start()
    try:
        connector = {
            "name": "acme",
            "bot_token": fake.token,
            "signing_secret": SECRET,
            "api_url": fake.url,
        }
        settings = make_settings(
            f"sqlite:///{tmp_path / 'w.db'}",
            connectors={"slack": [connector]},
            outbox_relay=False,
        )
        container = build_container(settings)
        container.start()
        try:
            container.incidents.execute(Declare(title="Worker made", actor="alice@example.com"))
        finally:
            container.close()
        assert fake.channels == {}  # the server did not deliver: its relay is off
        worker = build_worker(settings)
        try:
            assert "slack:acme" in worker.relay.destinations
            worker.relay.drain()
        finally:
            worker.close()
        channel = fake.by_name("inc-1-sev3-worker-made")
        assert channel is not None and len(channel.pins) == 1
    finally:
        fake.stop()


def test_a_command_without_user_or_channel_is_a_422_naming_the_field(chat: Chat) -> None:
    body = urlencode({"command": "/im", "text": "new X", "channel_id": "C1"}).encode()
    answer = chat.client.post(
        "/api/v1/chat/slack/acme/commands", content=body, headers=sign(SECRET, body)
    )
    assert answer.status_code == 422
    assert answer.json()["errors"] == [{"field": "user_id", "detail": "missing"}]
    assert chat.container.incidents.get("INC-1", None) is None


def test_recorded_messages_are_redacted_like_any_event(chat: Chat) -> None:
    incident_id, channel_id = declared(chat)
    chat.event({"type": "message", "channel": channel_id, "user": BOB, "text": "hi", "ts": "7.0"})
    # Carol reads incidents but holds no pii_access: the author's email is withheld.
    _, token = chat.container.tokens.create("carol@example.com")
    page = chat.client.get(
        f"/api/v1/incidents/{incident_id}/timeline",
        params={"type": "im.slack.message"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert page.status_code == 200, page.text
    (entry,) = page.json()["events"]
    assert entry["data"]["author_email"] == "[REDACTED]"
    assert entry["data"]["text"] == "hi"
    assert entry["redaction_applied"] is True


def post_alert(chat: Chat, incident_id: str, key: str) -> None:
    token = chat.container.tokens.create("alice@example.com")[1]
    answer = chat.client.post(
        "/api/v1/timeline/events",
        json={
            "specversion": "1.0",
            "id": f"alert-{key}",
            "source": "alertmanager://prod",
            "type": "im.alert.trigger",
            "subject": f"incident/{incident_id}",
            "data": {"alert": {"key": key, "summary": "replica lag", "severity": "SEV-2"}},
        },
        headers={"Authorization": f"Bearer {token}"},
    )
    assert answer.status_code in (200, 201), answer.text


def test_ack_names_an_alert_of_the_incident(chat: Chat) -> None:
    incident_id, channel_id = declared(chat)
    other_id, _ = declared(chat, "new Other incident", trigger="t2")
    post_alert(chat, incident_id, "am/db-lag")
    post_alert(chat, other_id, "am/other")
    reply = chat.command("ack am/db-lag", channel=channel_id).json()["text"]
    assert reply == f"acknowledged alert am/db-lag on {incident_id}"
    # Outside any incident channel, the alert's own incident.
    reply = chat.command("ack am/other").json()["text"]
    assert reply == f"acknowledged alert am/other on {other_id}"
    # In this incident's channel, another incident's alert is not found.
    reply = chat.command("ack am/other", channel=channel_id).json()["text"]
    assert f"no alert 'am/other' on {incident_id}" in reply
    assert "no alert 'am/nope'" in chat.command("ack am/nope").json()["text"]
    acks = [r for r in chat.container.reader.chain(incident_id) if r.type == "im.alert.acknowledge"]
    assert len(acks) == 1
    assert orjson.loads(acks[0].body)["data"]["alert"]["summary"] == "replica lag"
    # The alert keeps its description and its status.
    listing = chat.container.alerts.page(  # type: ignore[union-attr]
        AlertFilter(incident_id=incident_id), None, 10
    )
    (alert,) = listing.alerts
    assert (alert.record.status, alert.record.summary) == ("firing", "replica lag")


def test_an_incident_over_before_its_channel_gets_none(chat: Chat) -> None:
    from incidents.incident.commands import ChangeStatus
    from incidents.incident.lifecycle import Status

    relay = chat.container.relay
    assert relay is not None
    relay.stop()  # the rows wait until the incident is canceled
    result = chat.container.incidents.execute(Declare(title="Gone", actor="alice@example.com"))
    chat.container.incidents.execute(
        ChangeStatus(result.incident.id, "alice@example.com", None, target=Status.CANCELED)
    )
    relay.drain()
    assert chat.slack.channels == {}
