"""Slack's Events API payloads -> chat messages (posted, edited, deleted)."""

from __future__ import annotations

from typing import Any

from incidents.chatops.messages import ChatMessage

PLATFORM = "slack"
# Message subtypes that carry a person's words; joins, topic changes and the like
# are not part of the conversation.
_SPOKEN = {None, "thread_broadcast", "file_share", "me_message"}


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
        ts = _text(inner.get("ts"))
        if ts is None:
            return None
        edited = inner.get("edited")
        edited_ts = _text(edited.get("ts")) if isinstance(edited, dict) else None
        thread = _text(inner.get("thread_ts"))
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
            edited_ts=edited_ts or _text(event.get("event_ts")) or _text(event.get("ts")),
            permalink=permalink(workspace_url, channel, ts, thread),
        )
    if subtype == "message_deleted":
        ts = _text(event.get("deleted_ts"))
        if ts is None:
            return None
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
            thread_ts=_text(previous.get("thread_ts")),
        )
    if subtype not in _SPOKEN or event.get("bot_id"):
        return None
    ts = _text(event.get("ts"))
    if ts is None:
        return None
    thread = _text(event.get("thread_ts"))
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
