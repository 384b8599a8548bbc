"""The ITSM sync over HTTP: connectors and their health, an incident's tickets, and
the conflict queue (list, resolve)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from incidents.api.auth import decide, require
from incidents.api.problems import Problem
from incidents.api.state import container_of, json_response
from incidents.events.timeformat import format_micros, now_micros
from incidents.policy.model import Action, Decision
from incidents.sync.engine import ConflictError, SyncEngine
from incidents.sync.ports import Conflict, ConnectorStatus, Link

router = APIRouter(prefix="/api/v1", tags=["sync"])
Decided = Annotated[Decision, Depends(decide)]


def _time(micros: int | None) -> str | None:
    return None if micros is None or micros <= 0 else format_micros(micros)


def status_document(status: ConnectorStatus, now_us: int) -> dict[str, Any]:
    """A connector's figures as GET /api/v1/connectors and `incidents sync status` show."""
    lag = None
    if status.last_change_us is not None and status.last_poll_us is not None:
        lag = max(0.0, (now_us - status.last_change_us) / 1e6)
    return {
        "links": status.links,
        "open_conflicts": status.open_conflicts,
        "last_poll": _time(status.last_poll_us),
        "last_change_seen": _time(status.last_change_us),
        "seconds_since_last_change": lag,
        "last_error": status.last_error,
        "outbox_pending": status.pending,
        "outbox_dead": status.dead,
        "healthy": status.last_error is None and status.dead == 0,
    }


def link_document(link: Link) -> dict[str, Any]:
    return {
        "connector": link.connector,
        "incident_id": link.incident_id,
        "external_id": link.external_id or None,
        "key": link.key or None,
        "url": link.url,
        "state": "creating" if link.creating else "linked",
        "linked_at": _time(link.created_us),
        "synced_at": _time(link.synced_us),
    }


def conflict_document(conflict: Conflict) -> dict[str, Any]:
    return {
        "id": conflict.id,
        "connector": conflict.connector,
        "incident_id": conflict.incident_id,
        "field": conflict.field,
        "ours": conflict.ours,
        "theirs": conflict.theirs,
        "base": conflict.base,
        "reason": conflict.reason,
        "created_at": _time(conflict.created_us),
        "resolved_at": _time(conflict.resolved_us),
        "resolution": conflict.resolution,
        "resolved_value": conflict.resolved_value,
        "resolved_by": conflict.resolved_by,
    }


def _invalid(name: str, detail: str, *, query: bool = False) -> Problem:
    """A 400 (query) or 422 (body) naming the field at fault."""
    return Problem(
        400 if query else 422,
        "invalid-parameter" if query else "invalid-request-body",
        f"{name}: {detail}",
        errors=[{"field": name, "detail": detail}],
    )


def _engine(request: Request) -> SyncEngine:
    engine = container_of(request).sync
    if engine is None:
        raise Problem(404, "not-found", "no connectors are configured (connectors: in IM_CONFIG)")
    return engine


@router.get("/connectors", summary="Configured ITSM connectors and their health")
async def list_connectors(request: Request, decision: Decided) -> Response:
    """Every configured connector with its links, last poll, lag, outbox backlog and
    open conflicts. Credentials are never shown."""
    require(request, decision, Action.INCIDENT_READ, "connectors")
    container = container_of(request)
    engine = container.sync
    items = []
    for entry in container.connectors.entries:
        connector = entry.connector
        doc: dict[str, Any] = {
            "id": connector.id,
            "vendor": connector.vendor,
            "name": connector.name,
            "base_url": entry.base_url,
            "identity": connector.identity,
            "poll_seconds": connector.poll_seconds,
        }
        if engine is not None:
            status = await run_in_threadpool(engine.store.status, connector.id)
            doc.update(status_document(status, now_micros()))
        items.append(doc)
    return json_response({"connectors": items})


@router.get("/incidents/{incident_id}/tickets", summary="An incident's linked tickets")
async def incident_tickets(request: Request, decision: Decided, incident_id: str) -> Response:
    """The tickets linked to the incident, one per connector."""
    require(request, decision, Action.INCIDENT_READ, f"incident/{incident_id}")
    container = container_of(request)
    if container.incidents.get(incident_id, decision.visibilities) is None:
        raise Problem(404, "not-found", f"no incident {incident_id!r}")
    links = [] if container.sync is None else container.sync.store.links_of(incident_id)
    return json_response({"tickets": [link_document(link) for link in links]})


def _visible(request: Request, decision: Decision, conflict: Conflict) -> bool:
    incidents = container_of(request).incidents
    return incidents.get(conflict.incident_id, decision.visibilities) is not None


@router.get("/sync/conflicts", summary="The conflict queue")
async def list_conflicts(
    request: Request,
    decision: Decided,
    state: Annotated[str, Query(description="open (default) or all")] = "open",
    connector: Annotated[str | None, Query(description="servicenow:prod, jira:cloud, ...")] = None,
) -> Response:
    """Conflicts waiting for a decision (or all), oldest first; those on incidents the
    caller may not see are left out."""
    require(request, decision, Action.INCIDENT_READ, "sync/conflicts")
    if state not in ("open", "all"):
        raise _invalid("state", f"must be open or all, got {state!r}", query=True)
    engine = _engine(request)
    found = await run_in_threadpool(
        engine.store.conflicts, open_only=state == "open", connector=connector
    )
    shown = [conflict_document(c) for c in found if _visible(request, decision, c)]
    return json_response({"conflicts": shown})


class ResolveBody(BaseModel):
    resolution: str = Field(description="ours, theirs or value")
    value: str | None = Field(default=None, description="The value, with resolution=value")


@router.post("/sync/conflicts/{conflict_id}/resolve", summary="Resolve a conflict")
async def resolve_conflict(
    request: Request, decision: Decided, conflict_id: str, body: ResolveBody
) -> Response:
    """Settle a conflict: keep ours (pushed to the ticket), take theirs (applied to the
    incident), or set a value on both."""
    engine = _engine(request)
    conflict = engine.store.conflict(conflict_id)
    if conflict is None or not _visible(request, decision, conflict):
        raise Problem(404, "not-found", f"no conflict {conflict_id!r}")
    require(request, decision, Action.INCIDENT_WRITE, f"incident/{conflict.incident_id}")
    if body.resolution not in ("ours", "theirs", "value"):
        raise _invalid("resolution", f"must be ours, theirs or value, got {body.resolution!r}")
    if body.resolution == "value" and body.value is None:
        raise _invalid("value", "required with resolution=value")
    try:
        resolved = await run_in_threadpool(
            engine.resolve, conflict_id, body.resolution, body.value, decision.subject.id
        )
    except ConflictError as exc:
        raise Problem(409, "conflict", str(exc)) from None
    return json_response(conflict_document(resolved))
