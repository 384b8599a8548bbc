"""Which chat channel belongs to which incident: the port and the record."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, slots=True)
class IncidentChannel:
    """An incident's channel in one chat workspace (a configured connector)."""

    connector: str
    incident_id: str
    channel_id: str
    name: str
    private: bool
    # The message holding the status board and timeline links (pinned), if posted.
    pinned_ts: str | None = None


class ChannelMap(Protocol):
    """The incident <-> channel record (kept in the database by the store)."""

    def by_incident(self, connector: str, incident_id: str) -> IncidentChannel | None:
        """The incident's channel in this workspace, if it has one."""
        ...

    def by_channel(self, connector: str, channel_id: str) -> IncidentChannel | None:
        """The incident whose channel this is, if any."""
        ...

    def save(self, channel: IncidentChannel) -> IncidentChannel:
        """Record a channel; if the incident has one already, keep and return that one."""
        ...

    def delivered(self, connector: str, event_id: str) -> bool:
        """Whether an event was posted to chat already (a redelivery is skipped); also
        records finished steps under other keys (``setup:<incident>``)."""
        ...

    def mark_delivered(self, connector: str, event_id: str) -> None:
        """Remember that an event was posted."""
        ...
