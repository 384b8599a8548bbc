"""The named projections: state derived from the log, kept current by every append.

Each projection registers its name, the event types it folds, how to open its state
for one transaction, and the tables a rebuild empties. Every append transaction opens
all of them together (:class:`ProjectionSessions`); a rebuild empties every
registered table and folds the whole log again through the same code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from incidents.events.envelope import Event
from incidents.log.ports import Projection, ProjectionFactory, ProjectionRows
from incidents.log.records import StoredEvent

# Markers of the projections as a whole (such as the position they were built up to).
META_TABLE = "projection_meta"
# The meta row saying the projections were built, and up to which position.
BUILT = "built"

# Rewrites a projection's rows of one incident from that incident's whole chain (in
# position order), as a full rebuild would leave them.
IncidentRefold = Callable[[ProjectionRows, str, Sequence[StoredEvent]], None]


@dataclass(frozen=True, slots=True)
class ProjectionSpec:
    """One projection, as the registry knows it."""

    name: str
    # The event types it folds; None folds every event (its own fold picks).
    event_types: frozenset[str] | None
    # Opens its state for one transaction, on that transaction's projection rows.
    open: ProjectionFactory
    # Its tables, emptied before a rebuild.
    tables: tuple[str, ...]
    # How it rewrites one incident's rows after an event of that incident changed in
    # place (a field erasure); None for a projection that cannot.
    refold: IncidentRefold | None = None

    def folds(self, event_type: str) -> bool:
        return self.event_types is None or event_type in self.event_types


class Projections:
    """The registry: every projection an append transaction keeps current."""

    def __init__(self, specs: Iterable[ProjectionSpec] = ()) -> None:
        self._specs: dict[str, ProjectionSpec] = {}
        for spec in specs:
            self.register(spec)

    def register(self, spec: ProjectionSpec) -> None:
        """Add a projection; names are unique."""
        if spec.name in self._specs:
            raise ValueError(f"a projection named {spec.name!r} is already registered")
        self._specs[spec.name] = spec

    @property
    def specs(self) -> tuple[ProjectionSpec, ...]:
        return tuple(self._specs.values())

    def tables(self) -> tuple[str, ...]:
        """Every table a rebuild empties: each projection's, and the meta table."""
        own = [table for spec in self._specs.values() for table in spec.tables]
        return (*dict.fromkeys(own), META_TABLE)

    def refold_incident(
        self, rows: ProjectionRows, incident_id: str, chain: Sequence[StoredEvent]
    ) -> None:
        """Rewrite every projection's rows of one incident from its chain (run under the
        log lock, in the transaction that changed one of its events)."""
        for spec in self._specs.values():
            if spec.refold is None:
                raise ValueError(f"projection {spec.name!r} cannot refold one incident")
            spec.refold(rows, incident_id, chain)

    def open(self, rows: ProjectionRows) -> ProjectionSessions:
        """The state of every projection for one transaction."""
        return ProjectionSessions(self.specs, rows)


class ProjectionSessions:
    """Every registered projection's state in one transaction; events are folded into
    those that fold their type."""

    def __init__(self, specs: Sequence[ProjectionSpec], rows: ProjectionRows) -> None:
        self._specs = tuple(specs)
        self._sessions = {spec.name: spec.open(rows) for spec in self._specs}
        self._routes = [(spec, self._sessions[spec.name]) for spec in self._specs]

    def get(self, name: str) -> Projection:
        """The named projection's state (a command deciding on it)."""
        return self._sessions[name]

    def prepare(self, events: Sequence[Event]) -> None:
        for spec, session in self._routes:
            wanted = (
                events if spec.event_types is None else [e for e in events if spec.folds(e.type)]
            )
            if wanted:
                session.prepare(wanted)

    def fold(self, row: StoredEvent, event: Event | None = None) -> None:
        for spec, session in self._routes:
            if spec.folds(row.type):
                session.fold(row, event)

    def flush(self) -> None:
        for _spec, session in self._routes:
            session.flush()
