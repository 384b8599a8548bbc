"""Timeline endpoints: append, query, fetch, verify, export."""

from __future__ import annotations

import asyncio
from collections.abc import Collection, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from incidents.api.append_answers import (
    conflict_detail,
    key_in_use,
    may_be_disclosed_to,
    result_body,
)
from incidents.api.auth import decide, require
from incidents.api.body import read_body_or_413
from incidents.api.problems import Problem, invalid_parameter, malformed_body
from incidents.api.retention import archived_refusal
from incidents.api.state import container_of, json_response
from incidents.artifacts.service import ATTACH, is_stored_export
from incidents.events.envelope import Event, EventValidationError
from incidents.events.parsing import (
    BATCH,
    EventTooLarge,
    MalformedBody,
    Mode,
    UnsupportedMediaType,
    media_type,
    parse_request,
)
from incidents.events.timeformat import TimeFormatError, parse_micros
from incidents.incident.authority import action_for
from incidents.log.query import (
    InvalidQuery,
    TimelineFilter,
    validate_limit,
    validate_type_patterns,
)
from incidents.log.session import AppendResult, Outcome
from incidents.policy.model import Action, Decision
from incidents.retention.holds import HOLD_TYPES
from incidents.timeline.export import MEDIA_TYPES, ExportFormat
from incidents.timeline.render import to_cloudevent, to_entry
from incidents.timeline.service import AmbiguousEventId, Export, NotFound

if TYPE_CHECKING:
    from incidents.app import Container

router = APIRouter(prefix="/api/v1", tags=["timeline"])
Decided = Annotated[Decision, Depends(decide)]


def _invalid_event(exc: EventValidationError) -> Problem:
    return Problem(
        400,
        "invalid-event",
        f"the event is not a valid CloudEvent: {exc}",
        title="Invalid CloudEvent",
        errors=[e.as_dict() for e in exc.errors],
    )


async def _archived_among(container: Container, items: Sequence[object]) -> set[str]:
    """The archived incidents among those the request's events name (one query)."""
    named = {i.incident_id for i in items if isinstance(i, Event) and i.incident_id}
    if not named or container.retention is None:
        return set()
    return await run_in_threadpool(container.retention.archived_among, named)


async def _archived_redeliveries(
    container: Container, items: Sequence[object], archived: Collection[str]
) -> set[tuple[str, str]]:
    """The dedupe keys of events naming archived incidents that are archived events
    sent again: duplicates, answered as such rather than refused as writes."""
    keys = {
        (i.source, i.dedupe_id)
        for i in items
        if isinstance(i, Event) and i.incident_id is not None and i.incident_id in archived
    }
    if not keys or container.retention is None:
        return set()
    return await run_in_threadpool(container.retention.archived_keys, keys)


def _refusal(
    request: Request,
    decision: Decision,
    event: Event,
    archived: Collection[str] = (),
    redelivered: Collection[tuple[str, str]] = (),
) -> Problem | None:
    """A 403 when the event would change an incident in a way the caller may not; a
    409 when its incident is archived (unless it is an archived event sent again)."""
    if (
        event.incident_id is not None
        and event.incident_id in archived
        and (event.source, event.dedupe_id) not in redelivered
    ):
        return archived_refusal(event.incident_id)
    # Holds decide what retention may remove: only those who may place them may
    # record them, whichever way the event arrives.
    if event.type in HOLD_TYPES:
        action: Action | None = Action.LEGAL_HOLD
    elif event.type == ATTACH:
        if is_stored_export(event.data):
            # The view a stored export was made for decides who may download it: only
            # the export endpoint, which made it, may record one.
            return Problem(
                403,
                "stored-export-forged",
                "a stored export is recorded by POST /api/v1/incidents/{id}/timeline/export/"
                "artifacts, not by appending an event",
            )
        # Attachments go through the artifacts endpoint, which checks the bytes.
        action = Action.ARTIFACT_WRITE
    else:
        action = action_for(event.type, event.data)
    if action is None:
        return None
    try:
        require(request, decision, action, f"incident/{event.incident_id}")
    except Problem as exc:
        return exc
    return None


