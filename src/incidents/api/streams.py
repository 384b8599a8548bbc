"""Live streams of timeline events: Server-Sent Events and WebSocket.

Each frame carries the event's log position as its id; reconnecting with
``Last-Event-ID`` (SSE) or ``last_event_id`` (both) resumes exactly after it, from the
log, however long the client was away. Every frame passes the reader's policy
decision and redaction, exactly as ``GET`` would.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

import orjson
from fastapi import APIRouter, Depends, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from starlette.requests import HTTPConnection
from starlette.responses import Response

from incidents.api.auth import authenticate, decide, require
from incidents.api.problems import Problem, invalid_parameter
from incidents.api.state import container_of, json_response
from incidents.log.query import InvalidQuery, validate_type_patterns
from incidents.log.records import StoredEvent
from incidents.policy.model import Action, Decision
from incidents.sessions.registry import (
    ConnectionRegistry,
    StreamConnection,
    advanced,
    new_connection,
)
from incidents.timeline.feed import LiveFeed, StreamFilter
from incidents.timeline.render import to_entry

if TYPE_CHECKING:
    from incidents.app import Container

router = APIRouter(prefix="/api/v1", tags=["streams"])
Decided = Annotated[Decision, Depends(decide)]
SSE_MEDIA_TYPE = "text/event-stream"


def recheck_seconds(container: Container) -> float:
    # How long a decision of a decision point that is never cached (a remote OPA) is
    # trusted by a stream: as long as a cached one would be, at least a second.
    settings = container.settings
    return max(settings.policy_cache_seconds, settings.token_cache_seconds, 1.0)


def _resume_point(*candidates: str | None) -> int | None:
    """The position to resume after: the first id given, which must be a position."""
    for value in candidates:
        if value is None or value == "":
            continue
        if not (value.isascii() and value.isdigit()) or len(value) > 18:
            raise InvalidQuery(
                "last_event_id", f"must be the id of a frame (a log position), got {value!r}"
            )
        return int(value)
    return None


def _filter(decision: Decision, types: list[str] | None, incident: str | None) -> StreamFilter:
    return StreamFilter(
        types=validate_type_patterns(types or []),
        incident_id=incident,
        visibilities=decision.visibilities,
    )


def sse_frame(row: StoredEvent, decision: Decision, *, named: bool = True) -> bytes:
    """One event as an SSE frame: ``id`` is its position, ``event`` its type (left out
    when not ``named``: EventSource hands unnamed frames to one ``message`` handler)."""
    data = orjson.dumps(to_entry(row, decision))
    if not named:
        return b"id: %d\ndata: %s\n\n" % (row.position, data)
    # Types are validated without line breaks; stored ones are made safe all the same.
    kind = row.type.replace("\r", " ").replace("\n", " ").encode()
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (row.position, kind, data)


@dataclass
class Grant:
    """The caller's right to keep a stream open, checked before every frame it sends.

    Each check authenticates the way a new request would, through the same token and
    policy caches, so it costs no database query while they are fresh. A frame
    therefore leaves only while a request with the same token would be answered:
    once a revocation has taken effect (``whoami`` answers 401), the next check
    fails and the stream ends before sending anything more. The client reconnects,
    resuming from its last frame, under whatever it may see now.

    Decisions of a decision point that never caches them (a remote OPA) are taken
    again at most every ``every`` seconds, not before every frame.
    """

    connection: HTTPConnection
    decision: Decision
    every: float
    checked: float = field(default_factory=time.monotonic)

    async def holds(self) -> bool:
        try:
            subject = await authenticate(self.connection)
            decision = await self._decision(subject)
        except Problem:
            return False
        same = (
            decision.visibilities == self.decision.visibilities
            and decision.data_classes == self.decision.data_classes
            and decision.field_rules == self.decision.field_rules
        )
        return same and decision.allows(Action.READ)

    async def _decision(self, subject: str) -> Decision:
        policy = container_of(self.connection).policy
        if policy.reuses_decisions or time.monotonic() - self.checked >= self.every:
            # From the policy cache when fresh; taken again, as whoami would, if not.
            self.checked = time.monotonic()
            return await decide(self.connection, subject)
        return self.decision


class Tracked:
    """A stream's record in the connection registry, refreshed as the stream runs."""

    def __init__(self, registry: ConnectionRegistry, record: StreamConnection, heartbeat: float):
        self.registry = registry
        self.record = record
        # Outlives a few missed refreshes; a dead process's records expire by it.
        self.ttl = max(30.0, 3 * heartbeat)
        self._refreshed = time.monotonic()

    async def open(self) -> None:
        await self.registry.opened(self.record, self.ttl)

    async def sent(self, rows: list[StoredEvent] | None) -> None:
        if rows:
            self.record = advanced(self.record, rows[-1].position)
        if time.monotonic() - self._refreshed >= self.ttl / 3:
            self._refreshed = time.monotonic()
            await self.registry.touched(self.record, self.ttl)

    async def close(self) -> None:
        # A stream ended by cancellation may not get here; its record then expires.
        with contextlib.suppress(Exception):
            await self.registry.closed(self.record.connection_id)


