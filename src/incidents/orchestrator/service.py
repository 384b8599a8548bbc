"""The orchestrator's service layer: what the API, CLI and connectors ask of incidents."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from incidents.correlation.alert import Alert
from incidents.correlation.engine import AlertOutcome, IngestAlerts
from incidents.correlation.rules import CorrelationRules
from incidents.orchestrator.commands import CommandResult
from incidents.orchestrator.incident import Incident
from incidents.orchestrator.projection import BUILT
from incidents.orchestrator.rebuild import RebuildProjections, RebuildReport
from incidents.store.event_reader import EventReader
from incidents.store.incident_reader import IncidentReader
from incidents.timeline.append import Command, GroupCommitAppender


class IncidentService:
    """Runs commands through the log's writer and answers queries from projections."""

    def __init__(
        self,
        appender: GroupCommitAppender,
        reader: IncidentReader,
        events: EventReader,
        rules: CorrelationRules,
    ) -> None:
        self._appender = appender
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
        if incident is None:
            return None
        if visibilities is not None and incident.classification not in visibilities:
            return None
        return incident

    def rebuild(self, progress: Callable[[int], None] | None = None) -> RebuildReport:
        """Rebuild every projection from the log (holds the write lock while it runs)."""
        command = RebuildProjections(self._events.in_position_order, progress)
        report: RebuildReport = self.submit(command).result()
        return report

    def ensure_built(self) -> RebuildReport | None:
        """Build the projections once on a database that has never had them."""
        if self.reader.meta(BUILT) is not None:
            return None
        command = RebuildProjections(self._events.in_position_order, only_if_missing=True)
        report: RebuildReport | None = self.submit(command).result()
        return report
