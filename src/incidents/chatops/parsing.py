"""Slash command text -> a command, or a usage error that says what is wrong.

``/im new [title] [sev]``, ``/im ic @user``, ``/im status <state>``,
``/im note <text>``, ``/im ack [alert]``, ``/im help``. Outside an incident channel
the incident comes first: ``/im status INC-12 mitigated``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from incidents.incident.lifecycle import Status, parse_severity, parse_status

MAX_TITLE = 500
MAX_NOTE = 10_000
_INCIDENT = re.compile(r"^inc-\d{1,12}$", re.IGNORECASE)
_SEVERITY = re.compile(r"^sev-?[1-4]$", re.IGNORECASE)
# A user mention as Slack escapes it: <@U123ABC> or <@U123ABC|name>.
_MENTION = re.compile(r"^<@([UW][A-Z0-9]{2,30})(?:\|[^>]*)?>$")

HELP = """\
*Incident commands*
`/im new [title] [sev1-4]` declare an incident (a channel is created for it)
`/im ic @user` make someone the incident commander
`/im status <open|mitigated|resolved|closed|canceled>` move the incident
`/im note <text>` add a note to the timeline
`/im ack [alert]` acknowledge the incident, or one of its alerts by key
`/im help` this text
Outside an incident's channel, name the incident first: `/im status INC-12 mitigated`."""


class UsageError(ValueError):
    """The command text cannot be understood; the message says how to write it."""


@dataclass(frozen=True, slots=True)
class Help:
    pass


@dataclass(frozen=True, slots=True)
class New:
    title: str
    severity: str


@dataclass(frozen=True, slots=True)
class Commander:
    incident_id: str | None
    user_id: str


@dataclass(frozen=True, slots=True)
class SetStatus:
    incident_id: str | None
    status: Status


@dataclass(frozen=True, slots=True)
class Note:
    incident_id: str | None
    text: str


@dataclass(frozen=True, slots=True)
class Ack:
    incident_id: str | None
    alert: str | None


ChatCommand = Help | New | Commander | SetStatus | Note | Ack
DEFAULT_TITLE = "Untitled incident"


def _incident_first(words: list[str]) -> tuple[str | None, list[str]]:
    if words and _INCIDENT.fullmatch(words[0]):
        return words[0].upper(), words[1:]
    return None, words


def parse(text: str) -> ChatCommand:
    """The command in a slash command's text; raises :class:`UsageError`."""
    words = text.split()
    if not words or words[0].lower() == "help":
        return Help()
    verb, args = words[0].lower(), words[1:]
    if verb in ("new", "declare"):
        severity = "SEV-3"
        if args and _SEVERITY.fullmatch(args[-1]):
            severity = parse_severity(args[-1]) or severity
            args = args[:-1]
        title = " ".join(args) or DEFAULT_TITLE
        if len(title) > MAX_TITLE:
            raise UsageError(
                f"the title is too long ({len(title)} characters, at most {MAX_TITLE})"
            )
        return New(title, severity)
    incident_id, rest = _incident_first(args)
    if verb in ("ic", "commander"):
        if len(rest) != 1 or not _MENTION.fullmatch(rest[0]):
            raise UsageError("name one person: `/im ic @user`")
        match = _MENTION.fullmatch(rest[0])
        assert match is not None
        return Commander(incident_id, match.group(1))
    if verb == "status":
        if len(rest) != 1:
            raise UsageError(
                "name the new status: `/im status mitigated` "
                f"(one of {', '.join(s.value for s in Status if s is not Status.DRAFT)})"
            )
        status = parse_status(rest[0])
        if status is None or status is Status.DRAFT:
            raise UsageError(
                f"{rest[0]!r} is not a status; use one of "
                f"{', '.join(s.value for s in Status if s is not Status.DRAFT)}"
            )
        return SetStatus(incident_id, status)
    if verb == "note":
        note = " ".join(rest)
        if not note:
            raise UsageError("write the note: `/im note restarted the primary`")
        if len(note) > MAX_NOTE:
            raise UsageError(f"the note is too long ({len(note)} characters, at most {MAX_NOTE})")
        return Note(incident_id, note)
    if verb in ("ack", "acknowledge"):
        if len(rest) > 1:
            raise UsageError("name at most one alert: `/im ack [alert]`")
        return Ack(incident_id, rest[0] if rest else None)
    raise UsageError(f"unknown command {verb!r}; try `/im help`")
