"""Retention endpoints: legal holds, the retention plan, erasures and tombstones."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from incidents.api.auth import decide, require
from incidents.api.incident_visibility import require_visible
from incidents.api.problems import Problem, field_problem
from incidents.api.state import container_of, json_response
from incidents.events.timeformat import format_micros
from incidents.policy.model import Action, Decision
from incidents.retention.erasure import ErasureError
from incidents.retention.holds import LEGAL_HOLD_CLASS, MAX_REASON, Hold, HoldError
from incidents.retention.ports import RetentionConflict
from incidents.retention.service import RetentionService

router = APIRouter(prefix="/api/v1", tags=["retention"])
Decided = Annotated[Decision, Depends(decide)]
MAX_FIELDS = 100


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class HoldBody(_Body):
    reason: str = Field(min_length=1, max_length=MAX_REASON)


class ErasureBody(_Body):
    position: int = Field(ge=1)
    fields: list[Annotated[str, Field(min_length=1, max_length=500)]] = Field(
        min_length=1, max_length=MAX_FIELDS
    )
    reason: str = Field(min_length=1, max_length=MAX_REASON)


def hold_document(hold: Hold, decision: Decision) -> dict[str, Any]:
    """A hold as ``decision`` lets its reader see it: the reason is of the legal_hold
    data class, redacted for readers without legal_hold_access (as on the timeline)."""
    reason = (
        hold.reason
        if LEGAL_HOLD_CLASS in decision.data_classes
        else decision.marker_for(LEGAL_HOLD_CLASS)
    )
    return {
        "incident_id": hold.incident_id,
        "reason": reason,
        "placed_by": hold.placed_by,
        "placed_at": format_micros(hold.placed_us),
        "position": hold.position,
    }


def _service(request: Request) -> RetentionService:
    service = container_of(request).retention
    if service is None:
        raise Problem(503, "retention-unavailable", "retention is not configured here")
    return service


def _hold_problem(exc: HoldError) -> Problem:
    if exc.conflict:
        return Problem(409, "legal-hold-conflict", str(exc), title="Conflict with legal hold")
    return field_problem(422, "invalid-request", exc, exc.field or "body")


@router.post(
    "/incidents/{incident_id}/legal-hold",
    summary="Put an incident on legal hold",
    status_code=201,
    responses={409: {"description": "Already on hold"}},
)
async def place_hold(
    request: Request, decision: Decided, incident_id: str, body: HoldBody
) -> Response:
    """Record a legal hold on the incident's timeline: it is never archived or purged
    while the hold stands, whatever its age."""
    require(request, decision, Action.LEGAL_HOLD, f"incident/{incident_id}")
    await require_visible(request, decision, incident_id)
    service = _service(request)
    try:
        hold = await run_in_threadpool(
            service.place_hold, incident_id, body.reason, decision.subject.id
        )
    except HoldError as exc:
        raise _hold_problem(exc) from None
    except LookupError as exc:
        raise Problem(404, "incident-not-found", str(exc)) from None
    return json_response(hold_document(hold, decision), 201)


@router.delete(
    "/incidents/{incident_id}/legal-hold",
    summary="Release an incident's legal hold",
    responses={409: {"description": "Not on hold"}},
)
async def release_hold(
    request: Request,
    decision: Decided,
    incident_id: str,
    reason: Annotated[str, Query(min_length=1, max_length=MAX_REASON)],
) -> Response:
    """Record the release of the incident's legal hold (``?reason=`` says why)."""
    require(request, decision, Action.LEGAL_HOLD, f"incident/{incident_id}")
    await require_visible(request, decision, incident_id)
    service = _service(request)
    try:
        await run_in_threadpool(service.release_hold, incident_id, reason, decision.subject.id)
    except HoldError as exc:
        raise _hold_problem(exc) from None
    except LookupError as exc:
        raise Problem(404, "incident-not-found", str(exc)) from None
    return json_response({"incident_id": incident_id, "held": False})