def _single_response(result: AppendResult, decision: Decision) -> Response:
    if not may_be_disclosed_to(result, decision):
        hidden = key_in_use(result)
        raise Problem(409, "dedupe-key-in-use", str(hidden["detail"]), title=str(hidden["title"]))
    if result.outcome is Outcome.CONFLICT:
        raise Problem(
            409,
            "duplicate-conflict",
            conflict_detail(result.dedupe_key),
            title="Duplicate event conflict",
            event_id=result.event_id,
            incident_id=result.incident_id,
        )
    body = result_body(result)
    return json_response(body, 201 if result.outcome is Outcome.CREATED else 200)


@router.post(
    "/timeline/events",
    summary="Append a CloudEvent (structured, binary or batch mode)",
    status_code=201,
    responses={
        200: {"description": "Duplicate: an identical event is already stored"},
        400: {"description": "Not a valid CloudEvent"},
        409: {"description": "Same dedupe key, different content"},
        413: {"description": "Body or batch over the limit"},
        415: {"description": "Not a CloudEvents content type"},
    },
)
async def append_events(request: Request, decision: Decided) -> Response:
    """Append one event, or a batch, to the timeline.

    The dedupe key is (source, im.origin_id) when an origin id is given, else
    (source, id). A replay of a stored event answers 200 with ``created: false``;
    a different event under a stored key answers 409.
    """
    container = container_of(request)
    require(request, decision, Action.APPEND, "timeline")
    subject = decision.subject.id
    settings = container.settings
    content_type = request.headers.get("content-type")
    is_batch = media_type(content_type) == BATCH
    body = await read_body_or_413(
        request, settings.max_batch_bytes if is_batch else settings.max_event_bytes
    )
    try:
        # Every pair as received (ASGI names are lowercase): a repeated ce-* header
        # must be seen, not folded into one value.
        parsed = parse_request(
            content_type, request.headers.items(), body, max_event_bytes=settings.max_event_bytes
        )
    except UnsupportedMediaType as exc:
        raise Problem(415, "unsupported-media-type", str(exc)) from None
    except MalformedBody as exc:
        raise malformed_body(exc) from None

    timeline = container.timeline
    archived = await _archived_among(container, parsed.items)
    redelivered = (
        await _archived_redeliveries(container, parsed.items, archived) if archived else set()
    )
    if parsed.mode is not Mode.BATCH:
        item = parsed.items[0]
        if isinstance(item, EventValidationError):
            timeline.record_rejected(1)
            raise _invalid_event(item)
        refusal = _refusal(request, decision, item, archived, redelivered)
        if refusal is not None:
            raise refusal
        results = await asyncio.wrap_future(timeline.submit([item], subject))
        return _single_response(results[0], decision)

    if len(parsed.items) > settings.max_batch_events:
        raise Problem(
            413,
            "batch-too-large",
            f"the batch holds {len(parsed.items)} events; the limit is "
            f"{settings.max_batch_events} per request: split it",
            limit_events=settings.max_batch_events,
        )
    refusals = {
        index: refusal
        for index, item in enumerate(parsed.items)
        if isinstance(item, Event)
        and (refusal := _refusal(request, decision, item, archived, redelivered)) is not None
    }
    valid: list[Event] = [
        item
        for index, item in enumerate(parsed.items)
        if isinstance(item, Event) and index not in refusals
    ]
    timeline.record_rejected(len(parsed.items) - len(valid))
    batch_results: list[AppendResult] = (
        await asyncio.wrap_future(timeline.submit(valid, subject)) if valid else []
    )
    appended = iter(batch_results)
    out: list[dict[str, Any]] = []
    counts = {"created": 0, "duplicates": 0, "conflicts": 0, "rejected": 0}
    for index, item in enumerate(parsed.items):
        if index in refusals:
            counts["rejected"] += 1
            refused = refusals[index]
            out.append(
                {
                    "status": refused.status,
                    "created": False,
                    "title": refused.title,
                    "detail": refused.detail,
                    **refused.extra,
                }
            )
            continue
        if isinstance(item, EventTooLarge):
            counts["rejected"] += 1
            out.append(
                {
                    "status": 413,
                    "created": False,
                    "title": "Event too large",
                    "detail": item.errors[0].detail,
                    "size_bytes": item.size,
                    "limit_bytes": item.limit,
                }
            )
            continue
        if isinstance(item, EventValidationError):
            counts["rejected"] += 1
            out.append(
                {
                    "status": 400,
                    "created": False,
                    "title": "Invalid CloudEvent",
                    "detail": str(item),
                    "errors": [e.as_dict() for e in item.errors],
                }
            )
            continue
        result = next(appended)
        if not may_be_disclosed_to(result, decision):
            counts["conflicts"] += 1
            out.append(key_in_use(result))
            continue
        entry = result_body(result)
        if result.outcome is Outcome.CREATED:
            counts["created"] += 1
            entry["status"] = 201
        elif result.outcome is Outcome.DUPLICATE:
            counts["duplicates"] += 1
            entry["status"] = 200
        else:
            counts["conflicts"] += 1
        out.append(entry)
    return json_response({"results": out, **counts})


