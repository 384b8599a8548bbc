"""The incident domain's read port: the incident and alert projections as stored.

The SQL adapter is :class:`incidents.store.incident_reader.IncidentReader`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from incidents.incident.aggregate import Incident
from incidents.incident.correlation.records import AlertRecord
from incidents.incident.listing import IncidentQuery


class IncidentStore(Protocol):
    """Queries over the stored incident and alert projections."""

    def get(self, incident_id: str) -> Incident | None: ...

    def classifications(self, incident_ids: Iterable[str]) -> dict[str, str]:
        """The classification of each of the incidents that exist."""
        ...

    def page(
        self,
        query: IncidentQuery,
        visibilities: frozenset[str] | None,
        after: tuple[int, str] | None,
        limit: int,
    ) -> list[Incident]:
        """Up to ``limit`` matching incidents, newest first, after the key ``after``."""
        ...

    def children(self, incident_id: str) -> list[Incident]: ...

    def alerts_of(self, incident_id: str) -> list[AlertRecord]: ...

    def meta(self, name: str) -> int | None:
        """A projection meta value (such as whether projections were built)."""
        ...
