"""GraphQL at ``/graphql`` (Strawberry): incidents, timelines and live subscriptions.

The overview's schema: ``Incident`` with ``timeline(limit, offset)``,
``statusBoard(persona)`` and ``connectedTickets``, and the subscriptions
``incidentUpdated(id)`` and ``timelineEventAdded(incidentId)`` over
graphql-transport-ws. Queries take the same filters as REST. Every value passes the
caller's policy decision and redaction, exactly as the REST reads do: the context
holds the one decision taken for the request (or the WebSocket connection).
"""

from __future__ import annotations

import enum
import json
from collections.abc import AsyncGenerator
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from fastapi import Depends
from graphql import GraphQLError
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from strawberry.extensions import MaskErrors
from strawberry.fastapi import BaseContext, GraphQLRouter
from strawberry.scalars import JSON

from incidents.api.auth import decide, require
from incidents.api.body import read_body_or_413
from incidents.api.graphql_limits import MAX_JSON_DEPTH, limit_extensions
from incidents.api.incidents import shown, shown_all
from incidents.api.problems import malformed_body
from incidents.api.state import container_of
from incidents.api.streams import Grant, recheck_seconds
from incidents.api.timeline import timeline_filter
from incidents.boards.personas import Persona as BoardPersona
from incidents.config import Settings
from incidents.events.parsing import MalformedBody, loads_body
from incidents.events.timeformat import format_micros
from incidents.incident.lifecycle import Status
from incidents.incident.listing import incident_query
from incidents.log.query import MAX_LIMIT, InvalidQuery
from incidents.log.records import StoredEvent
from incidents.policy.model import Action, Decision
from incidents.policy.service import PolicyDenied
from incidents.timeline.feed import StreamFilter
from incidents.timeline.render import to_entry

if TYPE_CHECKING:
    from incidents.app import Container

MAX_OFFSET = 10_000
# A subscription wakes at least this often to notice a closed connection.
_IDLE_SECONDS = 5.0


class GraphQLContext(BaseContext):
    """The caller's decision and the container, for every resolver of one operation."""

    def __init__(
        self, decision: Decision, container: Container, connection: HTTPConnection
    ) -> None:
        super().__init__()
        self.decision = decision
        self.container = container
        self.connection = connection


async def context(
    connection: HTTPConnection, decision: Annotated[Decision, Depends(decide)]
) -> GraphQLContext:
    """Authenticate once per request (or WebSocket); 401 problem without a token."""
    require(connection, decision, Action.INCIDENT_READ, "incident")
    return GraphQLContext(decision, container_of(connection), connection)


@strawberry.enum
class Severity(enum.Enum):
    SEV_1 = "SEV-1"
    SEV_2 = "SEV-2"
    SEV_3 = "SEV-3"
    SEV_4 = "SEV-4"


# The state machine's own statuses, as a GraphQL enum (DRAFT, OPEN, ...).
strawberry.enum(Status, name="IncidentStatus")


@strawberry.enum
class Persona(enum.Enum):
    COMMANDER = "commander"
    RESPONDER = "responder"
    EXECUTIVE = "executive"
    CUSTOMER = "customer"
    COMPLIANCE = "compliance"


@strawberry.type
class TimelineEvent:
    """One timeline entry, as ``GET /incidents/{id}/timeline`` shows it."""

    id: str
    position: int
    incident_id: str | None
    event_time: str
    event_type: str
    actor: str
    title: str
    content: str | None
    source: str
    created_at: str
    visibility: str
    data: JSON | None

    @classmethod
    def of(cls, row: StoredEvent, decision: Decision) -> TimelineEvent:
        entry = to_entry(row, decision)
        return cls(
            id=entry["id"],
            position=entry["position"],
            incident_id=entry["incident_id"],
            event_time=entry["event_time"],
            event_type=entry["event_type"],
            actor=entry["actor"],
            title=entry["title"],
            content=entry.get("content"),
            source=entry["source"],
            created_at=entry["created_at"],
            visibility=entry["visibility"],
            data=entry.get("data"),
        )


