"""Slack's Events API payloads -> chat messages (posted, edited, deleted)."""

from __future__ import annotations

import re
from typing import Any

from incidents.chatops.messages import ChatMessage

PLATFORM = "slack"
# Message subtypes that carry a person's words; joins, topic changes and the like
# are not part of the conversation.
_SPOKEN = {None, "thread_broadcast", "file_share", "me_message"}
# Slack's message timestamps: seconds, a dot, microseconds.
_TS = re.compile(r"^\d{1,12}(\.\d{1,6})?$")


class BadEvent(ValueError):
    """An event Slack would not send: names the field at fault."""

    def __init__(self, field: str) -> None:
        self.field = field
        super().__init__(f"{field} is not a Slack message timestamp (seconds.micros)")


def _ts(value: Any, field: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or not _TS.fullmatch(value):
        raise BadEvent(field)
    return value


def permalink(workspace_url: str, channel: str, ts: str, thread_ts: str | None) -> str:
    """The message's address in the workspace (Slack's archive link format)."""
    link = f"{workspace_url}/archives/{channel}/p{ts.replace('.', '')}"
    if thread_ts and thread_ts != ts:
        link += f"?thread_ts={thread_ts}&cid={channel}"
    return link


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def message_from_event(
    event: dict[str, Any], team: str, connector: str, workspace_url: str
) -> ChatMessage | None:
    """The message an ``event_callback``'s event describes, or None to ignore it
    (not a message, a bot's own post, or a subtype that is not conversation)."""
    if event.get("type") != "message":
        return None
    channel = _text(event.get("channel"))
    if channel is None:
        return None
    subtype = event.get("subtype")
    if subtype == "message_changed":
        inner = event.get("message")
        if not isinstance(inner, dict) or inner.get("bot_id"):
            return None
        ts = _ts(inner.get("ts"), "event.message.ts")
        assert ts is not None
        edited = inner.get("edited")
        edited_ts = _ts(
            edited.get("ts")
            if isinstance(edited, dict)
            else event.get("event_ts", event.get("ts")),
            "event.message.edited.ts",
        )
        thread = _ts(inner.get("thread_ts"), "event.message.thread_ts", required=False)
        return ChatMessage(
            PLATFORM,
            connector,
            team,
            channel,
            ts,
            _text(inner.get("user")),
            str(inner.get("text") or ""),
            kind="edit",
            thread_ts=thread,
            edited_ts=edited_ts,
            permalink=permalink(workspace_url, channel, ts, thread),
        )
    if subtype == "message_deleted":
        ts = _ts(event.get("deleted_ts"), "event.deleted_ts")
        assert ts is not None
        previous = event.get("previous_message")
        previous = previous if isinstance(previous, dict) else {}
        if previous.get("bot_id"):
            return None
        return ChatMessage(
            PLATFORM,
            connector,
            team,
            channel,
            ts,
            _text(previous.get("user")),
            "",
            kind="delete",
            thread_ts=_ts(
                previous.get("thread_ts"), "event.previous_message.thread_ts", required=False
            ),
        )
    if subtype not in _SPOKEN or event.get("bot_id"):
        return None
    ts = _ts(event.get("ts"), "event.ts")
    assert ts is not None
    thread = _ts(event.get("thread_ts"), "event.thread_ts", required=False)
    return ChatMessage(
        PLATFORM,
        connector,
        team,
        channel,
        ts,
        _text(event.get("user")),
        str(event.get("text") or ""),
        thread_ts=thread,
        permalink=permalink(workspace_url, channel, ts, thread),
    )
