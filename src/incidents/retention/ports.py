"""What the retention service needs from storage (implemented in ``incidents.store``)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Protocol

from incidents.retention.holds import Hold
from incidents.retention.tiers import Candidate
from incidents.retention.tombstone import Tombstone

# Decides, on the state read under the log lock, whether the step is still due.
StillDue = Callable[[Candidate], bool]
# Signs a tombstone (filled in but for its signature).
Sign = Callable[[Tombstone], bytes]


class RetentionConflict(Exception):
    """A retention step that cannot be carried out on the incident as it stands."""


class DerivedCopies(Protocol):
    """Copies made from an incident's events and kept outside the database (its stored
    exports): once an erasure or a purge removes what they were made from, they go too."""

    def export_keys(self, incident_id: str) -> list[str]:
        """The keys of the incident's copies."""
        ...

    def discard(self, keys: Collection[str]) -> None:
        """Delete the copies under ``keys``."""
        ...


class RetentionStore(Protocol):
    """Storage operations of retention; each change runs under the log's write lock."""

    def candidates(self) -> list[Candidate]:
        """Every incident chain with events still stored (live or archived)."""
        ...

    def candidate(self, incident_id: str) -> Candidate | None:
        """One incident's chain, if it has events still stored."""
        ...

    def holds(self) -> list[Hold]:
        """The incidents on legal hold now."""
        ...

    def hold(self, incident_id: str) -> Hold | None: ...

    def is_archived(self, incident_id: str) -> bool: ...

    def archived_among(self, incident_ids: Collection[str]) -> set[str]:
        """Which of the incidents are archived."""
        ...

    def archived_keys(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the (source, dedupe id) keys belong to archived events."""
        ...

    def archive(self, incident_id: str, rule: str, now_us: int, due: StillDue) -> int:
        """Move the incident's stored events to the compressed archive; how many moved
        (0 when, under the lock, it was no longer due)."""
        ...

    def purge(
        self, incident_id: str, rule: str, now_us: int, due: StillDue, sign: Sign
    ) -> Tombstone | None:
        """Remove the incident's events (live and archived) and its records, leaving a
        signed tombstone; None when, under the lock, it was no longer due."""
        ...

    def unattached_due(self, cutoff_us: int) -> tuple[int, int | None]:
        """How many events of no incident are due (the start of their chain, up to the
        first event not older than ``cutoff_us``), and the position of the last."""
        ...

    def purge_unattached(
        self, cutoff_us: int, rule: str, now_us: int, limit: int, sign: Sign
    ) -> Tombstone | None:
        """Remove up to ``limit`` due events from the start of the chain of no incident,
        with the alerts that only they described, leaving a signed tombstone; None when
        nothing is due."""
        ...

    def erase(
        self, incident_id: str, position: int, paths: list[str], rule: str, now_us: int, sign: Sign
    ) -> Tombstone:
        """Replace fields of one event's data, leaving a signed erasure tombstone."""
        ...

    def tombstones(self, incident_id: str) -> list[Tombstone]: ...
