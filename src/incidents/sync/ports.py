"""What the sync engine needs from a vendor and from storage.

A vendor client (ServiceNow Table API, Jira REST v3) implements :class:`Ticketing`;
the SQL adapter in :mod:`incidents.store.sync_store` implements :class:`SyncStore`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class Ticket:
    """A ticket as the vendor holds it, its mapped fields as plain values."""

    external_id: str
    key: str
    # The vendor's version: ServiceNow sys_mod_count, Jira the changelog length.
    version: int
    updated_us: int
    fields: Mapping[str, Any]
    # Who made the last change (vendor user name or account id).
    updated_by: str | None = None
    # The incident id we stored in the ticket's correlation field, if any.
    correlation: str | None = None
    url: str | None = None
    # Ticket fields whose value has no counterpart here (a person the vendor will not
    # name by email), with why; ``fields`` holds the vendor's raw value for them.
    unmapped: Mapping[str, str] = field(default_factory=dict)
    # The latest time someone else added or edited a comment, where the vendor tells
    # it with the ticket (0 otherwise): a poll finds comment changes by it, as they
    # leave the version alone.
    comments_us: int = 0


@dataclass(frozen=True, slots=True)
class Comment:
    """A note or comment on a ticket (inbound notes)."""

    comment_id: str
    author: str | None
    text: str
    created_us: int
    # When it was last edited; equal to (or, where the vendor cannot edit, before)
    # created_us for a comment never edited.
    updated_us: int = 0

    @property
    def edited(self) -> bool:
        return self.updated_us > self.created_us


class FieldsUnwritable(RuntimeError):
    """Some changes of a write could not be made; the others were written.

    Not a failure to retry: ``ticket`` is the ticket after the changes that landed,
    and ``refused`` (ticket field -> why) wait for a person in the conflict queue.
    """

    def __init__(self, ticket: Ticket, refused: Mapping[str, str]) -> None:
        super().__init__("; ".join(f"{k}: {v}" for k, v in refused.items()))
        self.ticket = ticket
        self.refused = dict(refused)


class TransitionUnavailable(FieldsUnwritable):
    """The vendor's workflow has no transition from the ticket's status to ours."""

    def __init__(
        self,
        field: str,
        value: str,
        reachable: Sequence[str],
        ticket: Ticket,
        also: Mapping[str, str] | None = None,
    ) -> None:
        current = ticket.fields.get(field)
        shown = ", ".join(reachable) or "none"
        reason = (
            f"the ticket's workflow has no transition from {current!r} to {value!r}; "
            f"reachable from {current!r}: {shown}"
        )
        super().__init__(ticket, {**(also or {}), field: reason})
        self.field = field
        self.value = value
        self.reachable = tuple(reachable)


class Ticketing(Protocol):
    """One configured vendor connection."""

    def find(self, correlation: str) -> Ticket | None:
        """The ticket whose correlation field holds ``correlation`` (an incident id)."""
        ...

    def create(self, fields: Mapping[str, Any], correlation: str) -> Ticket:
        """Open a ticket with ``fields`` (ticket field -> value) and the correlation id.

        Raises :class:`FieldsUnwritable` when the ticket, once made, lacks some of
        them (a status the workflow cannot reach, a person the vendor does not know)."""
        ...

    def get(self, external_id: str) -> Ticket: ...

    def update(self, external_id: str, changes: Mapping[str, Any]) -> Ticket:
        """Write ``changes`` (ticket field -> value) in one call where the vendor allows.

        Raises :class:`FieldsUnwritable` (the other changes are written) for changes
        the vendor cannot take: :class:`TransitionUnavailable` for a status the
        workflow cannot reach, a person it has no user for."""
        ...

    def add_note(self, external_id: str, text: str) -> str:
        """Add a work note / comment; returns its id."""
        ...

    def changed_since(self, since_us: int | None) -> Sequence[Ticket]:
        """Tickets updated at or after ``since_us`` (all linked tickets when None)."""
        ...

    def comments(self, external_id: str) -> Sequence[Comment]:
        """The ticket's comments, oldest first (empty where the vendor has none)."""
        ...

    def person_email(self, person: str) -> str:
        """The email of a person as a ticket's assignee reads here: an email as it is,
        a vendor user id (an assignee that named nobody) translated now.

        Raises :class:`LookupError` (with why) when it still names nobody here."""
        ...


