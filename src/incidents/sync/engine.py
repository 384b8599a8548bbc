"""The sync engine: create, push, pull, queue conflicts, poll and reconcile.

Every path settles fields through :func:`incidents.sync.decide.decide` against the
link's base (the value both sides last agreed on), so a round trip of our own write
finds both sides equal to the base and produces neither an event nor a write (echo
suppression by value), while the versions in the link skip records already seen.

Vendor writes happen only in :meth:`SyncEngine.deliver` (called by the connector's
outbox destination, under the relay's retries); polling, webhooks, conflict
resolution and reconciliation ask for a write by recording an ``im.<vendor>.sync``
event whose ``push`` lists the fields, which the outbox then delivers.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar, cast

from opentelemetry.trace import Tracer

from incidents.events.timeformat import now_micros
from incidents.incident.aggregate import Incident
from incidents.incident.lifecycle import Status, can_move, parse_status
from incidents.incident.service import IncidentService
from incidents.observability.sync_metrics import SyncMetrics
from incidents.policy.model import Decision as PolicyDecision
from incidents.sync.apply import Applied, ApplyExternal
from incidents.sync.connector import Connector
from incidents.sync.decide import Decision, FieldState, Verdict, decide
from incidents.sync.keyed_locks import KeyedLocks
from incidents.sync.mapping import FieldMapping
from incidents.sync.ports import (
    Comment,
    Conflict,
    FieldsUnwritable,
    Link,
    SyncStore,
    Ticket,
    Ticketing,
)
from incidents.sync.render import Values, visible_note, visible_values

# A create recorded this recently may still be in flight in another relay: wait.
CREATE_IN_FLIGHT_US = 30_000_000


def _edit_key(comment: Comment) -> str:
    """The ledger key of one edit of a ticket comment (its id and edit time)."""
    return f"comment:{comment.comment_id}:{comment.updated_us}"


def ticket_value(raw: object) -> str | None:
    """A ticket field as a comparable string (empty is None)."""
    if raw is None or raw == "":
        return None
    return str(raw)


_F = TypeVar("_F", bound=Callable[..., Any])


def traced(name: str) -> Callable[[_F], _F]:
    """Run the method in a span ``name`` carrying the connector id (its first argument)."""

    def wrap(method: _F) -> _F:
        @functools.wraps(method)
        def run(self: SyncEngine, connector_id: str, *args: Any, **kw: Any) -> Any:
            if self._tracer is None:
                return method(self, connector_id, *args, **kw)
            with self._tracer.start_as_current_span(name) as span:
                span.set_attribute("sync.connector", connector_id)
                return method(self, connector_id, *args, **kw)

        return cast(_F, run)

    return wrap


class SyncError(RuntimeError):
    """A sync step that cannot go on now; the outbox retries it."""


class StaleLink(SyncError):
    """Another process saved the link meanwhile; the step is retried."""


class PollLeaseLost(SyncError):
    """The poller stopped holding the connector's poll lease mid-poll or mid-sweep;
    the rest is left to the process that holds it now."""


@dataclass(frozen=True, slots=True)
class PollLease:
    """The poll lease a background poll or sweep runs under.

    ``still_held`` renews the lease when due and says whether it is still ours; it is
    asked before each ticket, so a long poll keeps its lease and one that lost it
    stops. The cursor is saved only while ``holder`` holds the lease."""

    holder: str
    still_held: Callable[[], bool]

    def check(self, connector: str) -> None:
        if not self.still_held():
            raise PollLeaseLost(f"{connector}: the poll lease passed to another process")


class ConflictError(ValueError):
    """A conflict resolution that cannot be applied (unknown, closed, refused)."""


@dataclass(frozen=True, slots=True)
class FieldPlan:
    """One field of one link: the three values and what to do."""

    mapping: FieldMapping
    ours: str | None
    theirs: str | None
    base: str | None
    verdict: Verdict
    reason: str


@dataclass(frozen=True, slots=True)
class Drift:
    """A field whose ticket value differs from the incident, as reconcile reports it."""

    connector: str
    incident_id: str
    key: str
    field: str
    ours: str | None
    theirs: str | None
    action: str


@dataclass(slots=True)
class Outcome:
    """What one sync pass of one link did."""

    pushed: list[str] = field(default_factory=list)
    pulled: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    push_requested: list[str] = field(default_factory=list)
    created: bool = False
    writes: int = 0
    # Whether the ticket is linked to an incident this connector may see.
    linked: bool = True


@dataclass(frozen=True, slots=True)
class NoteRef:
    """A note event to copy to the ticket."""

    event_id: str
    actor: str
    visibility: str | None
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Bound:
    """A connector with its vendor client."""

    connector: Connector
    client: Ticketing


class SyncEngine:
    """Runs the sync of every configured connector."""

    def __init__(
        self,
        store: SyncStore,
        incidents: IncidentService,
        decide_for: Callable[[str], PolicyDecision],
        connectors: Iterable[Bound] = (),
        *,
        metrics: SyncMetrics | None = None,
        tracer: Tracer | None = None,
        clock: Callable[[], int] = now_micros,
    ) -> None:
        self.store = store
        self.incidents = incidents
        self._decide_for = decide_for
        self.connectors: dict[str, Bound] = {b.connector.id: b for b in connectors}
        self.metrics = metrics or SyncMetrics()
        self._tracer = tracer
        self._clock = clock
        self._locks = KeyedLocks()

    # --- helpers ---------------------------------------------------------------

    def bound(self, connector_id: str) -> Bound:
        try:
            return self.connectors[connector_id]
        except KeyError:
            raise ConflictError(f"no connector {connector_id!r}") from None

    def _lock(self, connector: str, incident_id: str) -> AbstractContextManager[None]:
        """Serialises the work on one link within this process."""
        return self._locks.hold((connector, incident_id))

    @property
    def locks_in_use(self) -> int:
        """Links being worked on now (the per-link locks kept)."""
        return len(self._locks)

    def _values(self, connector: Connector, incident_id: str) -> tuple[Incident, Values] | None:
        incident = self.incidents.get(incident_id, None)
        if incident is None:
            return None
        values = visible_values(incident, self._decide_for(connector.identity))
        return None if values is None else (incident, values)

    def plan(
        self, connector: Connector, link: Link, incident: Incident, values: Values, ticket: Ticket
    ) -> list[FieldPlan]:
        """Decide every mapped field of one link (fields with an open conflict are held)."""
        held = self.store.open_conflict_fields(connector.id, link.incident_id)
        current = Status(incident.status)
        plans = []
        for mapping in connector.mappings:
            if mapping.name in held:
                continue
            # Compared as the ticket holds them, so lossy value maps (four severities
            # on three impacts) never look like a difference.
            theirs = ticket_value(ticket.fields.get(mapping.external_field))
            ours = mapping.to_external(values.get(mapping.internal_field))
            base = link.base.get(mapping.name)
            state = FieldState(ours, theirs, base, incident.updated_us, ticket.updated_us)

            def allowed(value: str | None, mapping: FieldMapping = mapping) -> bool:
                internal = mapping.to_internal(value)
                if value is not None and internal is None:
                    return False  # a ticket value with no incident counterpart
                if mapping.internal_field == "status":
                    target = parse_status(internal)
                    return target is not None and (target is current or can_move(current, target))
                return True

            verdict = decide(mapping, state, allowed)
            unmapped = ticket.unmapped.get(mapping.external_field)
            if unmapped is not None and verdict.verdict is Verdict.PULL:
                # The ticket's value names nothing here (a person without a known
                # email): a person decides rather than a guess being applied.
                verdict = Decision(Verdict.CONFLICT, unmapped)
            plans.append(FieldPlan(mapping, ours, theirs, base, verdict.verdict, verdict.reason))
        return plans

    # --- outbound: the outbox destination ----------------------------------------

    @traced("sync.deliver")
    def deliver(
        self,
        connector_id: str,
        incident_id: str,
        *,
        fields: bool,
        notes: Sequence[NoteRef] = (),
        requested: bool = True,
    ) -> Outcome:
        """Bring one incident's ticket up to date (create it if due), then copy notes.

        Called by the connector's outbox destination; raising makes the relay retry.
        Unless a push was ``requested`` (by a poll, a resolution, reconcile), a link
        whose every pushed field still equals its base is left alone without reading
        the ticket: an earlier delivery already wrote the incident's current state,
        and the ticket's own changes come in by polling and webhooks.
        """
        bound = self.bound(connector_id)
        connector, client = bound.connector, bound.client
        with self._lock(connector.id, incident_id):
            found = self._values(connector, incident_id)
            if found is None:
                return Outcome()
            incident, values = found
            link = self.store.link(connector.id, incident_id)
            outcome = Outcome()
            created = link is None or link.creating
            if link is None or link.creating:
                if link is None and incident.severity not in connector.create_severities:
                    return outcome
                link = self._create(bound, incident, values, link)
            if not link.recorded:
                # Also when an earlier delivery saved the link but failed to record it.
                self._record_link(connector, link)
            if created:
                outcome.created = True
                outcome.writes += 1
            elif fields and (requested or self._differs(connector, link, values)):
                ticket = client.get(link.external_id)
                outcome = self._sync(bound, link, ticket, incident, values, may_write=True)
            if notes and connector.sync_notes:
                link = self.store.link(connector.id, incident_id) or link
                outcome.writes += self._send_notes(bound, link, notes)
            return outcome

    def _record_link(self, connector: Connector, link: Link) -> None:
        """Put the new ticket on the incident's timeline (and so on its boards).

        The id names the connector and the ticket, so a create retried after a lost
        answer, or a record retried after a failure, records the link once; the link
        remembers it is recorded, so later deliveries do not submit it again.
        """
        summary: dict[str, Any] = {
            "connector": connector.id,
            "external_id": link.external_id,
            "key": link.key,
            "url": link.url,
            "linked": True,
            "changes": {},
            "push": [],
        }
        self._record(
            connector, link.incident_id, f"{connector.id}:{link.external_id}:linked", summary
        )
        self.store.mark_recorded(connector.id, link.incident_id)

    @staticmethod
    def _differs(connector: Connector, link: Link, values: Values) -> bool:
        """Whether any field we write differs from what both sides last agreed on."""
        return any(
            m.to_external(values.get(m.internal_field)) != link.base.get(m.name)
            for m in connector.mappings
            if m.pushes
        )

    def _create(self, bound: Bound, incident: Incident, values: Values, link: Link | None) -> Link:
        connector, client = bound.connector, bound.client
        now = self._clock()
        ticket: Ticket | None = None
        unwritable: FieldsUnwritable | None = None
        if link is None:
            if not self.store.begin_create(connector.id, incident.id, now):
                raise StaleLink(f"{incident.id}: another relay is creating its ticket")
            link = Link(connector.id, incident.id, created_us=now)
        else:
            if now - link.created_us < CREATE_IN_FLIGHT_US and link.synced_us == 0:
                # Recorded by an attempt that may still be under way elsewhere.
                ticket = client.find(connector.correlation(incident.id))
                if ticket is None:
                    raise SyncError(f"{incident.id}: its ticket's create is still in flight")
            else:
                ticket = client.find(connector.correlation(incident.id))
        if ticket is None:
            body = {
                m.external_field: m.to_external(values.get(m.internal_field))
                for m in connector.mappings
                if m.pushes and values.get(m.internal_field) is not None
            }
            try:
                ticket = client.create(body, connector.correlation(incident.id))
            except FieldsUnwritable as exc:
                # The ticket exists; only the fields it could not take wait for a person.
                ticket, unwritable = exc.ticket, exc
            except Exception:
                self.metrics.failures.labels(connector.id, "create").inc()
                # A create that failed before the vendor saw it may be tried at once.
                self.store.save_link(replace(link, synced_us=1))
                raise
            self.metrics.operations.labels(connector.id, "create").inc()
        base = {
            m.name: ticket_value(ticket.fields.get(m.external_field)) for m in connector.mappings
        }
        created = replace(
            link,
            external_id=ticket.external_id,
            key=ticket.key,
            url=ticket.url,
            base=base,
            written_version=ticket.version,
            synced_us=self._clock(),
        )
        self.store.save_link(created)
        if unwritable is not None:
            for m in connector.mappings:
                if m.pushes and m.external_field in unwritable.refused:
                    ours = m.to_external(values.get(m.internal_field))
                    self._queue_unwritable(
                        connector, created, m, ours, base.get(m.name), unwritable
                    )
        return created

    def _send_notes(self, bound: Bound, link: Link, notes: Sequence[NoteRef]) -> int:
        connector, client = bound.connector, bound.client
        decision = self._decide_for(connector.identity)
        sent = 0
        for note in notes:
            if note.actor == connector.actor:
                continue  # a ticket comment we recorded: never echo it back
            key = f"note:{note.event_id}"
            if self.store.ledger_has(connector.id, key):
                continue
            text = visible_note(note.body, note.visibility, decision)
            if text is None:
                continue
            comment_id = client.add_note(link.external_id, text)
            now = self._clock()
            self.store.ledger_add(connector.id, key, now)
            if comment_id:
                self.store.ledger_add(connector.id, f"comment:{comment_id}", now)
            self.metrics.operations.labels(connector.id, "note").inc()
            sent += 1
        return sent

    # --- one pass over one link ----------------------------------------------------

    def _sync(
        self,
        bound: Bound,
        link: Link,
        ticket: Ticket,
        incident: Incident,
        values: Values,
        *,
        may_write: bool,
        event_id: str | None = None,
        comments: Sequence[tuple[str, str]] = (),
    ) -> Outcome:
        connector, client = bound.connector, bound.client
        plans = self.plan(connector, link, incident, values, ticket)
        outcome = Outcome()
        base = dict(link.base)
        pulls = {
            p.mapping.internal_field: p.mapping.to_internal(p.theirs)
            for p in plans
            if p.verdict is Verdict.PULL
        }
        pushes = [p for p in plans if p.verdict is Verdict.PUSH]
        for p in plans:
            if p.verdict is Verdict.SETTLE:
                base[p.mapping.name] = p.ours
            elif p.verdict is Verdict.CONFLICT:
                self._queue(connector, link, p.mapping.name, p, p.reason)
                outcome.conflicts.append(p.mapping.name)
        request_push = [p.mapping.name for p in pushes] if not may_write else []
        if pulls or comments or request_push:
            applied = self._apply(
                connector,
                link,
                ticket,
                pulls,
                comments,
                event_id or f"{connector.id}:{ticket.external_id}:{ticket.version}",
                request_push,
            )
            for p in plans:
                if p.verdict is not Verdict.PULL:
                    continue
                name = p.mapping.internal_field
                if name in applied.applied or (applied.duplicate and name in pulls):
                    base[p.mapping.name] = p.theirs
                    outcome.pulled.append(p.mapping.name)
                elif name in applied.refused:
                    self._queue(connector, link, p.mapping.name, p, applied.refused[name])
                    outcome.conflicts.append(p.mapping.name)
            for comment_id, _text in comments:
                self.store.ledger_add(connector.id, f"comment:{comment_id}", self._clock())
            outcome.push_requested = request_push
            if outcome.pulled:
                self.metrics.operations.labels(connector.id, "pull").inc()
                self.metrics.lag_seconds.labels(connector.id).observe(
                    max(0.0, (self._clock() - ticket.updated_us) / 1e6)
                )
        written = link.written_version
        if pushes and may_write:
            changes = {p.mapping.external_field: p.ours for p in pushes}
            unwritable: FieldsUnwritable | None = None
            try:
                after = client.update(ticket.external_id, changes)
            except FieldsUnwritable as exc:
                # The other fields were written; the refused ones wait in the queue
                # rather than failing the delivery into retries and a dead letter.
                after, unwritable = exc.ticket, exc
            except Exception:
                self.metrics.failures.labels(connector.id, "push").inc()
                raise
            self.metrics.operations.labels(connector.id, "push").inc()
            outcome.writes += 1
            written = after.version
            for p in pushes:
                if unwritable is not None and p.mapping.external_field in unwritable.refused:
                    self._queue_unwritable(connector, link, p.mapping, p.ours, p.base, unwritable)
                    outcome.conflicts.append(p.mapping.name)
                    continue
                base[p.mapping.name] = p.ours
                outcome.pushed.append(p.mapping.name)
        saved = replace(
            link,
            base=base,
            seen_version=max(link.seen_version, ticket.version),
            written_version=written,
            synced_us=self._clock(),
        )
        self.store.save_link(saved)
        return outcome

    def _apply(
        self,
        connector: Connector,
        link: Link,
        ticket: Ticket,
        changes: Mapping[str, str | None],
        comments: Sequence[tuple[str, str]],
        event_id: str,
        push: list[str],
    ) -> Applied:
        summary: dict[str, Any] = {
            "connector": connector.id,
            "external_id": ticket.external_id,
            "key": ticket.key,
            "version": ticket.version,
            "changes": dict(changes),
            "push": push,
        }
        if ticket.updated_by:
            summary["updated_by"] = ticket.updated_by
        return self._record(connector, link.incident_id, event_id, summary, changes, comments)

    def _record(
        self,
        connector: Connector,
        incident_id: str,
        event_id: str,
        summary: Mapping[str, Any],
        changes: Mapping[str, str | None] | None = None,
        notes: Sequence[tuple[str, str]] = (),
    ) -> Applied:
        """Record an ``im.<vendor>.sync`` event as the connector, applying ``changes`` and
        ``notes`` to the incident in the same transaction (see :class:`ApplyExternal`)."""
        command = ApplyExternal(
            incident_id,
            connector.actor,
            connector.source,
            connector.sync_type,
            event_id,
            summary,
            changes or {},
            tuple(notes),
        )
        result: Applied = self.incidents.submit(command).result()
        return result

    def _queue(
        self, connector: Connector, link: Link, name: str, plan: FieldPlan, reason: str
    ) -> None:
        conflict = Conflict(
            id=str(uuid.uuid4()),
            connector=connector.id,
            incident_id=link.incident_id,
            field=name,
            ours=plan.ours,
            theirs=plan.theirs,
            base=plan.base,
            reason=reason,
            created_us=self._clock(),
        )
        stored = self.store.open_conflict(conflict)
        if stored.id == conflict.id:
            self.metrics.conflicts.labels(connector.id, name).inc()

    def _queue_unwritable(
        self,
        connector: Connector,
        link: Link,
        mapping: FieldMapping,
        ours: str | None,
        base: str | None,
        error: FieldsUnwritable,
    ) -> None:
        reason = error.refused[mapping.external_field]
        theirs = ticket_value(error.ticket.fields.get(mapping.external_field))
        plan = FieldPlan(mapping, ours, theirs, base, Verdict.CONFLICT, reason)
        self._queue(connector, link, mapping.name, plan, reason)

    # --- inbound: polling and webhooks ----------------------------------------------

    @traced("sync.inbound")
    def inbound(
        self,
        connector_id: str,
        ticket: Ticket,
        *,
        event_id: str | None = None,
        force: bool = False,
    ) -> Outcome:
        """Take one changed ticket (from a poll or a webhook) into its incident.

        ``force`` takes it even at a version already seen (a new or edited comment
        does not change an issue's version). Comments new at a version already seen,
        and edits of comments taken before, become notes in events of their own whose
        id names the comment and its edit time, so a redelivery is a dedupe hit."""
        bound = self.bound(connector_id)
        connector = bound.connector
        link = self.store.link_by_external(connector.id, ticket.external_id)
        incident_id = connector.incident_of(ticket.correlation)
        if link is None and incident_id:
            link = self.store.link(connector.id, incident_id)
        if link is None or link.creating:
            return Outcome(linked=False)
        fresh = ticket.version > link.seen_version
        # Comment changes leave the version alone; the ticket says when they happened.
        comments_mark = f"comments:{ticket.external_id}:{ticket.comments_us}"
        comments_due = (
            connector.sync_notes
            and ticket.comments_us > 0
            and not self.store.ledger_has(connector.id, comments_mark)
        )
        if not (fresh or force or comments_due):
            return Outcome()  # already taken (a re-poll, a redelivery, our own echo)
        with self._lock(connector.id, link.incident_id):
            link = self.store.link(connector.id, link.incident_id) or link
            found = self._values(connector, link.incident_id)
            if found is None:
                return Outcome(linked=False)
            incident, values = found
            new: list[Comment] = []
            edits: list[Comment] = []
            if connector.sync_notes:
                for comment in bound.client.comments(ticket.external_id):
                    if not self.store.ledger_has(connector.id, f"comment:{comment.comment_id}"):
                        new.append(comment)
                    elif comment.edited and not self.store.ledger_has(
                        connector.id, _edit_key(comment)
                    ):
                        edits.append(comment)
            outcome = Outcome()
            if fresh or event_id is not None:
                outcome = self._sync(
                    bound,
                    link,
                    ticket,
                    incident,
                    values,
                    may_write=False,
                    event_id=event_id,
                    comments=[(c.comment_id, c.text) for c in new],
                )
                for comment in new:
                    if comment.edited:  # taken as it reads now: not again as an edit
                        self.store.ledger_add(connector.id, _edit_key(comment), self._clock())
            else:
                edits = new + edits
            for comment in edits:
                self._take_comment(connector, link, ticket, comment)
            if comments_due:
                self.store.ledger_add(connector.id, comments_mark, self._clock())
            return outcome

    def _take_comment(
        self, connector: Connector, link: Link, ticket: Ticket, comment: Comment
    ) -> None:
        """Record one comment (new at a version already seen, or an edit of one taken
        before) as a note, in an event of its own named by the comment and its time."""
        seen = self.store.ledger_has(connector.id, f"comment:{comment.comment_id}")
        text = comment.text
        if seen:
            text = f"(edits ticket comment {comment.comment_id}, noted earlier) {text}"
        stamp = max(comment.updated_us, comment.created_us)
        summary: dict[str, Any] = {
            "connector": connector.id,
            "external_id": ticket.external_id,
            "key": ticket.key,
            "version": ticket.version,
            "comment": comment.comment_id,
            "edits": comment.comment_id if seen else None,
            "changes": {},
            "push": [],
        }
        self._record(
            connector,
            link.incident_id,
            f"{connector.id}:{ticket.external_id}:comment:{comment.comment_id}:{stamp}",
            summary,
            notes=((comment.comment_id, text),),
        )
        now = self._clock()
        self.store.ledger_add(connector.id, f"comment:{comment.comment_id}", now)
        if comment.edited:
            self.store.ledger_add(connector.id, _edit_key(comment), now)

    @traced("sync.poll")
    def poll(self, connector_id: str, lease: PollLease | None = None) -> int:
        """One poll of a connector: every ticket changed since the cursor (less the
        overlap window); returns how many tickets came back.

        Under a ``lease`` (the background poller), the lease is renewed before each
        ticket, the poll stops with :class:`PollLeaseLost` once it is lost, and the
        cursor is saved only while it is held."""
        bound = self.bound(connector_id)
        connector = bound.connector
        holder = None if lease is None else lease.holder
        cursor = self.store.cursor(connector.id)
        since = None if cursor is None else cursor - int(connector.overlap_seconds * 1e6)
        now = self._clock()
        try:
            tickets = bound.client.changed_since(since)
            for ticket in tickets:
                if lease is not None:
                    lease.check(connector.id)
                self.inbound(connector.id, ticket)
        except PollLeaseLost:
            raise
        except Exception as exc:
            self.metrics.failures.labels(connector.id, "poll").inc()
            error = f"{type(exc).__name__}: {exc}"[:300]
            self.store.save_poll(connector.id, cursor, now, error, holder=holder)
            raise
        self.metrics.operations.labels(connector.id, "poll").inc()
        newest = max((t.updated_us for t in tickets), default=cursor)
        if not self.store.save_poll(connector.id, newest, now, None, holder=holder):
            raise PollLeaseLost(f"{connector.id}: the poll lease passed before its cursor")
        return len(tickets)

    # --- reconcile and the conflict queue ------------------------------------------

    @traced("sync.reconcile")
    def reconcile(
        self, connector_id: str, *, dry_run: bool, lease: PollLease | None = None
    ) -> list[Drift]:
        """Compare every linked ticket with its incident field by field; unless
        ``dry_run``, repair what ownership allows (pulls now, pushes through the outbox)
        and queue the rest. Under a ``lease`` (the periodic sweep), it is renewed
        before each ticket and the sweep stops with :class:`PollLeaseLost` once lost."""
        bound = self.bound(connector_id)
        connector = bound.connector
        drift: list[Drift] = []
        for link in self.store.links(connector.id):
            if lease is not None:
                lease.check(connector.id)
            if link.creating:
                drift.append(
                    Drift(connector.id, link.incident_id, "", "*", None, None, "create pending")
                )
                continue
            found = self._values(connector, link.incident_id)
            if found is None:
                continue
            incident, values = found
            ticket = bound.client.get(link.external_id)
            plans = self.plan(connector, link, incident, values, ticket)
            for p in plans:
                if p.ours != p.theirs:
                    drift.append(
                        Drift(
                            connector.id,
                            link.incident_id,
                            link.key,
                            p.mapping.name,
                            p.ours,
                            p.theirs,
                            p.verdict.value,
                        )
                    )
            if not dry_run and any(p.verdict is not Verdict.NONE for p in plans):
                with self._lock(connector.id, link.incident_id):
                    self._sync(
                        bound,
                        link,
                        ticket,
                        incident,
                        values,
                        may_write=False,
                        event_id=f"{connector.id}:reconcile:{uuid.uuid4()}",
                    )
        return drift

    @staticmethod
    def _takeable_person(bound: Bound, person: str) -> str:
        """The email of the ticket's assignee ``person`` as queued (an email, or the
        vendor id of someone who named nobody here then): refused when it still names
        nobody, so a vendor id never becomes the incident's assignee."""
        try:
            return bound.client.person_email(person)
        except LookupError as exc:
            raise ConflictError(
                f"the ticket's value cannot be taken ({exc}); choose ours or a value"
            ) from None
        except Exception as exc:
            raise ConflictError(f"the ticket's person could not be looked up: {exc}") from None

    def resolve(self, conflict_id: str, choice: str, value: str | None, by: str) -> Conflict:
        """Settle a queued conflict: ``ours`` (push our value), ``theirs`` (apply the
        ticket's), or ``value`` (apply ``value`` to both)."""
        conflict = self.store.conflict(conflict_id)
        if conflict is None:
            raise ConflictError(f"no conflict {conflict_id!r}")
        if conflict.resolved_us is not None:
            raise ConflictError(f"conflict {conflict_id} is already resolved")
        if choice not in ("ours", "theirs", "value"):
            raise ConflictError("resolution must be ours, theirs or value")
        if choice == "value" and value is None:
            raise ConflictError("resolution value needs a value")
        bound = self.bound(conflict.connector)
        connector = bound.connector
        mapping = connector.mapping(conflict.field)
        link = self.store.link(conflict.connector, conflict.incident_id)
        if mapping is None or link is None:
            raise ConflictError(f"conflict {conflict_id} names a link or field no longer synced")
        chosen = {"ours": conflict.ours, "theirs": conflict.theirs, "value": value}[choice]
        # The ticket's value as queued, which may be stale (a field in conflict is not
        # planned again): a person in it is translated now or refused.
        theirs = conflict.theirs
        if choice == "theirs" and mapping.internal_field == "assignee" and chosen is not None:
            theirs = chosen = self._takeable_person(bound, chosen)
        with self._lock(connector.id, link.incident_id):
            internal = mapping.to_internal(chosen) if choice == "theirs" else chosen
            changes = {} if choice == "ours" else {mapping.internal_field: internal}
            push = [] if choice == "theirs" else [mapping.name]
            summary = {
                "connector": connector.id,
                "external_id": link.external_id,
                "key": link.key,
                "conflict": conflict.id,
                "resolution": choice,
                "changes": changes,
                "push": push,
            }
            result = self._record(
                connector,
                link.incident_id,
                f"{connector.id}:conflict:{conflict.id}:{uuid.uuid4().hex[:12]}",
                summary,
                changes,
            )
            if mapping.internal_field in result.refused:
                raise ConflictError(
                    f"the incident refuses {chosen!r}: {result.refused[mapping.internal_field]}"
                )
            fresh = self.store.link(conflict.connector, conflict.incident_id) or link
            base = dict(fresh.base)
            # The ticket's value is now known to both sides; what differs from it is pushed.
            base[conflict.field] = theirs
            self.store.save_link(replace(fresh, base=base))
            resolved = self.store.resolve_conflict(conflict.id, choice, chosen, by, self._clock())
        if resolved is None:
            raise ConflictError(f"conflict {conflict_id} is already resolved")
        return resolved
