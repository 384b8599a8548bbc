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
    """Board states loaded for one transaction, written back by :meth:`flush`."""

    def __init__(self, rows: ProjectionRows) -> None:
        self._rows = rows
        self._boards: dict[str, BoardState | None] = {}
        self._dirty: set[str] = set()

    def prepare(self, events: Sequence[Event]) -> None:
        """Load the boards of every incident the events name, in one query."""
        self._load(e.incident_id for e in events if e.incident_id is not None)

    def _load(self, incident_ids: Any) -> None:
        missing = [i for i in set(incident_ids) if i not in self._boards]
        if not missing:
            return
        found = self._rows.load(TABLE, missing)
        for incident_id in missing:
            row = found.get(incident_id)
            self._boards[incident_id] = BoardState.from_json(bytes(row[-1])) if row else None

    def fold(self, row: StoredEvent, event: Event | None = None) -> None:
        """Fold an event of an incident into that incident's board."""
        incident_id = row.incident_id
        if incident_id is None:
            return
        if incident_id not in self._boards:
            self._load([incident_id])
        if event is not None:
            data: object = event.data if event.has_data else None
            tags = event.data_class
            body: dict[str, Any] = {"data_class": tags} if tags is not None else {}
        else:
            body = orjson.loads(row.body) if row.body else {}
            data = body.get("data")
        state = self._boards[incident_id]
        if state is None:
            state = self._boards[incident_id] = BoardState(incident_id)
        state.fold(row, data, data_classes_of(body), rehash=event is None)
        self._dirty.add(incident_id)

    def flush(self) -> None:
        if not self._dirty:
            return
        changed = [self._boards[i] for i in sorted(self._dirty)]
        self._rows.save(TABLE, [board_row(s) for s in changed if s is not None])
        self._dirty.clear()


def board_projection() -> ProjectionSpec:
    """Every incident's status board, as one projection."""
    return ProjectionSpec(BOARDS, None, BoardSession, (TABLE,))
