"""The boards' read port: board rows and the few events a board shows.

The SQL adapter is :class:`incidents.store.board_reader.BoardReader`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from incidents.boards.state import BoardState
from incidents.log.records import StoredEvent


class BoardStore(Protocol):
    """Queries over the stored board projection."""

    def boards(self, incident_ids: Iterable[str]) -> dict[str, BoardState]:
        """The boards of the incidents that have one."""
        ...

    def events_at(self, positions: Iterable[int]) -> dict[int, StoredEvent]:
        """The stored events at these positions (by primary key: one indexed lookup each)."""
        ...
