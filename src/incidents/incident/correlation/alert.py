"""An alert as every provider's payload is reduced to before correlation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from incidents.events.envelope import Event

# Alert event types by what happened to the alert.
TRIGGER = "im.alert.trigger"
ACKNOWLEDGE = "im.alert.acknowledge"
RESOLVE = "im.alert.resolve"


@dataclass(frozen=True, slots=True)
class Alert:
    """One provider alert notification, ready to correlate and record.

    ``key`` names the alert series (it stays the same from trigger to resolve);
    ``event_id`` and ``origin_id`` name this one notification, derived from the
    provider's own identifiers so that a re-delivery is a dedupe hit.
    """

    provider: str
    key: str
    event_type: str
    time_us: int
    event_id: str
    origin_id: str
    # The CloudEvent source, one per integration (e.g. alertmanager://prod).
    source: str
    name: str | None = None
    severity: str | None = None
    summary: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    # Normalised attributes fingerprints may use (alert_rule, service, host, ...).
    attributes: dict[str, str] = field(default_factory=dict)
    # The provider's own description of the alert, kept as the event's data.alert.
    document: dict[str, Any] = field(default_factory=dict)
    # For alerts that arrived as CloudEvents: the client's event, stored as sent.
    event: Event | None = None

    def field(self, name: str) -> str | None:
        """A fingerprint field: a normalised attribute, else a label; None if absent."""
        value = self.attributes.get(name)
        if value is None:
            value = self.labels.get(name)
        if value is None or value == "":
            return None
        return value
