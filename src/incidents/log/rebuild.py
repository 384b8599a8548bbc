"""Rebuilding every registered projection from the log, with the same fold the live
path uses."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from incidents.log.projections import BUILT, META_TABLE, Projections
from incidents.log.records import StoredEvent
from incidents.log.session import AppendSession

# Events folded between two flushes: bounds the session cache on a large log.
_FLUSH_EVERY = 5_000


@dataclass(frozen=True, slots=True)
class RebuildReport:
    events: int
    head_position: int


@dataclass(frozen=True, slots=True)
class RebuildProjections:
    """Empty the projection tables and fold the whole log again, in position order.

    Runs as a command, so it holds the log's write lock: no event can commit between
    the last one folded and the end of the rebuild.
    """

    projections: Projections
    # Every stored event up to a position, in position order (a reader's iterator).
    events_up_to: Callable[[int], Iterator[StoredEvent]]
    progress: Callable[[int], None] | None = None
    # Only build when projections were never built (server start): decided under the
    # lock, so several workers starting together build once.
    only_if_missing: bool = False

    def execute(self, session: AppendSession) -> RebuildReport | None:
        rows = session.tx.projections
        if self.only_if_missing and rows.load(META_TABLE, [BUILT]):
            return None
        head = session.head_position
        rows.truncate(self.projections.tables())
        state = self.projections.open(rows)
        count = 0
        for row in self.events_up_to(head):
            state.fold(row)
            count += 1
            if count % _FLUSH_EVERY == 0:
                state.flush()
                state = self.projections.open(rows)
                if self.progress is not None:
                    self.progress(count)
        state.flush()
        rows.save(META_TABLE, [(BUILT, head)])
        return RebuildReport(count, head)
