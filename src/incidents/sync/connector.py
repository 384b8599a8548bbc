"""A configured connector as the sync engine sees it (vendor-neutral part)."""

from __future__ import annotations

from dataclasses import dataclass

from incidents.sync.mapping import FieldMapping


@dataclass(frozen=True, slots=True)
class Connector:
    """One entry of ``connectors.<vendor>``: its name, identity, mappings and rules."""

    vendor: str
    name: str
    mappings: tuple[FieldMapping, ...]
    # The directory user whose policy decision governs what reaches the ticket.
    identity: str
    poll_seconds: float = 30.0
    # How far back each poll looks past the last cursor (clock skew, slow commits).
    overlap_seconds: float = 60.0
    # Incidents of these severities get a ticket on their own; others only when linked.
    create_severities: frozenset[str] = frozenset({"SEV-1", "SEV-2", "SEV-3", "SEV-4"})
    # Whether incident notes are copied to the ticket (work notes / comments).
    sync_notes: bool = True
    # The periodic drift sweep (reconcile with repair); 0 turns it off.
    reconcile_seconds: float = 3600.0
    # Put before the incident id in the ticket's correlation field, so that several
    # installations (staging, production) can share one vendor instance.
    correlation_prefix: str = ""

    @property
    def id(self) -> str:
        """``vendor:name``: the outbox destination and the key of its links."""
        return f"{self.vendor}:{self.name}"

    @property
    def actor(self) -> str:
        """The actor of the events this connector records."""
        return f"connector:{self.id}"

    @property
    def source(self) -> str:
        """The CloudEvents source of its sync events."""
        return f"incidents://connectors/{self.vendor}/{self.name}"

    @property
    def sync_type(self) -> str:
        return f"im.{self.vendor}.sync"

    def correlation(self, incident_id: str) -> str:
        """What the ticket's correlation field holds for ``incident_id``."""
        return f"{self.correlation_prefix}{incident_id}"

    def incident_of(self, correlation: str | None) -> str | None:
        """The incident id a ticket's correlation names; None if not one of ours."""
        if not correlation or not correlation.startswith(self.correlation_prefix):
            return None
        return correlation[len(self.correlation_prefix) :] or None

    def mapping(self, name: str) -> FieldMapping | None:
        return next((m for m in self.mappings if m.name == name), None)
