"""The one check that a reader may see an incident named in a path."""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from incidents.api.problems import Problem
from incidents.api.state import container_of
from incidents.policy.model import Decision


async def require_visible(request: Request, decision: Decision, incident_id: str) -> None:
    """Raise a 404 unless the incident exists and the reader may see it: an incident
    the reader may not see looks like no incident at all."""
    timeline = container_of(request).timeline
    if not await run_in_threadpool(timeline.incident_visible, incident_id, decision.visibilities):
        raise Problem(404, "incident-not-found", f"no incident {incident_id!r}")