@strawberry.type
class StatusBoard:
    """A persona's view of an incident, as ``GET /incidents/{id}/board`` shows it."""

    persona: Persona
    # The board's parts, one {"name", "value"} object each, in the REST document's order.
    sections: list[JSON]
    # The whole board document.
    board: JSON


@strawberry.type
class ExternalTicket:
    """A ticket in an ITSM system kept in sync with the incident."""

    system: str
    key: str
    url: str | None
    status: str | None
    # The connector (vendor:name), the vendor's id, and when the link last synced.
    connector: str = ""
    external_id: str | None = None
    synced_at: str | None = None


@strawberry.type
class Label:
    key: str
    value: str


@strawberry.type
class Incident:
    """An incident as the caller may see it."""

    id: strawberry.ID
    title: str
    severity: Severity
    status: Status
    description: str
    service: str | None
    commander: str | None
    classification: str
    tier: int
    assignees: list[str]
    labels: list[Label]
    roles: JSON
    declared_at: str
    acknowledged_at: str | None
    mitigated_at: str | None
    resolved_at: str | None
    closed_at: str | None
    updated_at: str
    allowed_transitions: list[str]

    @strawberry.field(
        description="The incident's timeline (oldest first; order: desc for newest), with "
        "the filters of GET /api/v1/incidents/{id}/timeline."
    )
    async def timeline(
        self,
        info: strawberry.Info[GraphQLContext, None],
        limit: int = 50,
        offset: int = 0,
        type: list[str] | None = None,
        from_: Annotated[str | None, strawberry.argument(name="from")] = None,
        to: str | None = None,
        actor: str | None = None,
        correlation_key: str | None = None,
        fingerprint: str | None = None,
        order: str = "asc",
    ) -> list[TimelineEvent]:
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        if not 0 <= offset <= MAX_OFFSET:
            raise ValueError(f"offset must be between 0 and {MAX_OFFSET}")
        ctx = info.context
        _require_timeline(ctx, str(self.id))
        try:
            # The same filters, checked the same way, as GET /incidents/{id}/timeline.
            filt = timeline_filter(
                str(self.id), type, from_, to, actor, correlation_key, fingerprint, order
            )
        except InvalidQuery as exc:
            raise ValueError(str(exc)) from None
        filt = replace(filt, visibilities=ctx.decision.visibilities)
        rows = await run_in_threadpool(ctx.container.reader.page, filt, None, offset + limit)
        return [TimelineEvent.of(row, ctx.decision) for row in rows[offset:]]

    @strawberry.field(description="A persona's status board, through the caller's policy.")
    async def status_board(
        self, info: strawberry.Info[GraphQLContext, None], persona: Persona
    ) -> StatusBoard:
        board = await _status_board(info.context, str(self.id), persona)
        if board is None:
            raise ValueError(f"no incident {str(self.id)!r}")
        return board

    @strawberry.field(description="ITSM tickets linked to the incident.")
    async def connected_tickets(
        self, info: strawberry.Info[GraphQLContext, None]
    ) -> list[ExternalTicket]:
        # The incident itself was already shown to the caller (policy checked there).
        sync = info.context.container.sync
        if sync is None:
            return []
        links = await run_in_threadpool(sync.store.links_of, str(self.id))
        return [
            ExternalTicket(
                system=link.connector.split(":", 1)[0],
                key=link.key,
                url=link.url,
                # The ticket's status as last synced (the vendor's own name or code).
                status=link.base.get("status"),
                connector=link.connector,
                external_id=link.external_id or None,
                synced_at=format_micros(link.synced_us) if link.synced_us > 0 else None,
            )
            for link in links
            if not link.creating
        ]

    @classmethod
    def of(cls, document: dict[str, Any]) -> Incident:
        return cls(
            id=strawberry.ID(document["id"]),
            title=document["title"],
            severity=Severity(document["severity"]),
            status=Status(document["status"]),
            description=document["description"],
            service=document["service"],
            commander=document["commander"],
            classification=document["classification"],
            tier=document["tier"],
            assignees=document["assignees"],
            labels=[Label(key=k, value=v) for k, v in document["labels"].items()],
            roles=document["roles"],
            declared_at=document["declared_at"],
            acknowledged_at=document["acknowledged_at"],
            mitigated_at=document["mitigated_at"],
            resolved_at=document["resolved_at"],
            closed_at=document["closed_at"],
            updated_at=document["updated_at"],
            allowed_transitions=document["allowed_transitions"],
        )


