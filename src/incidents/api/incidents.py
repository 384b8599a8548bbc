"""Incident endpoints: declare, list, read, change, and the lifecycle actions.

Every change runs as an incident command under the log's write lock and answers
once its events are committed. Reads come from the projections, filtered by the
caller's visible classifications (an incident outside them is a 404, exactly like
one that does not exist) and passed through the one redaction function.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from incidents.api.auth import decide, require
from incidents.api.problems import Problem, invalid_parameter
from incidents.api.retention import archived_refusal
from incidents.api.state import container_of, json_response
from incidents.incident.aggregate import CLASSIFICATIONS, Incident
from incidents.incident.commands import (
    Acknowledge,
    AddNote,
    Assign,
    AssignRole,
    ChangeStatus,
    CommandConflict,
    CommandResult,
    Declare,
    Escalate,
    IncidentNotFound,
    InvalidCommand,
    Link,
    Merge,
    Update,
)
from incidents.incident.document import incident_document
from incidents.incident.lifecycle import InvalidTransition, Status, parse_severity, parse_status
from incidents.incident.listing import incident_query
from incidents.incident.service import IncidentService
from incidents.log.commands import Command, Rejected
from incidents.log.query import InvalidQuery, validate_limit
from incidents.policy.model import Action, Decision
from incidents.policy.redaction import redact_body

router = APIRouter(prefix="/api/v1", tags=["incidents"])
Decided = Annotated[Decision, Depends(decide)]
MAX_TEXT = 10_000


class _Body(BaseModel):
    # A misspelt field is an error that names it, not a silently ignored value.
    model_config = ConfigDict(extra="forbid")


class DeclareBody(_Body):
    title: str = Field(min_length=1, max_length=500)
    severity: str = "SEV-3"
    service: str | None = Field(default=None, max_length=200)
    description: str = Field(default="", max_length=MAX_TEXT)
    labels: dict[str, str] = Field(default_factory=dict)
    classification: str = "public"
    commander: str | None = Field(default=None, max_length=320)
    # "draft" declares a draft; anything else opens the incident.
    status: Literal["open", "draft"] = "open"
    parent_id: str | None = Field(default=None, max_length=100)


class UpdateBody(_Body):
    title: str | None = Field(default=None, min_length=1, max_length=500)
    description: str | None = Field(default=None, max_length=MAX_TEXT)
    service: str | None = Field(default=None, max_length=200)
    labels: dict[str, str] | None = None
    severity: str | None = None
    classification: str | None = None


class StatusBody(_Body):
    status: str
    reason: str | None = Field(default=None, max_length=MAX_TEXT)


class AcknowledgeBody(_Body):
    note: str | None = Field(default=None, max_length=MAX_TEXT)


class EscalateBody(_Body):
    severity: str | None = None
    tier: int | None = Field(default=None, ge=1, le=10)
    reason: str | None = Field(default=None, max_length=MAX_TEXT)


class AssignBody(_Body):
    add: list[str] = Field(default_factory=list, max_length=50)
    remove: list[str] = Field(default_factory=list, max_length=50)


class RoleBody(_Body):
    role: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_\-]*$")
    # None (or absent) clears the role.
    user: str | None = Field(default=None, min_length=1, max_length=320)


class NoteBody(_Body):
    text: str = Field(min_length=1, max_length=MAX_TEXT)
    visibility: str | None = None


class MergeBody(_Body):
    into: str = Field(min_length=1, max_length=100)
    reason: str | None = Field(default=None, max_length=MAX_TEXT)


class LinkBody(_Body):
    parent_id: str | None = Field(default=None, max_length=100)
    related: list[str] = Field(default_factory=list, max_length=50)


def shown_all(
    service: IncidentService, items: Sequence[Incident], decision: Decision
) -> list[dict[str, Any]]:
    """The incidents' documents as this reader may see them: through redaction, and
    without the ids of relatives the reader may not see."""
    hidden = service.hidden_relatives(items, decision.visibilities)
    documents: list[dict[str, Any]] = []
    for incident in items:
        body, _ = redact_body({"data": incident_document(incident, hidden)}, decision)
        documents.append(body["data"])
    return documents


def shown(service: IncidentService, incident: Incident, decision: Decision) -> dict[str, Any]:
    """One incident's document as this reader may see it (see :func:`shown_all`)."""
    return shown_all(service, [incident], decision)[0]


