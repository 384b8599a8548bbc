"""Read queries on the board projection, for both backends."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine, select

from incidents.boards.state import BoardState
from incidents.log.records import EVENT_COLUMNS, StoredEvent
from incidents.store.schema import boards, timeline_events

_COLUMNS = [timeline_events.c[name] for name in EVENT_COLUMNS]


class BoardReader:
    """Board rows, and the events at the positions a board names."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def boards(self, incident_ids: Iterable[str]) -> dict[str, BoardState]:
        wanted = sorted(set(incident_ids))
        found: dict[str, BoardState] = {}
        with self._engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                stmt = select(boards.c.incident_id, boards.c.state).where(
                    boards.c.incident_id.in_(wanted[start : start + 500])
                )
                for incident_id, raw in conn.execute(stmt):
                    found[incident_id] = BoardState.from_json(bytes(raw))
        return found

    def events_at(self, positions: Iterable[int]) -> dict[int, StoredEvent]:
        wanted = sorted(set(positions))
        found: dict[int, StoredEvent] = {}
        with self._engine.connect() as conn:
            for start in range(0, len(wanted), 500):
                stmt = select(*_COLUMNS).where(
                    timeline_events.c.position.in_(wanted[start : start + 500])
                )
                for row in conn.execute(stmt):
                    event = StoredEvent(*row)
                    found[event.position] = event
        return found