@strawberry.type
class IncidentPage:
    items: list[Incident]
    next_cursor: str | None


def _require_timeline(ctx: GraphQLContext, incident_id: str) -> None:
    """Timeline events need the same permission as GET /incidents/{id}/timeline."""
    try:
        ctx.container.policy.require(ctx.decision, Action.READ, f"incident/{incident_id}")
    except PolicyDenied as exc:
        raise PermissionError(str(exc)) from None


def _incident(ctx: GraphQLContext, incident_id: str) -> Incident | None:
    found = ctx.container.incidents.get(incident_id, ctx.decision.visibilities)
    if found is None:
        return None
    return Incident.of(shown(ctx.container.incidents, found, ctx.decision))


@strawberry.type
class Query:
    @strawberry.field(description="One incident, or null if it does not exist or is hidden.")
    async def incident(
        self, info: strawberry.Info[GraphQLContext, None], id: strawberry.ID
    ) -> Incident | None:
        return await run_in_threadpool(_incident, info.context, str(id))

    @strawberry.field(description="Incidents, newest first, with the REST list's filters.")
    async def incidents(
        self,
        info: strawberry.Info[GraphQLContext, None],
        status: list[Status] | None = None,
        severity: list[Severity] | None = None,
        service: str | None = None,
        commander: str | None = None,
        label: list[str] | None = None,
        q: str | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> IncidentPage:
        ctx = info.context
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        try:
            query = incident_query(
                [s.value for s in status or []],
                [s.value for s in severity or []],
                service,
                commander,
                label,
                q,
            )
            page = await run_in_threadpool(
                ctx.container.incidents.page, query, ctx.decision.visibilities, after, limit
            )
        except InvalidQuery as exc:
            raise ValueError(str(exc)) from None
        documents = await run_in_threadpool(
            shown_all, ctx.container.incidents, page.incidents, ctx.decision
        )
        return IncidentPage(
            items=[Incident.of(document) for document in documents],
            next_cursor=page.next_cursor,
        )


@dataclass
class _Follow:
    """Events of one incident as they are appended, through the live feed."""

    ctx: GraphQLContext
    incident_id: str

    async def __call__(self) -> AsyncGenerator[list[StoredEvent], None]:
        filt = StreamFilter(
            incident_id=self.incident_id, visibilities=self.ctx.decision.visibilities
        )
        sub = await self.ctx.container.feed.subscribe(filt, None)
        # Like SSE: a revoked token or changed grants end the subscription.
        grant = Grant(self.ctx.connection, self.ctx.decision, recheck_seconds(self.ctx.container))
        try:
            while True:
                rows = await sub.next(_IDLE_SECONDS)
                # Checked after the wait and before the rows are rendered, as for SSE.
                if not await grant.holds():
                    break
                if rows:
                    yield rows
        finally:
            sub.close()


async def _status_board(
    ctx: GraphQLContext, incident_id: str, persona: Persona
) -> StatusBoard | None:
    """The board as ``GET /incidents/{id}/board`` shows it; None if not visible."""
    chosen = BoardPersona(persona.value)
    if chosen is BoardPersona.COMPLIANCE:
        try:
            ctx.container.policy.require(ctx.decision, Action.VERIFY, f"incident/{incident_id}")
        except PolicyDenied as exc:
            raise PermissionError(str(exc)) from None
    boards = ctx.container.boards
    assert boards is not None, "the container builds the board service"
    board = await run_in_threadpool(boards.board, incident_id, chosen, ctx.decision)
    if board is None:
        return None
    sections: list[Any] = [{"name": name, "value": value} for name, value in board.items()]
    document: Any = board
    return StatusBoard(persona=persona, sections=sections, board=document)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description="The persona's status board each time the incident's timeline grows."
    )
    async def status_board_updated(
        self,
        info: strawberry.Info[GraphQLContext, None],
        incident_id: strawberry.ID,
        persona: Persona,
    ) -> AsyncGenerator[StatusBoard, None]:
        ctx = info.context
        current = await _status_board(ctx, str(incident_id), persona)
        if current is None:
            raise ValueError(f"no incident {str(incident_id)!r}")
        async for _rows in _Follow(ctx, str(incident_id))():
            board = await _status_board(ctx, str(incident_id), persona)
            if board is not None:
                yield board

    @strawberry.subscription(description="The incident each time one of its events is appended.")
    async def incident_updated(
        self, info: strawberry.Info[GraphQLContext, None], id: strawberry.ID
    ) -> AsyncGenerator[Incident, None]:
        ctx = info.context
        async for _rows in _Follow(ctx, str(id))():
            incident = await run_in_threadpool(_incident, ctx, str(id))
            if incident is not None:
                yield incident

    @strawberry.subscription(description="Each event appended to the incident's timeline.")
    async def timeline_event_added(
        self, info: strawberry.Info[GraphQLContext, None], incident_id: strawberry.ID
    ) -> AsyncGenerator[TimelineEvent, None]:
        ctx = info.context
        _require_timeline(ctx, str(incident_id))
        async for rows in _Follow(ctx, str(incident_id))():
            for row in rows:
                yield TimelineEvent.of(row, ctx.decision)


