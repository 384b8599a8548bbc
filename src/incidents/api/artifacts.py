"""Artifact endpoints: attach a file to an incident, list and download its files."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from incidents.api.auth import decide, require
from incidents.api.body import read_body_or_413
from incidents.api.incident_visibility import require_visible
from incidents.api.problems import Problem, field_problem
from incidents.api.retention import archived_refusal
from incidents.api.state import container_of, json_response
from incidents.api.timeline import open_export
from incidents.artifacts.content import ContentError, media_type
from incidents.artifacts.service import (
    EXPORT,
    Artifact,
    ArtifactError,
    ArtifactService,
    ExportWithdrawn,
    is_stored_export,
)
from incidents.events.envelope import Event
from incidents.log.session import Outcome
from incidents.policy.model import Action, Decision
from incidents.timeline.export import ExportFormat
from incidents.timeline.render import to_entry

router = APIRouter(prefix="/api/v1", tags=["artifacts"])
Decided = Annotated[Decision, Depends(decide)]


def _service(request: Request) -> ArtifactService:
    service = container_of(request).artifacts
    if service is None:
        raise Problem(503, "artifacts-unavailable", "no artifact store is configured")
    return service


def _artifact_problem(exc: ArtifactError) -> Problem:
    return field_problem(exc.status, "invalid-artifact", exc, exc.field)


@router.post(
    "/incidents/{incident_id}/artifacts",
    summary="Attach a file to an incident (the request body is the file)",
    status_code=201,
    responses={413: {"description": "Over the size limit"}, 415: {"description": "Bad type"}},
)
async def upload(
    request: Request,
    decision: Decided,
    incident_id: str,
    filename: Annotated[str, Query(min_length=1, max_length=255)],
) -> Response:
    """Store the body under its SHA-256 and record an ``im.artifact.attach`` event.

    Send the file's type as Content-Type (it must match the bytes) and its name as
    ``?filename=``.
    """
    container = container_of(request)
    require(request, decision, Action.ARTIFACT_WRITE, f"incident/{incident_id}")
    service = await _writable(request, decision, incident_id)
    data = await read_body_or_413(request, service.max_bytes)
    incident = await run_in_threadpool(container.incidents.get, incident_id, None)
    content_type = media_type(request.headers.get("content-type"))
    made = _made(
        service.attach_event,
        incident_id,
        filename,
        content_type,
        data,
        decision.subject.id,
        incident.classification if incident is not None else None,
    )
    return await _recorded(request, decision, incident_id, await made)


async def _writable(request: Request, decision: Decision, incident_id: str) -> ArtifactService:
    """The artifact service, once the incident is visible and not archived."""
    await require_visible(request, decision, incident_id)
    service = _service(request)
    retention = container_of(request).retention
    if retention is not None and await run_in_threadpool(retention.is_archived, incident_id):
        raise archived_refusal(incident_id)
    return service


async def _made(make: Any, *args: Any) -> tuple[Artifact, Event]:
    """Check and store an artifact's bytes (on a worker thread): 415 for a type the
    bytes do not match, 413 over the size limit."""
    try:
        made: tuple[Artifact, Event] = await run_in_threadpool(make, *args)
    except ContentError as exc:
        raise Problem(
            415,
            "unsupported-artifact-type",
            str(exc),
            errors=[{"field": "content-type", "detail": str(exc)}],
        ) from None
    except ArtifactError as exc:
        raise _artifact_problem(exc) from None
    return made


async def _recorded(
    request: Request, decision: Decision, incident_id: str, made: tuple[Artifact, Event]
) -> Response:
    """Append the attach event; the artifact as the 201 answer describes it."""
    artifact, event = made
    timeline = container_of(request).timeline
    (result,) = await asyncio.wrap_future(timeline.submit([event], decision.subject.id))
    if result.outcome is not Outcome.CREATED:
        raise Problem(409, "artifact-conflict", "the attach event was not recorded")
    return json_response(
        {
            "sha256": artifact.sha256,
            "size": artifact.size,
            "content_type": artifact.content_type,
            "filename": artifact.filename,
            "incident_id": incident_id,
            "event_id": result.event_id,
            "position": result.position,
        },
        201,
    )


# What a stored export is kept as (the types the artifact checks accept).
_EXPORT_TYPES = {
    ExportFormat.JSON: ("application/json", "json"),
    ExportFormat.MARKDOWN: ("text/markdown", "md"),
}


@router.post(
    "/incidents/{incident_id}/timeline/export/artifacts",
    summary="Store an export of an incident's timeline as an artifact of the incident",
    status_code=201,
    responses={413: {"description": "The export is over the artifact size limit"}},
)
async def store_export(
    request: Request,
    decision: Decided,
    incident_id: str,
    format: Annotated[str, Query(description="json or md")] = "json",
    dialect: Annotated[str | None, Query(description="spec (default) or dotted")] = None,
) -> Response:
    """Export the timeline as the caller may read it and keep the export as an artifact.

    The export holds what the caller could read (their visibilities, data classes and
    redaction). It is downloaded like any artifact, but only by readers whose own
    decision lets them read at least as much; others get a 404.
    """
    container = container_of(request)
    require(request, decision, Action.ARTIFACT_WRITE, f"incident/{incident_id}")
    # Opening an export reads the database (counts, the first page): not on the loop.
    export, fmt = await run_in_threadpool(
        open_export, request, decision, incident_id, format, dialect
    )
    service = await _writable(request, decision, incident_id)

    def collect() -> bytes:
        # Bounded: an export over the limit is refused without holding all of it.
        out = bytearray()
        for chunk in export.chunks:
            out += chunk
            if len(out) > service.max_bytes:
                raise ArtifactError(
                    "body",
                    f"the export is over the artifact limit of {service.max_bytes} bytes",
                    413,
                )
        return bytes(out)

    try:
        data = await run_in_threadpool(collect)
    except ArtifactError as exc:
        raise _artifact_problem(exc) from None
    incident = await run_in_threadpool(container.incidents.get, incident_id, None)
    content_type, suffix = _EXPORT_TYPES[fmt]
    made = _made(
        service.export_event,
        incident_id,
        suffix,
        content_type,
        data,
        decision,
        incident.classification if incident is not None else None,
    )
    return await _recorded(request, decision, incident_id, await made)


@router.get("/incidents/{incident_id}/artifacts", summary="An incident's artifacts")
async def list_artifacts(request: Request, decision: Decided, incident_id: str) -> Response:
    """The artifacts attached by events the caller may see, as redaction shows them."""
    require(request, decision, Action.INCIDENT_READ, f"incident/{incident_id}")
    await require_visible(request, decision, incident_id)
    service = _service(request)

    def listed() -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for row in service.attached(incident_id, decision.visibilities):
            entry = to_entry(row, decision)
            item = {
                **(entry.get("data") or {}),
                "attached_by": entry["actor"],
                "event_id": entry["id"],
            }
            # The view an export was made for names its maker's visibilities and data
            # classes: not for other readers. Whether it is an export is enough.
            if item.pop(EXPORT, None) is not None:
                item["stored_export"] = True
            if service.withdrawn(row):
                item["withdrawn"] = True
            out.append(item)
        return out

    return json_response({"artifacts": await run_in_threadpool(listed)})


@router.get(
    "/incidents/{incident_id}/artifacts/{sha256}", summary="Download an incident's artifact"
)
async def download(request: Request, decision: Decided, incident_id: str, sha256: str) -> Response:
    """The file, if an attach event of this incident that the caller may see names it."""
    require(request, decision, Action.INCIDENT_READ, f"incident/{incident_id}")
    await require_visible(request, decision, incident_id)
    try:
        found = await run_in_threadpool(
            _service(request).download, incident_id, sha256, decision.visibilities, decision
        )
    except ArtifactError as exc:
        raise _artifact_problem(exc) from None
    except ExportWithdrawn as exc:
        raise Problem(410, "export-withdrawn", str(exc)) from None
    if found is None:
        raise Problem(404, "artifact-not-found", f"{incident_id} has no artifact {sha256}")
    row, data = found
    entry = to_entry(row, decision)
    attached = entry.get("data") or {}
    if is_stored_export(orjson.loads(row.body).get("data")):
        # A stored export is the timeline: reading it needs the timeline's own action.
        require(request, decision, Action.READ, f"incident/{incident_id}")
    content_type = str(attached.get("content_type") or "application/octet-stream")
    return Response(
        data,
        media_type=content_type,
        headers={
            # Never rendered inline: an uploaded file must not run in the API's origin.
            "Content-Disposition": "attachment",
            "X-Content-Type-Options": "nosniff",
            "ETag": f'"{sha256}"',
        },
    )
