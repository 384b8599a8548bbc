"""The incident service layer: what the API, CLI and integrations ask of incidents."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from incidents.incident.aggregate import Incident
from incidents.incident.commands import CommandResult
from incidents.incident.correlation.alert import Alert
from incidents.incident.correlation.engine import AlertOutcome, IngestAlerts
from incidents.incident.correlation.rules import CorrelationRules
from incidents.incident.document import relatives
from incidents.incident.listing import IncidentQuery, decode_after, encode_after
from incidents.incident.ports import IncidentStore
from incidents.log.commands import Command
from incidents.log.ports import EventLog
from incidents.log.projections import BUILT, Projections
from incidents.log.query import CursorCodec
from incidents.log.rebuild import RebuildProjections, RebuildReport
from incidents.timeline.group_commit import GroupCommitAppender


@dataclass(frozen=True, slots=True)
class IncidentPage:
    """One page of an incident list and the cursor of the next (None on the last)."""

    incidents: list[Incident]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Family:
    """An incident's relatives that the reader may see."""

    parent: Incident | None
    children: list[Incident]
    related: list[Incident]
    merged_into: Incident | None
    merged_from: list[Incident]


class IncidentService:
    """Runs commands through the log's writer and answers queries from projections."""

    def __init__(
        self,
        appender: GroupCommitAppender,
        reader: IncidentStore,
        events: EventLog,
        rules: CorrelationRules,
        cursors: CursorCodec,
        projections: Projections,
    ) -> None:
        self._appender = appender
        self._projections = projections
        self._cursors = cursors
        self._events = events
        self.reader = reader
        self.rules = rules

    def submit(self, command: Command) -> Future[Any]:
        """Queue a command; the future resolves once its events are committed."""
        return self._appender.submit_command(command)

    def execute(self, command: Command) -> CommandResult:
        """Run a command and wait for it (raises the command's ``Rejected`` error)."""
        result: CommandResult = self.submit(command).result()
        return result

    def ingest(self, alerts: list[Alert], recorded_by: str) -> Future[list[AlertOutcome]]:
        """Correlate and record one delivery of alerts."""
        return self.submit(IngestAlerts(tuple(alerts), self.rules, recorded_by))

    def get(self, incident_id: str, visibilities: frozenset[str] | None) -> Incident | None:
        """The incident, if it exists and its classification is visible to the reader."""
        incident = self.reader.get(incident_id)
        return incident if incident is not None and incident.visible_to(visibilities) else None

    def page(
        self,
        query: IncidentQuery,
        visibilities: frozenset[str] | None,
        cursor: str | None,
        limit: int,
    ) -> IncidentPage:
        """A page of matching incidents, newest first (raises ``InvalidQuery`` on a bad cursor)."""
        after = decode_after(self._cursors, query, cursor) if cursor else None
        rows = self.reader.page(query, visibilities, after, limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        next_cursor = (
            encode_after(self._cursors, query, rows[-1].declared_us, rows[-1].id)
            if more and rows
            else None
        )
        return IncidentPage(rows, next_cursor)

    def family(self, incident: Incident, visibilities: frozenset[str] | None) -> Family:
        """Parent, children, related incidents and merges of ``incident`` the reader may see."""

        def visible(ids: Iterable[str | None]) -> list[Incident]:
            found = (self.get(i, visibilities) for i in dict.fromkeys(ids) if i is not None)
            return [other for other in found if other is not None]

        children = [c for c in self.reader.children(incident.id) if c.visible_to(visibilities)]
        parents = visible([incident.parent_id])
        merged_into = visible([incident.merged_into])
        return Family(
            parent=parents[0] if parents else None,
            children=children,
            related=visible(incident.related),
            merged_into=merged_into[0] if merged_into else None,
            merged_from=visible(incident.merged_from),
        )

    def hidden_relatives(
        self, shown: Iterable[Incident], visibilities: frozenset[str] | None
    ) -> frozenset[str]:
        """The relatives named by ``shown`` that the reader may not see: their ids are
        left out of the documents, as if they did not exist."""
        named = {i for incident in shown for i in relatives(incident)}
        if visibilities is None or not named:
            return frozenset()
        found = self.reader.classifications(named)
        return frozenset(i for i, level in found.items() if level not in visibilities)

    def rebuild(self, progress: Callable[[int], None] | None = None) -> RebuildReport:
        """Rebuild every projection from the log (holds the write lock while it runs)."""
        command = RebuildProjections(self._projections, self._events.in_position_order, progress)
        report: RebuildReport = self.submit(command).result()
        return report

    def ensure_built(self) -> RebuildReport | None:
        """Build the projections once on a database that has never had them."""
        if self.reader.meta(BUILT) is not None:
            return None
        command = RebuildProjections(
            self._projections, self._events.in_position_order, only_if_missing=True
        )
        report: RebuildReport | None = self.submit(command).result()
        return report
