"""The board projection: each incident's :class:`BoardState`, folded in the append
transaction like every other projection, and rebuilt from the log the same way."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from incidents.boards.state import BoardState, data_classes_of
from incidents.events.envelope import Event
from incidents.log.ports import ProjectionRows
from incidents.log.projections import ProjectionSpec
from incidents.log.records import StoredEvent

# The name the board projection is registered under, and its table.
BOARDS = "boards"
TABLE = "boards"


def board_row(state: BoardState) -> tuple[Any, ...]:
    """The ``boards`` row (column order of the table)."""
    return (state.incident_id, state.last_position, state.to_json())


class BoardSession:
    """Boards changed in one transaction, written back by :meth:`flush`.

    Nothing in a transaction reads a board, so folding is deferred: events are
    queued per incident, and :meth:`flush` loads every board they touch in one query,
    applies them in order and saves them in one statement. Alerts that correlation
    places on an incident as it goes would otherwise cost a query each.
    """

    def __init__(self, rows: ProjectionRows) -> None:
        self._rows = rows
        self._boards: dict[str, BoardState | None] = {}
        # Per incident, in log order: (row, its data, its data classes, rehash).
        self._pending: dict[str, list[tuple[StoredEvent, object, list[str], bool]]] = {}

    def prepare(self, events: Sequence[Event]) -> None:
        """Nothing to load ahead: boards are loaded together when flushed."""

    def fold(self, row: StoredEvent, event: Event | None = None) -> None:
        """Queue an event of an incident for that incident's board."""
        incident_id = row.incident_id
        if incident_id is None:
            return
        if event is not None:
            data: object = event.data if event.has_data else None
            tags = event.data_class
            body: dict[str, Any] = {"data_class": tags} if tags is not None else {}
        else:
            body = orjson.loads(row.body) if row.body else {}
            data = body.get("data")
        # A row the writer has just hashed is not hashed again (its link is checked).
        item = (row, data, data_classes_of(body), event is None)
        self._pending.setdefault(incident_id, []).append(item)

    def flush(self) -> None:
        if not self._pending:
            return
        missing = [i for i in self._pending if i not in self._boards]
        if missing:
            found = self._rows.load(TABLE, missing)
            for incident_id in missing:
                row = found.get(incident_id)
                self._boards[incident_id] = BoardState.from_json(bytes(row[-1])) if row else None
        changed: list[BoardState] = []
        for incident_id in sorted(self._pending):
            state = self._boards[incident_id]
            if state is None:
                state = self._boards[incident_id] = BoardState(incident_id)
            for row, data, classes, rehash in self._pending[incident_id]:
                state.fold(row, data, classes, rehash=rehash)
            changed.append(state)
        self._pending.clear()
        self._rows.save(TABLE, [board_row(state) for state in changed])


def refold_board(rows: ProjectionRows, incident_id: str, chain: Sequence[StoredEvent]) -> None:
    """Rebuild one incident's board from its chain (a board folds only its own
    incident's events, so this is exactly what a full rebuild gives)."""
    rows.delete(TABLE, "incident_id", [incident_id])
    session = BoardSession(rows)
    for row in chain:
        session.fold(row)
    session.flush()


def board_projection() -> ProjectionSpec:
    """Every incident's status board, as one projection."""
    return ProjectionSpec(BOARDS, None, BoardSession, (TABLE,), refold_board)
