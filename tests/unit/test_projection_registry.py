"""The projection registry: names, routing by event type, and what a rebuild empties."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from incidents.events.envelope import Event
from incidents.incident.projection import INCIDENTS, ProjectionSession, incident_projection
from incidents.log.projections import META_TABLE, Projections, ProjectionSpec
from incidents.log.records import StoredEvent


class Recorder:
    """A projection that records what it is asked to fold."""

    def __init__(self, rows: Any) -> None:
        self.rows = rows
        self.folded: list[str] = []
        self.prepared: list[str] = []
        self.flushed = 0

    def prepare(self, events: Sequence[Event]) -> None:
        self.prepared.extend(e.type for e in events)

    def fold(self, row: StoredEvent, event: Event | None = None) -> None:
        self.folded.append(row.type)

    def flush(self) -> None:
        self.flushed += 1


def _row(event_type: str) -> StoredEvent:
    return StoredEvent(
        1,
        None,
        "e",
        "s",
        event_type,
        None,
        0,
        None,
        "a",
        "a",
        None,
        None,
        None,
        0,
        b"{}",
        b"",
        None,
        b"",
    )


def test_a_projection_folds_only_the_types_it_names() -> None:
    registry = Projections(
        [
            ProjectionSpec("notes", frozenset({"im.note.add"}), Recorder, ("incidents",)),
            ProjectionSpec("all", None, Recorder, ("alerts",)),
        ]
    )
    sessions = registry.open(rows=None)  # type: ignore[arg-type]
    for event_type in ("im.note.add", "im.incident.declare"):
        sessions.fold(_row(event_type))
    sessions.flush()
    notes, every = sessions.get("notes"), sessions.get("all")
    assert isinstance(notes, Recorder) and isinstance(every, Recorder)
    assert notes.folded == ["im.note.add"]
    assert every.folded == ["im.note.add", "im.incident.declare"]
    assert notes.flushed == every.flushed == 1
    # A rebuild empties every projection's tables and the meta table, each once.
    assert registry.tables() == ("incidents", "alerts", META_TABLE)


def test_projection_names_are_unique() -> None:
    registry = Projections([incident_projection()])
    with pytest.raises(ValueError, match="already registered"):
        registry.register(incident_projection())
    assert isinstance(registry.open(rows=None).get(INCIDENTS), ProjectionSession)  # type: ignore[arg-type]