def _problem(exc: Rejected) -> Problem:
    if isinstance(exc, IncidentNotFound):
        return Problem(404, "incident-not-found", str(exc), incident_id=exc.incident_id)
    if isinstance(exc, InvalidTransition):
        return Problem(
            409,
            "invalid-transition",
            str(exc),
            title="Invalid status transition",
            current_status=exc.current.value,
            requested_status=exc.target.value,
            allowed_transitions=exc.allowed,
        )
    if isinstance(exc, CommandConflict):
        return Problem(409, "incident-conflict", str(exc), title="Conflict with incident state")
    if isinstance(exc, InvalidCommand):
        return Problem(422, "invalid-command", str(exc), title="Invalid request")
    return Problem(409, "rejected", str(exc))


async def _run(request: Request, command: Command) -> CommandResult:
    """Run ``command`` without blocking the event loop; refusals become problems."""
    container = container_of(request)
    incident_id = request.path_params.get("incident_id")
    retention = container.retention
    # An archived incident is read-only: no command may append to it.
    if (
        incident_id
        and retention is not None
        and await run_in_threadpool(retention.is_archived, incident_id)
    ):
        raise archived_refusal(incident_id)
    future = container.incidents.submit(command)
    try:
        result: CommandResult = await asyncio.wrap_future(future)
    except Rejected as exc:
        raise _problem(exc) from None
    return result


async def _shown_after(request: Request, incident: Incident, decision: Decision) -> dict[str, Any]:
    """:func:`shown` for an async endpoint (it queries the relatives' classifications)."""
    service = container_of(request).incidents
    document: dict[str, Any] = await run_in_threadpool(shown, service, incident, decision)
    return document


async def _acted(request: Request, result: CommandResult, decision: Decision) -> Response:
    """The answer to an action: the incident afterwards and the events recorded."""
    events = [
        {"event_id": e.event_id, "incident_id": e.incident_id, "position": e.position}
        for e in result.events
    ]
    incident = await _shown_after(request, result.incident, decision)
    return json_response({"incident": incident, "events": events})


def _visible_incident(request: Request, decision: Decision, incident_id: str) -> Incident:
    incident = container_of(request).incidents.get(incident_id, decision.visibilities)
    if incident is None:
        raise Problem(404, "incident-not-found", f"no incident {incident_id!r}")
    return incident


def _severity(value: str | None) -> str | None:
    if value is None:
        return None
    parsed = parse_severity(value)
    if parsed is None:
        raise Problem(
            422,
            "invalid-command",
            f"severity must be SEV-1 ... SEV-4, got {value!r}",
            title="Invalid request",
            errors=[{"field": "severity", "detail": "must be SEV-1 ... SEV-4"}],
        )
    return parsed


def _classification(value: str | None) -> str | None:
    if value is not None and value not in CLASSIFICATIONS:
        raise Problem(
            422,
            "invalid-command",
            f"classification must be one of {', '.join(CLASSIFICATIONS)}, got {value!r}",
            title="Invalid request",
            errors=[{"field": "classification", "detail": f"one of {', '.join(CLASSIFICATIONS)}"}],
        )
    return value


@router.post(
    "/incidents",
    summary="Declare an incident",
    status_code=201,
    responses={
        200: {"description": "Replay of an earlier request with the same Idempotency-Key"},
        404: {"description": "The parent incident does not exist (or is not visible)"},
        422: {"description": "Invalid fields"},
    },
)
async def declare(
    request: Request,
    decision: Decided,
    body: DeclareBody,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=200, description="Retrying with the same key declares only once"),
    ] = None,
) -> Response:
    """Declare a new incident (``INC-n``); ``status: draft`` declares a draft."""
    require(request, decision, Action.INCIDENT_WRITE, "incident")
    command = Declare(
        title=body.title.strip(),
        actor=decision.subject.id,
        severity=_severity(body.severity) or "SEV-3",
        service=body.service,
        description=body.description,
        labels=body.labels,
        classification=_classification(body.classification) or "public",
        commander=body.commander,
        draft=body.status == "draft",
        parent_id=body.parent_id,
        visibilities=decision.visibilities,
        idempotency_key=idempotency_key,
    )
    result = await _run(request, command)
    headers = {"Location": f"/api/v1/incidents/{result.incident.id}"}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return json_response(
        await _shown_after(request, result.incident, decision),
        200 if result.replayed else 201,
        headers=headers,
    )