@router.get("/timeline/events/{event_id}", summary="Fetch one stored CloudEvent")
def get_event(
    request: Request,
    decision: Decided,
    event_id: str,
    source: Annotated[str | None, Query(description="Disambiguates ids reused by sources")] = None,
    dialect: Annotated[str | None, Query(description="spec (default) or dotted")] = None,
) -> Response:
    """The stored event in structured CloudEvents JSON."""
    container = container_of(request)
    require(request, decision, Action.READ, f"event/{event_id}")
    chosen = _dialect(container, dialect)
    try:
        row = container.timeline.get(event_id, source, decision)
    except NotFound as exc:
        raise Problem(404, "event-not-found", str(exc)) from None
    except AmbiguousEventId as exc:
        raise Problem(409, "ambiguous-event-id", str(exc), sources=exc.sources) from None
    return json_response(to_cloudevent(row, chosen, decision), media="application/cloudevents+json")


def _dialect(container: Container, requested: str | None) -> str:
    chosen = requested or container.settings.export_dialect
    if chosen not in ("spec", "dotted"):
        raise invalid_parameter(InvalidQuery("dialect", f"must be spec or dotted, got {chosen!r}"))
    return chosen


def _time_param(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return parse_micros(value)
    except TimeFormatError as exc:
        raise InvalidQuery(name, str(exc)) from None


def timeline_filter(
    incident_id: str,
    type_: list[str] | None,
    from_: str | None,
    to: str | None,
    actor: str | None,
    correlation_key: str | None,
    fingerprint: str | None,
    order: str,
) -> TimelineFilter:
    """Build a filter from query parameters; raises :class:`InvalidQuery`."""
    if order not in ("asc", "desc"):
        raise InvalidQuery("order", f"must be asc or desc, got {order!r}")
    from_us = _time_param("from", from_)
    to_us = _time_param("to", to)
    if from_us is not None and to_us is not None and from_us > to_us:
        raise InvalidQuery("from", "is later than to")
    return TimelineFilter(
        incident_id=incident_id,
        types=validate_type_patterns(type_ or []),
        from_us=from_us,
        to_us=to_us,
        actor=actor,
        correlation_key=correlation_key,
        fingerprint=fingerprint,
        descending=order == "desc",
    )


@router.get("/incidents/{incident_id}/timeline", summary="Query an incident's timeline")
def list_timeline(
    request: Request,
    decision: Decided,
    incident_id: str,
    type_: Annotated[
        list[str] | None, Query(alias="type", description="Type globs, e.g. im.incident.*")
    ] = None,
    from_: Annotated[str | None, Query(alias="from", description="RFC 3339, inclusive")] = None,
    to: Annotated[str | None, Query(description="RFC 3339, inclusive")] = None,
    actor: str | None = None,
    correlation_key: str | None = None,
    fingerprint: str | None = None,
    limit: Annotated[int | None, Query(description="1..1000, default 50")] = None,
    order: Annotated[str, Query(description="asc (default) or desc")] = "asc",
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Response:
    """Events of one incident, filtered, in time order, one keyset page at a time."""
    container = container_of(request)
    require(request, decision, Action.READ, f"incident/{incident_id}")
    try:
        filt = timeline_filter(
            incident_id, type_, from_, to, actor, correlation_key, fingerprint, order
        )
        filt = replace(filt, visibilities=decision.visibilities)
        page = container.timeline.page(filt, cursor, validate_limit(limit))
    except InvalidQuery as exc:
        raise invalid_parameter(exc) from None
    except NotFound as exc:
        raise Problem(404, "incident-not-found", str(exc)) from None
    body: dict[str, Any] = {"events": [to_entry(row, decision) for row in page.events]}
    if page.next_cursor is not None:
        body["next_cursor"] = page.next_cursor
    return json_response(body)


@router.get("/incidents/{incident_id}/timeline/verify", summary="Check an incident's hash chain")
def verify_timeline(request: Request, decision: Decided, incident_id: str) -> Response:
    """Whether the incident's hash chain is intact and, if not, the first broken position."""
    container = container_of(request)
    require(request, decision, Action.VERIFY, f"incident/{incident_id}")
    try:
        report = container.timeline.verify(incident_id)
    except NotFound as exc:
        raise Problem(404, "incident-not-found", str(exc)) from None
    body: dict[str, Any] = {
        "incident_id": incident_id,
        "intact": report.intact,
        "events": report.events,
        "first_broken_position": report.first_broken_position,
    }
    if report.reason:
        body["reason"] = report.reason
    if report.last_hash is not None:
        body["head_hash"] = report.last_hash.hex()
    if container.retention is not None:
        # What purges and erasures removed, which the verification took into account.
        stones = container.retention.tombstones(incident_id)
        if stones:
            body["tombstones"] = [s.as_dict() for s in stones]
    return json_response(body)


def open_export(
    request: Request, decision: Decision, incident_id: str, format: str, dialect: str | None
) -> tuple[Export, ExportFormat]:
    """The export a request asks for, as its decision lets the reader see it (the
    ``export`` action checked; 4xx problems for bad parameters or a hidden incident)."""
    container = container_of(request)
    require(request, decision, Action.EXPORT, f"incident/{incident_id}")
    try:
        fmt = ExportFormat(format)
    except ValueError:
        raise invalid_parameter(
            InvalidQuery("format", f"must be json or md, got {format!r}")
        ) from None
    chosen = _dialect(container, dialect)
    try:
        export = container.timeline.export(incident_id, fmt, chosen, decision=decision)
    except NotFound as exc:
        raise Problem(404, "incident-not-found", str(exc)) from None
    return export, fmt


@router.get("/incidents/{incident_id}/timeline/export", summary="Export an incident's timeline")
def export_timeline(
    request: Request,
    decision: Decided,
    incident_id: str,
    format: Annotated[str, Query(description="json or md")] = "json",
    dialect: Annotated[str | None, Query(description="spec (default) or dotted")] = None,
) -> Response:
    """The whole timeline as a JSON array of CloudEvents or as a Markdown report, streamed."""
    export, fmt = open_export(request, decision, incident_id, format, dialect)
    suffix = "json" if fmt is ExportFormat.JSON else "md"
    return StreamingResponse(
        export.chunks,
        media_type=MEDIA_TYPES[fmt],
        headers={
            "X-Event-Count": str(export.total),
            "Content-Disposition": f'attachment; filename="{incident_id}-timeline.{suffix}"',
        },
    )
