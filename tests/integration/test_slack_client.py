"""The Slack adapter of the chat port against a server that follows Slack's Web API,
through the real slack_sdk WebClient: errors, rate limits, caching, signatures."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from incidents.chatops.port import ChannelNameTaken, ChatError
from incidents.integrations.slack.client import SlackChat
from incidents.integrations.slack.config import SlackConnector
from tests.slack_api import FakeSlack, sign

SECRET = "8f14e45fceea167a5a36dedd4bea2543"


@pytest.fixture
def slack() -> Iterator[FakeSlack]:
    fake = FakeSlack().start()
    yield fake
    fake.stop()


def adapter(slack: FakeSlack, token: str | None = None) -> SlackChat:
    return SlackChat(
        SlackConnector("acme", token or slack.token, SECRET, api_url=slack.url),
        rate_limit_retries=2,
    )


def test_a_wrong_token_is_refused_by_the_server(slack: FakeSlack) -> None:
    with pytest.raises(ChatError, match=r"conversations.create: invalid_auth"):
        adapter(slack, "xoxb-wrong-token").create_channel("x", private=False)
    assert slack.channels == {}


def test_name_taken_and_lookup(slack: FakeSlack) -> None:
    chat = adapter(slack)
    created = chat.create_channel("inc-1-sev1-db", private=True)
    assert created.private
    with pytest.raises(ChannelNameTaken):
        chat.create_channel("inc-1-sev1-db", private=True)
    assert chat.find_channel("inc-1-sev1-db") == created
    assert chat.find_channel("nope") is None


def test_lookup_pages_through_conversations_list(slack: FakeSlack) -> None:
    for n in range(2500):
        slack.add_channel(f"c{n}")
    found = adapter(slack).find_channel("c2499")
    assert found is not None and found.name == "c2499"
    assert slack.count("conversations.list") == 3


def test_errors_name_the_method_and_code(slack: FakeSlack) -> None:
    chat = adapter(slack)
    with pytest.raises(ChatError, match=r"conversations.setTopic: channel_not_found"):
        chat.set_topic("C404", "x")


def test_not_in_channel_joins_then_posts(slack: FakeSlack) -> None:
    channel = slack.add_channel("outside")
    ts = adapter(slack).post(channel, "hello")
    assert slack.count("conversations.join") == 1
    assert slack.texts(channel) == ["hello"]
    assert ts


def test_a_short_rate_limit_is_waited_out(slack: FakeSlack) -> None:
    slack.fail("chat.postMessage", "ratelimited", retry_after=1)
    chat = adapter(slack)
    channel = chat.create_channel("c", private=False)
    started = time.monotonic()
    chat.post(channel.id, "once")
    assert time.monotonic() - started >= 1.0
    assert slack.texts(channel.id) == ["once"]


def test_a_long_rate_limit_fails_the_call(slack: FakeSlack) -> None:
    slack.fail("chat.postMessage", "ratelimited", times=5, retry_after=1)
    chat = SlackChat(
        SlackConnector("acme", slack.token, SECRET, api_url=slack.url), rate_limit_retries=0
    )
    channel = chat.create_channel("c", private=False)
    with pytest.raises(ChatError, match="ratelimited"):
        chat.post(channel.id, "x")
    assert slack.texts(channel.id) == []


def test_repeated_invites_and_pins_are_not_errors(slack: FakeSlack) -> None:
    slack.add_user("U1", "a@example.com")
    chat = adapter(slack)
    channel = chat.create_channel("c", private=False)
    chat.invite(channel.id, ["U1"])
    chat.invite(channel.id, ["U1"])
    ts = chat.post(channel.id, "links")
    chat.pin(channel.id, ts)
    chat.pin(channel.id, ts)
    assert slack.channels[channel.id].pins == [ts]
    with pytest.raises(ChatError, match="user_not_found"):
        chat.invite(channel.id, ["U404"])


def test_user_lookups_are_cached(slack: FakeSlack) -> None:
    slack.add_user("U1", "A@Example.com")
    chat = adapter(slack)
    assert chat.email_of("U1") == "a@example.com"
    assert chat.email_of("U1") == "a@example.com"
    assert chat.user_id_by_email("a@example.com") == "U1"
    assert chat.email_of("U404") is None
    assert chat.email_of("U404") is None
    assert chat.user_id_by_email("nobody@example.com") is None
    assert chat.user_id_by_email("nobody@example.com") is None
    assert slack.count("users.info") == 2
    assert slack.count("users.lookupByEmail") == 1


def test_signatures(slack: FakeSlack) -> None:
    chat = adapter(slack)
    body = b"token=x&text=help"
    assert chat.verify_request(body, sign(SECRET, body))
    assert not chat.verify_request(body, sign(SECRET, body))  # replayed
    assert not chat.verify_request(body + b"&x=1", sign(SECRET, body))  # tampered
    assert not chat.verify_request(body, sign("another-secret-of-16+", body))
    assert not chat.verify_request(body, sign(SECRET, body, int(time.time()) - 301))
    assert not chat.verify_request(body, sign(SECRET, body, int(time.time()) + 301))
    assert chat.verify_request(body, sign(SECRET, body, int(time.time()) - 299))


def test_a_long_retry_after_is_not_waited_out(slack: FakeSlack) -> None:
    slack.fail("chat.postMessage", "ratelimited", retry_after=60)
    chat = adapter(slack)
    channel = chat.create_channel("c", private=False)
    started = time.monotonic()
    with pytest.raises(ChatError, match="ratelimited"):
        chat.post(channel.id, "x")
    assert time.monotonic() - started < 5
