"""The chat port: the few operations ChatOps needs from a chat system.

A vendor adapter (Slack today; Teams or Mattermost tomorrow) implements
:class:`ChatPort`; the command logic, channel conventions and message mapping only
ever call these methods, so a new vendor touches none of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol


class ChatError(RuntimeError):
    """The chat system refused or failed an operation; the message names the call."""


class ChannelNameTaken(ChatError):
    """A channel with that name exists already (Slack's ``name_taken``)."""


@dataclass(frozen=True, slots=True)
class Channel:
    """A chat channel: the vendor's id and its name."""

    id: str
    name: str
    private: bool = False


class ChatPort(Protocol):
    """What ChatOps asks of a chat system."""

    def create_channel(self, name: str, *, private: bool) -> Channel:
        """Create a channel; raises :class:`ChannelNameTaken` if the name is in use."""
        ...

    def find_channel(self, name: str) -> Channel | None:
        """The channel with this exact name, if any (to resolve ``name_taken``)."""
        ...

    def set_topic(self, channel_id: str, topic: str) -> None:
        """Replace the channel's topic."""
        ...

    def post(self, channel_id: str, text: str, *, thread_ts: str | None = None) -> str:
        """Post a message; returns its id (Slack's ``ts``)."""
        ...

    def invite(self, channel_id: str, user_ids: Sequence[str]) -> None:
        """Add users to the channel (users already in it are not an error)."""
        ...

    def pin(self, channel_id: str, message_id: str) -> None:
        """Pin a message (already pinned is not an error)."""
        ...

    def user_id_by_email(self, email: str) -> str | None:
        """The chat user with this email, or None (cached by the adapter)."""
        ...

    def email_of(self, user_id: str) -> str | None:
        """The email of a chat user, or None when it has none or is unknown (cached)."""
        ...

    def verify_request(self, body: bytes, headers: Mapping[str, str]) -> bool:
        """Whether an inbound request is signed by the chat system, fresh and not a replay."""
        ...