@router.get("/incidents/{incident_id}/legal-hold", summary="An incident's legal hold")
async def get_hold(request: Request, decision: Decided, incident_id: str) -> Response:
    """The incident's current hold (``held: false`` when there is none)."""
    require(request, decision, Action.LEGAL_HOLD, f"incident/{incident_id}")
    await require_visible(request, decision, incident_id)
    hold = await run_in_threadpool(_service(request).hold, incident_id)
    if hold is None:
        return json_response({"incident_id": incident_id, "held": False})
    return json_response({"held": True, **hold_document(hold, decision)})


@router.get("/retention/holds", summary="Incidents on legal hold")
async def list_holds(request: Request, decision: Decided) -> Response:
    """Every hold on an incident the caller may see."""
    require(request, decision, Action.LEGAL_HOLD, "retention")
    container = container_of(request)

    def visible() -> list[Hold]:
        return [
            h
            for h in _service(request).holds()
            if container.timeline.incident_visible(h.incident_id, decision.visibilities)
        ]

    holds = await run_in_threadpool(visible)
    return json_response({"holds": [hold_document(h, decision) for h in holds]})


@router.get("/retention/plan", summary="What a retention run would do, and why")
async def retention_plan(request: Request, decision: Decided) -> Response:
    """The dry run: each incident's tier and the action a run would take."""
    require(request, decision, Action.LEGAL_HOLD, "retention")
    container = container_of(request)

    def plan() -> dict[str, Any]:
        service = _service(request)
        incidents = [
            {
                "incident_id": v.incident_id,
                "tier": v.tier.value,
                "action": v.action.value,
                "rule": v.rule,
                "reason": v.reason,
            }
            for v in service.plan()
            if container.timeline.incident_visible(v.incident_id, decision.visibilities)
        ]
        loose = service.plan_unattached()
        unattached = {
            "events": loose.events,
            "through_position": loose.through_position,
            "rule": loose.rule,
            "reason": loose.reason,
        }
        return {"incidents": incidents, "unattached": unattached}

    return json_response(await run_in_threadpool(plan))


@router.post(
    "/incidents/{incident_id}/erasures",
    summary="Erase fields of one stored event (data-subject request)",
    status_code=201,
)
async def erase_fields(
    request: Request, decision: Decided, incident_id: str, body: ErasureBody
) -> Response:
    """Replace fields of the event's data by a marker and leave a signed tombstone;
    the incident's chain still verifies."""
    require(request, decision, Action.ERASE, f"incident/{incident_id}")
    await require_visible(request, decision, incident_id)
    service = _service(request)
    try:
        stone = await run_in_threadpool(
            service.erase,
            incident_id,
            body.position,
            list(body.fields),
            body.reason,
            decision.subject.id,
        )
    except ErasureError as exc:
        raise Problem(
            422,
            "invalid-erasure",
            str(exc),
            errors=[{"field": "fields", "detail": str(exc)}],
        ) from None
    except RetentionConflict as exc:
        raise Problem(409, "incident-archived", str(exc)) from None
    except HoldError as exc:
        raise _hold_problem(exc) from None
    return json_response(stone.as_dict(), 201)


@router.get("/incidents/{incident_id}/tombstones", summary="An incident's retention tombstones")
async def tombstones(request: Request, decision: Decided, incident_id: str) -> Response:
    """What purges and erasures removed from the incident, signed."""
    require(request, decision, Action.VERIFY, f"incident/{incident_id}")
    service = _service(request)
    # While events remain, they decide who may see the incident (erasure tombstones
    # name fields); once all are purged, the tombstones are all there is.
    if await run_in_threadpool(service.has_stored, incident_id):
        await require_visible(request, decision, incident_id)
    stones = await run_in_threadpool(service.tombstones, incident_id)
    if not stones and not await run_in_threadpool(service.has_stored, incident_id):
        raise Problem(404, "incident-not-found", f"no incident {incident_id!r}")
    return json_response({"tombstones": [s.as_dict() for s in stones]})


def archived_refusal(incident_id: str) -> Problem:
    """The 409 a write to an archived incident gets."""
    return Problem(
        409,
        "incident-archived",
        f"{incident_id} is archived: its timeline is read-only "
        "(it can still be read, exported, verified and put on legal hold)",
        title="Incident archived",
        incident_id=incident_id,
    )
