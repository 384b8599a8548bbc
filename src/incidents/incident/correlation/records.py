"""What the projections remember about alerts and correlation groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from incidents.events.envelope import EncodedObject, encoded


@dataclass(slots=True)
class AlertRecord:
    """One alert (a provider's alert series) and the incident it is attached to."""

    key: str
    provider: str
    status: str
    incident_id: str | None
    first_us: int
    last_us: int
    last_position: int
    severity: str | None = None
    summary: str | None = None
    # The rule that attached it (or opened its incident), if any.
    rule: str | None = None
    events: int = 0
    # The latest alert document as the provider described it.
    alert: dict[str, Any] = field(default_factory=dict)
    # The visibilities of the events the document, severity and summary come from
    # ("public" included): a later event may carry no document, or one without a
    # severity or summary, and be less restricted. Only a reader who may see all of
    # them is shown those. None: a row folded before they were recorded.
    document_visibilities: list[str] | None = None

    def to_row(self) -> tuple[Any, ...]:
        """The ``alerts`` row (column order of the table)."""
        return (
            self.key,
            self.incident_id,
            self.status,
            self.provider,
            self.severity,
            self.summary,
            self.first_us,
            self.last_us,
            self.last_position,
            self.state_json(),
        )

    def state_json(self) -> bytes:
        """The record as JSON: fields in declaration order, nested keys sorted.

        The same bytes whether folded from a new event or from its stored
        (key-sorted) body during a rebuild.
        """
        if type(self.alert) is EncodedObject:
            # The document's encoding is spliced in; the rest are scalars, so the
            # result is what encoding the dataclass gives (a test holds the two equal).
            return orjson.dumps(
                {
                    "key": self.key,
                    "provider": self.provider,
                    "status": self.status,
                    "incident_id": self.incident_id,
                    "first_us": self.first_us,
                    "last_us": self.last_us,
                    "last_position": self.last_position,
                    "severity": self.severity,
                    "summary": self.summary,
                    "rule": self.rule,
                    "events": self.events,
                    "alert": encoded(self.alert),
                    "document_visibilities": self.document_visibilities,
                }
            )
        # orjson encodes dataclasses natively, much faster than asdict().
        return orjson.dumps(self, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> AlertRecord:
        return cls(**orjson.loads(row[9]))


@dataclass(slots=True)
class GroupRecord:
    """The incident a correlation fingerprint groups into, and its window times."""

    key: str
    incident_id: str
    rule: str
    opened_us: int
    last_us: int

    def to_row(self) -> tuple[Any, ...]:
        return (self.key, self.incident_id, self.rule, self.opened_us, self.last_us)

    @classmethod
    def from_row(cls, row: tuple[Any, ...]) -> GroupRecord:
        return cls(row[0], row[1], row[2], int(row[3]), int(row[4]))