@router.get("/incidents", summary="List incidents, newest first")
def list_incidents(
    request: Request,
    decision: Decided,
    status: Annotated[list[str] | None, Query(description="open, mitigated, ...")] = None,
    severity: Annotated[list[str] | None, Query(description="SEV-1 ... SEV-4")] = None,
    service: str | None = None,
    commander: str | None = None,
    label: Annotated[list[str] | None, Query(description="key=value; all must match")] = None,
    q: Annotated[str | None, Query(description="Text in the title (case-insensitive)")] = None,
    limit: Annotated[int | None, Query(description="1..1000, default 50")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Response:
    """Incidents the caller may see, filtered, one keyset page at a time."""
    require(request, decision, Action.INCIDENT_READ, "incident")
    try:
        query = incident_query(status, severity, service, commander, label, q)
        page = container_of(request).incidents.page(
            query, decision.visibilities, cursor, validate_limit(limit)
        )
    except InvalidQuery as exc:
        raise invalid_parameter(exc) from None
    body: dict[str, Any] = {
        "incidents": shown_all(container_of(request).incidents, page.incidents, decision)
    }
    if page.next_cursor is not None:
        body["next_cursor"] = page.next_cursor
    return json_response(body)


@router.get("/incidents/{incident_id}", summary="Read one incident")
def get_incident(request: Request, decision: Decided, incident_id: str) -> Response:
    """The incident's current state, milestones and figures."""
    require(request, decision, Action.INCIDENT_READ, f"incident/{incident_id}")
    incident = _visible_incident(request, decision, incident_id)
    return json_response(shown(container_of(request).incidents, incident, decision))


@router.patch("/incidents/{incident_id}", summary="Change an incident's descriptive fields")
async def update_incident(
    request: Request, decision: Decided, incident_id: str, body: UpdateBody
) -> Response:
    """Change title, description, service, labels, severity or classification."""
    require(request, decision, Action.INCIDENT_WRITE, f"incident/{incident_id}")
    changes = body.model_dump(exclude_unset=True)
    if "severity" in changes:
        changes["severity"] = _severity(changes["severity"])
    if "classification" in changes:
        _classification(changes["classification"])
    for name in ("title", "severity", "classification", "labels"):
        if name in changes and changes[name] is None:
            raise Problem(
                422,
                "invalid-command",
                f"{name} cannot be removed, only changed",
                title="Invalid request",
                errors=[{"field": name, "detail": "must not be null"}],
            )
    command = Update(incident_id, decision.subject.id, decision.visibilities, changes=changes)
    result = await _run(request, command)
    return json_response(await _shown_after(request, result.incident, decision))


@router.post(
    "/incidents/{incident_id}/status",
    summary="Move an incident through its lifecycle",
    responses={409: {"description": "Not allowed from the current status; lists what is"}},
)
async def change_status(
    request: Request, decision: Decided, incident_id: str, body: StatusBody
) -> Response:
    """Move to ``open``, ``mitigated``, ``resolved``, ``closed`` or ``canceled``.

    Closing needs the commander role; an invalid move is a 409 listing the allowed ones.
    """
    target = parse_status(body.status)
    if target is None:
        raise Problem(
            422,
            "invalid-command",
            f"status must be one of {', '.join(s.value for s in Status)}, got {body.status!r}",
            title="Invalid request",
            errors=[{"field": "status", "detail": "unknown status"}],
        )
    action = Action.INCIDENT_CLOSE if target is Status.CLOSED else Action.INCIDENT_WRITE
    require(request, decision, action, f"incident/{incident_id}")
    command = ChangeStatus(
        incident_id, decision.subject.id, decision.visibilities, target=target, reason=body.reason
    )
    return await _acted(request, await _run(request, command), decision)


@router.post("/incidents/{incident_id}/acknowledge", summary="Acknowledge an incident")
async def acknowledge(
    request: Request, decision: Decided, incident_id: str, body: AcknowledgeBody | None = None
) -> Response:
    """Record that the caller has the incident (the status does not change)."""
    require(request, decision, Action.INCIDENT_WRITE, f"incident/{incident_id}")
    note = body.note if body is not None else None
    command = Acknowledge(incident_id, decision.subject.id, decision.visibilities, note=note)
    return await _acted(request, await _run(request, command), decision)


@router.post("/incidents/{incident_id}/escalate", summary="Escalate an incident")
async def escalate(
    request: Request, decision: Decided, incident_id: str, body: EscalateBody | None = None
) -> Response:
    """Raise severity and/or tier; with neither given, one severity step (or tier at SEV-1)."""
    require(request, decision, Action.INCIDENT_WRITE, f"incident/{incident_id}")
    body = body or EscalateBody()
    command = Escalate(
        incident_id,
        decision.subject.id,
        decision.visibilities,
        severity=_severity(body.severity),
        tier=body.tier,
        reason=body.reason,
    )
    return await _acted(request, await _run(request, command), decision)


@router.post("/incidents/{incident_id}/assign", summary="Add or remove assignees")
async def assign(
    request: Request, decision: Decided, incident_id: str, body: AssignBody
) -> Response:
    """Add and remove assignees in one step."""
    require(request, decision, Action.INCIDENT_WRITE, f"incident/{incident_id}")
    if not body.add and not body.remove:
        raise Problem(
            422, "invalid-command", "name users to add or remove", title="Invalid request"
        )
    command = Assign(
        incident_id,
        decision.subject.id,
        decision.visibilities,
        add=tuple(body.add),
        remove=tuple(body.remove),
    )
    return await _acted(request, await _run(request, command), decision)


@router.post("/incidents/{incident_id}/roles", summary="Give a role to a user, or clear it")
async def assign_role(
    request: Request, decision: Decided, incident_id: str, body: RoleBody
) -> Response:
    """Set ``role`` (commander, scribe, communications, ...) to ``user``; no user clears it."""
    require(request, decision, Action.INCIDENT_WRITE, f"incident/{incident_id}")
    command = AssignRole(
        incident_id, decision.subject.id, decision.visibilities, role=body.role, user=body.user
    )
    return await _acted(request, await _run(request, command), decision)


@router.post("/incidents/{incident_id}/notes", summary="Add a note", status_code=201)
async def add_note(
    request: Request, decision: Decided, incident_id: str, body: NoteBody
) -> Response:
    """Add a note to the incident's timeline (``im.note.add``)."""
    require(request, decision, Action.INCIDENT_WRITE, f"incident/{incident_id}")
    command = AddNote(
        incident_id,
        decision.subject.id,
        decision.visibilities,
        text=body.text,
        visibility=_classification(body.visibility),
    )
    result = await _run(request, command)
    event = result.events[0]
    return json_response(
        {"event_id": event.event_id, "incident_id": event.incident_id, "position": event.position},
        201,
    )


@router.post("/incidents/{incident_id}/merge", summary="Merge a duplicate into another incident")
async def merge(request: Request, decision: Decided, incident_id: str, body: MergeBody) -> Response:
    """Cancel this incident as a duplicate of ``into``; its alerts move, both timelines say so."""
    require(request, decision, Action.INCIDENT_CLOSE, f"incident/{incident_id}")
    command = Merge(
        incident_id,
        decision.subject.id,
        decision.visibilities,
        target=body.into,
        reason=body.reason,
    )
    return await _acted(request, await _run(request, command), decision)


@router.post("/incidents/{incident_id}/link", summary="Relate incidents (parent or siblings)")
async def link(request: Request, decision: Decided, incident_id: str, body: LinkBody) -> Response:
    """Make this incident a child of ``parent_id`` and/or relate it to ``related`` ones."""
    require(request, decision, Action.INCIDENT_WRITE, f"incident/{incident_id}")
    command = Link(
        incident_id,
        decision.subject.id,
        decision.visibilities,
        parent_id=body.parent_id,
        related=tuple(body.related),
    )
    return await _acted(request, await _run(request, command), decision)


@router.get("/incidents/{incident_id}/related", summary="An incident's family")
def related(request: Request, decision: Decided, incident_id: str) -> Response:
    """Parent, children, related incidents and merges that the caller may see."""
    require(request, decision, Action.INCIDENT_READ, f"incident/{incident_id}")
    incidents = container_of(request).incidents
    incident = _visible_incident(request, decision, incident_id)
    family = incidents.family(incident, decision.visibilities)
    single = {"parent": family.parent, "merged_into": family.merged_into}
    lists = {
        "children": family.children,
        "related": family.related,
        "merged_from": family.merged_from,
    }
    # One pass (one lookup of hidden relatives) for every incident the answer shows.
    members = [i for i in single.values() if i is not None] + [
        i for items in lists.values() for i in items
    ]
    documents = iter(shown_all(incidents, members, decision))
    body: dict[str, Any] = {"incident_id": incident.id}
    body.update({name: next(documents) if i is not None else None for name, i in single.items()})
    body.update({name: [next(documents) for _ in items] for name, items in lists.items()})
    return json_response(body)
