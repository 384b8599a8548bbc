"""Chat messages in an incident channel, recorded on the incident's timeline.

Each message becomes one event with a deterministic id,
``sha256("<platform>:<team>:<channel>:<ts>")``, so a redelivered message (the chat
system's retries, a replayed request) is a duplicate the log refuses to store twice.
Edits and deletions are events of their own (the original stays on the timeline, as
every event does), with ids derived the same way. The event's visibility is the
incident's classification, and the author's email is a field the policy classifies
as personal data: chat messages are redacted like any other event.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Literal

from incidents.events.envelope import Event, placed
from incidents.events.timeformat import format_micros
from incidents.incident.commands import IncidentNotFound, build_event, state_of
from incidents.log.session import AppendResult, AppendSession

MESSAGE = "im.slack.message"
EDIT = "im.slack.message.edit"
DELETE = "im.slack.message.delete"
Kind = Literal["message", "edit", "delete"]
_TYPES: dict[str, str] = {"message": MESSAGE, "edit": EDIT, "delete": DELETE}


def message_event_id(platform: str, team: str, channel: str, ts: str, *suffix: str) -> str:
    """The event id of a message (``suffix`` tells edits and deletions apart)."""
    key = ":".join((platform, team, channel, ts, *suffix))
    return hashlib.sha256(key.encode()).hexdigest()


def ts_micros(ts: str) -> int:
    """Slack's ``1700000000.000100`` message timestamp as microseconds since the epoch."""
    seconds, _, fraction = ts.partition(".")
    return int(seconds) * 1_000_000 + int((fraction or "0").ljust(6, "0")[:6])


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message, edit or deletion seen in a channel."""

    platform: str
    connector: str
    team: str
    channel_id: str
    # The message's own ts (for an edit or deletion: the message edited or deleted).
    ts: str
    user_id: str | None
    text: str
    kind: Kind = "message"
    thread_ts: str | None = None
    # An edit's own timestamp (each edit of a message is an event of its own).
    edited_ts: str | None = None
    permalink: str | None = None
    author_email: str | None = None

    @property
    def event_id(self) -> str:
        if self.kind == "edit":
            return message_event_id(
                self.platform, self.team, self.channel_id, self.ts, "edit", self.edited_ts or ""
            )
        if self.kind == "delete":
            return message_event_id(self.platform, self.team, self.channel_id, self.ts, "delete")
        return message_event_id(self.platform, self.team, self.channel_id, self.ts)

    def data(self, incident_id: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "incident_id": incident_id,
            "channel": self.channel_id,
            "team": self.team,
            "ts": self.ts,
        }
        if self.kind != "delete":
            data["text"] = self.text
        optional = {
            "user": self.user_id,
            "author_email": self.author_email,
            "thread_ts": self.thread_ts,
            "edited_ts": self.edited_ts,
            "permalink": self.permalink,
        }
        data.update({k: v for k, v in optional.items() if v})
        if self.thread_ts and self.thread_ts != self.ts:
            # A reply names its thread's first message by event id too, so the
            # timeline can nest it without knowing the chat system's ids.
            data["thread_event_id"] = message_event_id(
                self.platform, self.team, self.channel_id, self.thread_ts
            )
        if self.kind != "message":
            data["message_event_id"] = message_event_id(
                self.platform, self.team, self.channel_id, self.ts
            )
        return data


@dataclass(frozen=True, slots=True)
class RecordChatMessage:
    """Append a chat message to its incident's timeline (run under the log lock).

    Build it with :meth:`of`: the event is validated then, on the request's thread;
    under the lock only the incident's classification is put on it.
    """

    incident_id: str
    message: ChatMessage
    recorded_by: str
    template: Event

    @classmethod
    def of(cls, incident_id: str, message: ChatMessage, recorded_by: str) -> RecordChatMessage:
        """The command for ``message`` in ``incident_id``'s channel."""
        when = message.edited_ts if message.kind == "edit" and message.edited_ts else message.ts
        actor = f"{message.platform}:{message.team}:{message.user_id or 'unknown'}"
        template = build_event(
            _TYPES[message.kind],
            incident_id,
            message.data(incident_id),
            actor,
            event_id=message.event_id,
            source=f"{message.platform}://{message.connector}",
            time=format_micros(ts_micros(when)),
        )
        return cls(incident_id, message, recorded_by, template)

    @property
    def dedupe_keys(self) -> list[tuple[str, str]]:
        """Its one dedupe key, looked up with the group's before the log lock (a
        :class:`~incidents.log.commands.KeyedCommand`)."""
        return [(self.template.source, self.template.id)]

    def execute(self, session: AppendSession) -> AppendResult:
        incident = state_of(session).incident(self.incident_id)
        if incident is None:
            raise IncidentNotFound(self.incident_id)
        event = self.template
        if incident.classification != "public":
            event = placed(
                event,
                self.incident_id,
                visibility=incident.classification,
                fingerprint=None,
                data=event.data,
            )
        return session.emit(event, self.recorded_by)
