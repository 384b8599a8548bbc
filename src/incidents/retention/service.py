"""RetentionService: what the API, the CLI and the periodic job ask of retention."""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from incidents.events.timeformat import now_micros
from incidents.incident.commands import build_event
from incidents.log.chain import ChainSeal
from incidents.log.session import Outcome
from incidents.retention.erasure import ErasureError
from incidents.retention.holds import (
    LEGAL_HOLD_CLASS,
    PLACE,
    RELEASE,
    RETENTION_SOURCE,
    Hold,
    HoldError,
    check_reason,
)
from incidents.retention.ports import DerivedCopies, RetentionConflict, RetentionStore
from incidents.retention.tiers import (
    Action,
    Candidate,
    Periods,
    UnattachedPlan,
    Verdict,
    classify,
    unattached_cutoff,
    unattached_rule,
)
from incidents.retention.tombstone import (
    Tombstone,
    TombstoneKind,
    TombstoneSigner,
    seal_of,
    trusted_seal_of,
)
from incidents.timeline.service import TimelineService

# The name of the instance secret tombstones are signed with (the value is random).
TOMBSTONE_SECRET = "retention-tombstone-hmac"  # noqa: S105
# Events of no incident removed per transaction (and per tombstone): bounds how long
# one purge holds the log lock.
UNATTACHED_BATCH = 5000


@dataclass(frozen=True, slots=True)
class RunReport:
    """What a retention run found and did."""

    verdicts: list[Verdict]
    dry_run: bool
    archived: dict[str, int] = field(default_factory=dict)
    purged: list[Tombstone] = field(default_factory=list)
    # Incidents that were due when planned but no longer under the lock.
    skipped: list[str] = field(default_factory=list)
    # Incidents that could not be archived or purged, and why (the run goes on).
    failed: dict[str, str] = field(default_factory=dict)
    # The events of no incident: what was due, and the tombstones of their purge.
    unattached: UnattachedPlan | None = None
    unattached_purged: list[Tombstone] = field(default_factory=list)

    @property
    def due(self) -> list[Verdict]:
        return [v for v in self.verdicts if v.action is not Action.KEEP]


