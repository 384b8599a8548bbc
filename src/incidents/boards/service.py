"""BoardService: what the API, GraphQL, streams and the console ask of boards.

A board costs the same however long its incident's timeline is: one incident row, one
board row and the handful of events the board names, each fetched by position.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from incidents.boards.personas import Persona, incident_shown, render, wanted
from incidents.boards.ports import BoardStore
from incidents.events.timeformat import now_micros
from incidents.incident.aggregate import Incident
from incidents.incident.lifecycle import ACTIVE
from incidents.incident.listing import IncidentQuery
from incidents.incident.ports import IncidentStore
from incidents.log.records import StoredEvent
from incidents.policy.model import Action, Decision

# The all-boards view shows at most this many open incidents, newest first.
MAX_OPEN_BOARDS = 200
# The incidents that have boards in the all-boards view.
OPEN_INCIDENTS = IncidentQuery(statuses=tuple(sorted(s.value for s in ACTIVE)))


class BoardService:
    """Renders persona boards from the board and incident projections."""

    def __init__(
        self,
        boards: BoardStore,
        incidents: IncidentStore,
        clock: Callable[[], int] = now_micros,
    ) -> None:
        self._boards = boards
        self._incidents = incidents
        self._clock = clock

    def board(
        self, incident_id: str, persona: Persona, decision: Decision
    ) -> dict[str, Any] | None:
        """The incident's board for ``persona``; None if the reader may not see it."""
        incident = self._incidents.get(incident_id)
        if incident is None or not incident_shown(persona, incident, decision):
            return None
        return self._render([incident], persona, decision, summary=False)[0]

    def open_boards(self, persona: Persona, decision: Decision) -> list[dict[str, Any]]:
        """A summary board for every open incident the reader's persona view may show."""
        found = self._incidents.page(OPEN_INCIDENTS, decision.visibilities, None, MAX_OPEN_BOARDS)
        return self.summaries(found, persona, decision)

    def summaries(
        self, incidents: list[Incident], persona: Persona, decision: Decision
    ) -> list[dict[str, Any]]:
        """Summary boards of those ``incidents`` the reader's persona view may show."""
        shown = [i for i in incidents if incident_shown(persona, i, decision)]
        return self._render(shown, persona, decision, summary=True)

    def events_at(self, positions: list[int]) -> dict[int, StoredEvent]:
        """Stored events by position (callers pass each through the redaction path)."""
        return self._boards.events_at(positions)

    def _render(
        self, incidents: list[Incident], persona: Persona, decision: Decision, *, summary: bool
    ) -> list[dict[str, Any]]:
        states = self._boards.boards(i.id for i in incidents)
        with_timeline = decision.allows(Action.READ)
        positions: set[int] = set()
        if with_timeline:
            for incident in incidents:
                state = states.get(incident.id)
                positions |= wanted(persona, state, decision, summary=summary).all()
        rows = self._boards.events_at(positions) if positions else {}
        now = self._clock()
        return [
            render(
                persona,
                incident,
                states.get(incident.id),
                rows,
                decision,
                now,
                with_timeline=with_timeline,
                summary=summary,
            )
            for incident in incidents
        ]
