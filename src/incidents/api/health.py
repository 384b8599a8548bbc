"""Unauthenticated operational endpoints: liveness, readiness, metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from incidents.api.docs import NO_BEARER_TOKEN
from incidents.api.problems import problem_response
from incidents.api.readiness import Readiness
from incidents.api.state import json_response

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)
# A probe's answer is about this moment only.
_NO_STORE = {"Cache-Control": "no-store"}


@router.get("/healthz", summary="Liveness", openapi_extra=NO_BEARER_TOKEN)
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: every dependency answers",
    openapi_extra=NO_BEARER_TOKEN,
)
def readyz(request: Request) -> Response:
    """Ready when the database, the bus, Redis (if configured) and the policy decision
    point all answer; otherwise 503, naming what is down. Each check is listed with
    ``ok`` and, when it failed, ``error``."""
    readiness: Readiness = request.app.state.readiness
    results = readiness.run()
    checks = {result.name: result.as_dict() for result in results}
    failed = [result for result in results if not result.ok]
    if not failed:
        return json_response({"status": "ready", "checks": checks}, headers=_NO_STORE)
    for result in failed:
        log.warning("readiness check failed: %s: %s", result.name, result.error)
    detail = "; ".join(f"{result.name}: {result.error}" for result in failed)
    return problem_response(
        503,
        "not-ready",
        "Service Unavailable",
        f"not ready: {detail}",
        headers=_NO_STORE,
        extra={"checks": checks, "failed": [result.name for result in failed]},
    )


@router.get("/metrics", summary="Prometheus metrics", openapi_extra=NO_BEARER_TOKEN)
def metrics(request: Request) -> Response:
    """Metrics in the Prometheus text format."""
    return Response(request.app.state.container.metrics.render(), media_type=CONTENT_TYPE_LATEST)
