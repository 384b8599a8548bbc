"""Slash command text: every command with good and bad arguments."""

from __future__ import annotations

import pytest

from incidents.chatops.parsing import (
    DEFAULT_TITLE,
    Ack,
    Commander,
    Help,
    New,
    Note,
    SetStatus,
    UsageError,
    parse,
)
from incidents.incident.lifecycle import Status


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", Help()),
        ("help", Help()),
        ("new Database down sev2", New("Database down", "SEV-2")),
        ("new Database down SEV-1", New("Database down", "SEV-1")),
        ("new Payments 500s", New("Payments 500s", "SEV-3")),
        ("new", New(DEFAULT_TITLE, "SEV-3")),
        ("new sev4", New(DEFAULT_TITLE, "SEV-4")),
        ("ic <@U123ABC>", Commander(None, "U123ABC")),
        ("ic INC-4 <@U123ABC|bob>", Commander("INC-4", "U123ABC")),
        ("status mitigated", SetStatus(None, Status.MITIGATED)),
        ("status inc-12 Resolved", SetStatus("INC-12", Status.RESOLVED)),
        ("note restarted  the primary", Note(None, "restarted the primary")),
        ("note INC-2 done", Note("INC-2", "done")),
        ("ack", Ack(None, None)),
        ("ack db-lag", Ack(None, "db-lag")),
        ("ack INC-9 db-lag", Ack("INC-9", "db-lag")),
    ],
)
def test_good_commands(text: str, expected: object) -> None:
    assert parse(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("launch", "unknown command 'launch'"),
        ("ic", "name one person"),
        ("ic bob", "name one person"),
        ("ic <@U1> <@U2>", "name one person"),
        ("status", "name the new status"),
        ("status sideways", "'sideways' is not a status"),
        ("status draft", "'draft' is not a status"),
        ("status INC-1 open now", "name the new status"),
        ("note", "write the note"),
        ("note INC-3", "write the note"),
        ("ack a b", "at most one alert"),
        ("new " + "x" * 501, "title is too long"),
        ("note " + "x" * 10_001, "note is too long"),
    ],
)
def test_bad_arguments_say_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(text)
