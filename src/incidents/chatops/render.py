"""Timeline -> chat: what an incident channel is shown, as its audience may see it.

A channel is a reader like any other. Its audience gets a subject of its own (the
incident reader role, the clearance of the incident's classification for a private
channel, ``public`` for a public one, and no data-class attributes), the policy
decides for that subject, and every message goes through the one redaction path
(:func:`incidents.timeline.render.to_entry`). An event the audience may not see is
not posted at all; a field it may not read is shown as the marker.
"""

from __future__ import annotations

from incidents.chatops.channels import IncidentChannel
from incidents.incident.aggregate import Incident
from incidents.log.records import StoredEvent
from incidents.policy.model import Decision, Subject
from incidents.timeline.render import to_entry

# What is posted to an incident's channel: changes to the incident, notes and status
# updates. Alerts are not: a storm would drown the conversation.
POSTED_PREFIXES = ("im.incident.", "im.note.", "im.status_update.")
# Slack's topic limit.
MAX_TOPIC = 250
MAX_MESSAGE = 3_000


def audience(connector: str, channel: IncidentChannel, classification: str) -> Subject:
    """The subject a channel's messages are decided for."""
    return Subject(
        id=f"chat:{connector}:{channel.channel_id}",
        roles=frozenset({"incident.reader"}),
        clearance=classification if channel.private else "public",
    )


def escape(text: str) -> str:
    """Text shown literally by Slack (its three control characters escaped)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def posts(row: StoredEvent) -> bool:
    """Whether this event is posted to its incident's channel."""
    return takes(row.type, row.incident_id is not None)


def takes(event_type: str, in_incident: bool) -> bool:
    """Whether a chat workspace's outbox takes an event (of an incident, posted)."""
    return in_incident and event_type.startswith(POSTED_PREFIXES)


def message_text(row: StoredEvent, decision: Decision) -> str | None:
    """The message for an event, or None when the channel's audience may not see it."""
    if (row.visibility or "public") not in decision.visibilities:
        return None
    entry = to_entry(row, decision)
    title = entry["title"]
    data = entry.get("data")
    content = entry.get("content")
    if isinstance(data, str) and content is None:
        # Data redacted whole: say so rather than post an empty message.
        content = data
    lines = [f"*{escape(str(title))}*"]
    if content:
        lines.append(escape(str(content)))
    lines.append(f"_{escape(str(entry['actor']))}_")
    text = "\n".join(lines)
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 1] + "…"


def withheld_topic(incident_id: str, board_url: str) -> str:
    """The topic of a channel whose audience may no longer see its incident."""
    return f"{incident_id}: not shown in this channel | board {board_url}"


def topic(incident: Incident, commander: str | None, board_url: str, timeline_url: str) -> str:
    """The channel topic: title, severity, status, commander and links, within 250 chars."""
    who = commander or "none yet"
    tail = (
        f" | {incident.severity} | {incident.status} | IC: {who}"
        f" | board {board_url} | timeline {timeline_url}"
    )
    head = f"{incident.id}: {escape(incident.title)}"
    room = MAX_TOPIC - len(tail)
    if len(head) > room:
        head = head[: max(room - 1, 0)] + "…"
    return head + tail
