"""What a 403 tells the caller to do: only an administrator is shown the grant command."""

from __future__ import annotations

from incidents.policy.model import ATTRIBUTES, Action, Subject
from incidents.policy.service import PolicyDenied


def test_a_refusal_tells_a_non_administrator_whom_to_ask() -> None:
    reader = Subject("bob@example.com", frozenset({"timeline.reader"}), frozenset(ATTRIBUTES))
    message = str(PolicyDenied(Action.APPEND, reader))
    assert "ask an administrator of this server to grant you the timeline.writer role" in message
    assert "incidents user" not in message


def test_a_refusal_shows_an_administrator_the_grant_command() -> None:
    admin = Subject("root@example.com", frozenset({"admin"}))
    message = str(PolicyDenied(Action.APPEND, admin))
    assert "incidents user roles add --email root@example.com --role timeline.writer" in message


def test_every_action_has_a_refusal_message() -> None:
    nobody = Subject("nobody@example.com")
    for action in Action:
        message = str(PolicyDenied(action, nobody))
        assert "lacks the" in message and "role needed to" in message