class _Router(GraphQLRouter[GraphQLContext, None]):
    """Strawberry's router, decoding JSON as the REST endpoints do (``loads_body``).

    Strawberry's own decoder (the standard library's) recurses once per nesting
    level, so a body nested about a thousand levels deep raised RecursionError: a
    500. Here nesting is bounded before decoding, and the answer is a 400 problem.
    """

    def parse_json(self, data: str | bytes) -> Any:
        # HTTP: the body, or the variables and extensions query parameters of a GET.
        try:
            return loads_body(data, max_depth=MAX_JSON_DEPTH)
        except MalformedBody as exc:
            raise malformed_body(exc) from None

    def decode_json(self, data: str | bytes) -> object:
        # WebSocket messages: Strawberry closes the connection (4400) on a decode error.
        try:
            return loads_body(data, max_depth=MAX_JSON_DEPTH)
        except MalformedBody as exc:
            raise json.JSONDecodeError(str(exc), "", 0) from None


async def _bounded_body(connection: HTTPConnection) -> None:
    """Read an HTTP request's body within IM_MAX_EVENT_BYTES before Strawberry does.

    Strawberry reads whatever arrives; here the body is refused with a 413 problem
    once it passes the limit, and kept for Strawberry's own read of it.
    """
    if not isinstance(connection, Request) or connection.method != "POST":
        return
    limit = container_of(connection).settings.max_event_bytes
    # Starlette's Request.body() returns what is cached here instead of reading again.
    connection._body = await read_body_or_413(connection, limit)


def _unexpected(error: GraphQLError) -> bool:
    """Whether an error's message must not reach the client: anything a resolver did
    not raise on purpose (a database error would otherwise show its SQL)."""
    original = error.original_error
    return original is not None and not isinstance(original, _MEANT_FOR_CLIENTS)


# What resolvers raise to tell the client what was wrong with its request.
_MEANT_FOR_CLIENTS = (ValueError, PermissionError, GraphQLError)


def graphql_router(settings: Settings) -> GraphQLRouter[GraphQLContext, None]:
    """The ``/graphql`` endpoint: HTTP queries and graphql-transport-ws subscriptions."""
    schema = strawberry.Schema(
        query=Query,
        subscription=Subscription,
        extensions=[
            *limit_extensions(settings),
            partial(MaskErrors, should_mask_error=_unexpected, error_message="Internal error."),
        ],
    )
    return _Router(
        schema,
        path="/graphql",
        context_getter=context,
        # The IDE page would load scripts from a CDN; the schema is introspectable instead.
        graphql_ide=None,
        include_in_schema=False,
        dependencies=[Depends(_bounded_body)],
    )