class RetentionService:
    """Legal holds, retention runs (archive and purge), erasure, and chain seals."""

    def __init__(
        self,
        store: RetentionStore,
        timeline: TimelineService,
        signer: TombstoneSigner,
        periods: Periods,
        forget: Callable[[str], None] = lambda _incident: None,
    ) -> None:
        self._store = store
        self._timeline = timeline
        self._signer = signer
        self.periods = periods
        # Drops what a reader cached about an incident's archive once it changes.
        self._forget = forget
        # One run at a time in this process (each step is serialised by the log lock
        # anyway; this keeps two runs from planning the same work).
        self._running = threading.Lock()
        # Stored exports of incidents: withdrawn by an erasure, deleted by a purge (set
        # by the composition root, which builds them after this service).
        self.copies: DerivedCopies | None = None

    # --- legal holds ---

    def holds(self) -> list[Hold]:
        return self._store.holds()

    def hold(self, incident_id: str) -> Hold | None:
        return self._store.hold(incident_id)

    def place_hold(self, incident_id: str, reason: object, actor: str) -> Hold:
        """Put an incident on legal hold (recorded as an event on its timeline)."""
        text = check_reason(reason)
        self._require_stored(incident_id)
        if self._store.hold(incident_id) is not None:
            raise HoldError(f"{incident_id} is already on legal hold", conflict=True)
        self._record(PLACE, incident_id, text, actor)
        hold = self._store.hold(incident_id)
        if hold is None:  # released again in between by someone else
            raise HoldError(f"{incident_id}: the hold was released meanwhile", conflict=True)
        return hold

    def release_hold(self, incident_id: str, reason: object, actor: str) -> None:
        """Take an incident off legal hold (recorded as an event on its timeline)."""
        text = check_reason(reason)
        self._require_stored(incident_id)
        if self._store.hold(incident_id) is None:
            raise HoldError(f"{incident_id} is not on legal hold", conflict=True)
        self._record(RELEASE, incident_id, text, actor)

    def _require_stored(self, incident_id: str) -> None:
        if self._store.candidate(incident_id) is None:
            raise LookupError(f"no incident {incident_id!r} with stored events")

    def _record(self, event_type: str, incident_id: str, reason: str, actor: str) -> None:
        event = build_event(
            event_type,
            incident_id,
            {"reason": reason},
            actor,
            source=RETENTION_SOURCE,
            # The reason may name a case: readers without legal_hold_access see it redacted.
            extra={"imdataclass": {LEGAL_HOLD_CLASS: ["reason"]}},
        )
        (result,) = self._timeline.append([event], actor)
        if result.outcome is not Outcome.CREATED:
            raise HoldError(f"{incident_id}: the hold event was not recorded", conflict=True)

    # --- the tiers ---

    def is_archived(self, incident_id: str) -> bool:
        return self._store.is_archived(incident_id)

    def archived_among(self, incident_ids: Collection[str]) -> set[str]:
        """Which of the incidents are archived (their timelines refuse writes)."""
        return self._store.archived_among(incident_ids)

    def archived_keys(self, keys: Collection[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of the (source, dedupe id) keys belong to archived events: sent again,
        those are duplicates, not writes to the archived incident."""
        return self._store.archived_keys(keys) if keys else set()

    def plan(self, now_us: int | None = None) -> list[Verdict]:
        """Every incident's tier and what a run would do to it, and why."""
        now = now_micros() if now_us is None else now_us
        verdicts = [classify(c, now, self.periods) for c in self._store.candidates()]
        return sorted(verdicts, key=lambda v: v.incident_id)

    def run(self, *, dry_run: bool = False, now_us: int | None = None) -> RunReport:
        """Archive and purge what is due; with ``dry_run`` only say what would be done.

        Each incident is archived or purged in a transaction of its own under the log
        lock, after deciding again on the state read under that lock: an incident
        reopened, or put on hold, since the plan is left alone.
        """
        now = now_micros() if now_us is None else now_us
        with self._running:
            verdicts = self.plan(now)
            report = RunReport(verdicts, dry_run, unattached=self.plan_unattached(now))
            if dry_run:
                return report
            for verdict in report.due:
                wanted = verdict.action

                def due(fresh: Candidate, wanted: Action = wanted) -> bool:
                    return classify(fresh, now, self.periods).action is wanted

                try:
                    self._step(verdict, wanted, now, due, report)
                except RetentionConflict as exc:
                    report.failed[verdict.incident_id] = str(exc)
                finally:
                    self._forget(verdict.incident_id)
            self._purge_unattached(now, report)
            return report

    def plan_unattached(self, now_us: int | None = None) -> UnattachedPlan:
        """What a run would purge of the events that belong to no incident, and why."""
        now = now_micros() if now_us is None else now_us
        days = self.periods.unattached_purge_after_days
        count, through = self._store.unattached_due(unattached_cutoff(now, self.periods))
        reason = (
            f"{count} events of no incident older than {days:g} days"
            if count
            else f"no event of no incident is older than {days:g} days"
        )
        return UnattachedPlan(count, through, unattached_rule(self.periods), reason)

    def _purge_unattached(self, now: int, report: RunReport) -> None:
        # Batch after batch, each its own transaction under the log lock, deciding
        # again there what is due: events appended meanwhile are never covered.
        cutoff = unattached_cutoff(now, self.periods)
        rule = unattached_rule(self.periods)
        while True:
            try:
                stone = self._store.purge_unattached(
                    cutoff, rule, now, UNATTACHED_BATCH, self._signer.sign
                )
            except RetentionConflict as exc:
                report.failed["(no incident)"] = str(exc)
                return
            if stone is None:
                return
            report.unattached_purged.append(stone)
            if stone.event_count < UNATTACHED_BATCH:
                return

    def _step(
        self,
        verdict: Verdict,
        wanted: Action,
        now: int,
        due: Callable[[Candidate], bool],
        report: RunReport,
    ) -> None:
        if wanted is Action.ARCHIVE:
            moved = self._store.archive(verdict.incident_id, verdict.rule, now, due)
            if moved:
                report.archived[verdict.incident_id] = moved
            else:
                report.skipped.append(verdict.incident_id)
            return
        # Listed before the purge (which removes the events naming them), deleted only
        # once it committed: an incident that was no longer due keeps its exports.
        keys = self.copies.export_keys(verdict.incident_id) if self.copies is not None else []
        stone = self._store.purge(verdict.incident_id, verdict.rule, now, due, self._signer.sign)
        if stone is not None:
            report.purged.append(stone)
            if self.copies is not None:
                self.copies.discard(keys)
        else:
            report.skipped.append(verdict.incident_id)

    # --- erasure and verification ---

    def erase(
        self, incident_id: str, position: int, paths: list[str], reason: str, actor: str
    ) -> Tombstone:
        """Erase fields of one event's data (a data subject's request), with a tombstone."""
        text = check_reason(reason)
        if not paths:
            raise ErasureError("fields: name at least one field to erase")
        if self._store.hold(incident_id) is not None:
            # Erasing what a legal hold preserves would be spoliation: lift the hold first.
            raise HoldError(
                f"{incident_id} is on legal hold: its events cannot be erased until the hold "
                "is released",
                conflict=True,
            )
        rule = f"erasure by {actor}: {text}"
        stone = self._store.erase(
            incident_id, position, paths, rule, now_micros(), self._signer.sign
        )
        self._forget(incident_id)
        # Downloads refuse the incident's older exports from now on (last_erasure_us);
        # their bytes go as well.
        if self.copies is not None:
            self.copies.discard(self.copies.export_keys(incident_id))
        return stone

    def last_erasure_us(self, incident_id: str) -> int | None:
        """When the incident's last erasure was recorded (None if it has none)."""
        return max(
            (
                t.created_us
                for t in self._store.tombstones(incident_id)
                if t.kind is TombstoneKind.ERASURE
            ),
            default=None,
        )

    def has_stored(self, incident_id: str) -> bool:
        """Whether the incident has events still stored (live or archived)."""
        return self._store.candidate(incident_id) is not None

    def tombstones(self, incident_id: str) -> list[Tombstone]:
        return self._store.tombstones(incident_id)

    def seal(self, incident_id: str) -> ChainSeal | None:
        """What the incident's signed tombstones say about its chain (for verify).

        Raises :class:`incidents.retention.tombstone.InvalidTombstone` on a bad signature.
        """
        return seal_of(self._store.tombstones(incident_id), self._signer)

    def trusted_seal(self, incident_id: str) -> ChainSeal | None:
        """:meth:`seal`, or None when a tombstone's signature is wrong: verification then
        runs as if there were no tombstones, and reports the removed events as missing."""
        return trusted_seal_of(self._store.tombstones(incident_id), self._signer)