def _tracked(
    connection: HTTPConnection, kind: str, decision: Decision, filt: StreamFilter
) -> Tracked:
    container = container_of(connection)
    record = new_connection(kind, decision.subject.id, filt.incident_id, filt.types)
    return Tracked(container.connections, record, container.settings.stream_heartbeat_seconds)


async def _sse(
    feed: LiveFeed,
    filt: StreamFilter,
    resume: int | None,
    grant: Grant,
    heartbeat: float,
    tracked: Tracked,
    named: bool = True,
) -> AsyncIterator[bytes]:
    # Subscribed here, not before the response: a client gone before the first byte
    # leaves no subscription behind.
    sub = await feed.subscribe(filt, resume)
    try:
        await tracked.open()
        # Tells EventSource clients how long to wait before reconnecting.
        yield b"retry: 2000\n: connected\n\n"
        while True:
            rows = await sub.next(heartbeat)
            # Checked after the wait, however long it lasted, and before anything is
            # rendered: no frame leaves once the grant has been withdrawn.
            if not await grant.holds():
                break
            await tracked.sent(rows)
            if rows is None:
                yield b": heartbeat\n\n"
                continue
            yield b"".join(sse_frame(row, grant.decision, named=named) for row in rows)
    finally:
        sub.close()
        await tracked.close()