@dataclass(frozen=True, slots=True)
class Link:
    """An incident linked to a ticket of one connector."""

    connector: str
    incident_id: str
    # Empty while the create is in flight (recorded before the vendor call).
    external_id: str = ""
    key: str = ""
    url: str | None = None
    # The last synced value of each mapping (by mapping name), internal form.
    base: Mapping[str, str | None] = field(default_factory=dict)
    # The vendor version last processed inbound, and the one our last write produced.
    seen_version: int = -1
    written_version: int = -1
    created_us: int = 0
    synced_us: int = 0
    # Whether the link is on the incident's timeline (its ``...:linked`` event).
    recorded: bool = False

    @property
    def creating(self) -> bool:
        return not self.external_id


@dataclass(frozen=True, slots=True)
class Conflict:
    """A field both sides changed that no policy could settle."""

    id: str
    connector: str
    incident_id: str
    field: str
    ours: str | None
    theirs: str | None
    base: str | None
    reason: str
    created_us: int
    resolved_us: int | None = None
    resolution: str | None = None
    resolved_value: str | None = None
    resolved_by: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectorStatus:
    """Figures for ``incidents sync status`` and GET /api/v1/connectors."""

    connector: str
    links: int
    open_conflicts: int
    last_poll_us: int | None
    last_change_us: int | None
    last_error: str | None
    # Outbox rows for the connector not yet delivered, and those dead-lettered.
    pending: int = 0
    dead: int = 0


class SyncStore(Protocol):
    """Links, the write ledger, conflicts and poll cursors."""

    def link(self, connector: str, incident_id: str) -> Link | None: ...

    def link_by_external(self, connector: str, external_id: str) -> Link | None: ...

    def links_of(self, incident_id: str) -> list[Link]: ...

    def links(self, connector: str) -> list[Link]: ...

    def begin_create(self, connector: str, incident_id: str, now_us: int) -> bool:
        """Record a create before calling the vendor; False if a link already exists."""
        ...

    def save_link(self, link: Link) -> None:
        """Store the link (all but ``recorded``, which only :meth:`mark_recorded` sets)."""
        ...

    def mark_recorded(self, connector: str, incident_id: str) -> None:
        """Note that the link's ``...:linked`` event is on the timeline."""
        ...

    def ledger_add(self, connector: str, key: str, now_us: int) -> bool:
        """Remember one write or read (a note sent, a comment taken); False if known."""
        ...

    def ledger_has(self, connector: str, key: str) -> bool: ...

    def open_conflict(self, conflict: Conflict) -> Conflict:
        """Queue a conflict, or return the open one for the same field and values."""
        ...

    def conflicts(self, *, open_only: bool, connector: str | None = None) -> list[Conflict]: ...

    def conflict(self, conflict_id: str) -> Conflict | None: ...

    def open_conflict_fields(self, connector: str, incident_id: str) -> set[str]: ...

    def resolve_conflict(
        self, conflict_id: str, resolution: str, value: str | None, by: str, now_us: int
    ) -> Conflict | None:
        """Close an open conflict; None if it is unknown or already resolved."""
        ...

    def cursor(self, connector: str) -> int | None:
        """The vendor time the last poll reached."""
        ...

    def save_poll(
        self,
        connector: str,
        cursor_us: int | None,
        now_us: int,
        error: str | None,
        *,
        holder: str | None = None,
    ) -> bool:
        """Record a poll; with ``holder``, only while that holder's poll lease is live
        (checked in the same write). False when it was not saved."""
        ...

    def take_poll_lease(self, connector: str, holder: str, lease_us: int) -> bool:
        """Take or renew the connector's poll lease for ``holder`` for ``lease_us``
        by the database's clock; False while another holder's lease has not expired."""
        ...

    def release_poll_lease(self, connector: str, holder: str) -> None:
        """Let the lease go (a stopping process), so another takes it at once."""
        ...

    def status(self, connector: str) -> ConnectorStatus: ...