async def _open_stream(
    request: Request,
    decision: Decision,
    incident: str | None,
    types: list[str] | None,
    last_event_id: str | None,
    after: str | None,
    named: bool = True,
) -> StreamingResponse:
    container = container_of(request)
    try:
        filt = _filter(decision, types, incident)
        resume = _resume_point(last_event_id, after)
    except InvalidQuery as exc:
        raise invalid_parameter(exc) from None
    if (
        incident is not None
        and container.incidents.get(incident, decision.visibilities) is None
        and not container.timeline.incident_visible(incident, decision.visibilities)
    ):
        # Raw events make an incident without a projection; either way, one the reader
        # cannot see answers like one that does not exist.
        raise Problem(404, "incident-not-found", f"no incident {incident!r}")
    grant = Grant(request, decision, recheck_seconds(container))
    return StreamingResponse(
        _sse(
            container.feed,
            filt,
            resume,
            grant,
            container.settings.stream_heartbeat_seconds,
            _tracked(request, "sse", decision, filt),
            named,
        ),
        media_type=SSE_MEDIA_TYPE,
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.get(
    "/events/stream",
    summary="Stream timeline events (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {SSE_MEDIA_TYPE: {}}}},
)
async def stream_events(
    request: Request,
    decision: Decided,
    type_: Annotated[
        list[str] | None, Query(alias="type", description="Type globs, e.g. im.incident.*")
    ] = None,
    incident: Annotated[str | None, Query(description="Only this incident's events")] = None,
    last_event_id: Annotated[str | None, Header(description="Resume after this frame id")] = None,
    after: Annotated[
        str | None, Query(alias="last_event_id", description="Resume after this frame id")
    ] = None,
) -> StreamingResponse:
    """Every new event the caller may see, as SSE frames, with heartbeats while idle."""
    require(request, decision, Action.READ, "timeline")
    return await _open_stream(request, decision, incident, type_, last_event_id, after)


@router.get(
    "/incidents/{incident_id}/stream",
    summary="Stream one incident's timeline (Server-Sent Events)",
    response_class=StreamingResponse,
    responses={200: {"content": {SSE_MEDIA_TYPE: {}}}},
)
async def stream_incident(
    request: Request,
    decision: Decided,
    incident_id: str,
    type_: Annotated[list[str] | None, Query(alias="type", description="Type globs")] = None,
    last_event_id: Annotated[str | None, Header(description="Resume after this frame id")] = None,
    after: Annotated[
        str | None, Query(alias="last_event_id", description="Resume after this frame id")
    ] = None,
    named: Annotated[
        bool, Query(description="false: frames carry no event name (one EventSource handler)")
    ] = True,
) -> StreamingResponse:
    """New events of one incident, as SSE frames."""
    require(request, decision, Action.READ, f"incident/{incident_id}")
    return await _open_stream(request, decision, incident_id, type_, last_event_id, after, named)


@router.websocket("/events/ws")
async def events_websocket(
    websocket: WebSocket,
    type_: Annotated[list[str] | None, Query(alias="type")] = None,
    incident: str | None = None,
    last_event_id: str | None = None,
) -> None:
    """The SSE stream's events over a WebSocket: one JSON message per event.

    Messages are ``{"kind": "event", "id": POSITION, "event": {...}}`` and, while idle,
    ``{"kind": "heartbeat"}``. Authentication is the same bearer token, in the
    ``Authorization`` header of the upgrade request.
    """
    container = container_of(websocket)
    try:
        subject = await authenticate(websocket)
        decision = await decide(websocket, subject)
        require(websocket, decision, Action.READ, "timeline")
        filt = _filter(decision, type_, incident)
        resume = _resume_point(last_event_id)
    except Problem as exc:
        # 1008: policy violation (no or bad credentials, refused); the reason says why.
        await websocket.close(code=1008, reason=exc.detail[:120])
        return
    except InvalidQuery as exc:
        await websocket.close(code=1003, reason=str(exc)[:120])
        return
    # Subscribed before the client sees the connection open: nothing it appends after
    # that can be missed.
    sub = await container.feed.subscribe(filt, resume)
    heartbeat = container.settings.stream_heartbeat_seconds
    grant = Grant(websocket, decision, recheck_seconds(container))
    tracked = _tracked(websocket, "websocket", decision, filt)
    try:
        await websocket.accept()
        await tracked.open()
        while True:
            rows = await sub.next(heartbeat)
            # As for SSE: checked after the wait, before anything is sent.
            if not await grant.holds():
                break
            await tracked.sent(rows)
            if rows is None:
                await websocket.send_text('{"kind":"heartbeat"}')
                continue
            for row in rows:
                message = {"kind": "event", "id": row.position, "event": to_entry(row, decision)}
                await websocket.send_text(orjson.dumps(message).decode())
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        sub.close()
        await tracked.close()
        with contextlib.suppress(RuntimeError):
            await websocket.close()


@router.get("/streams/connections", summary="Open stream connections of every server")
async def stream_connections(request: Request, decision: Decided) -> Response:
    """Every open SSE and WebSocket connection: who, following what, on which server
    process, since when, and the last position sent (administrators only)."""
    require(request, decision, Action.ADMIN, "streams")
    connections = await container_of(request).connections.connections()
    return json_response({"connections": [c.as_dict() for c in connections]})
