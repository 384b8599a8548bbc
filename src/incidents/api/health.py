"""Unauthenticated operational endpoints: liveness, readiness, metrics."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.responses import Response

from incidents.api.docs import NO_BEARER_TOKEN
from incidents.api.problems import problem_response

router = APIRouter(tags=["operations"])
log = logging.getLogger(__name__)


@router.get("/healthz", summary="Liveness", openapi_extra=NO_BEARER_TOKEN)
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: the database answers", openapi_extra=NO_BEARER_TOKEN)
def readyz(request: Request) -> Response:
    """Ready only when the database answers a query."""
    try:
        request.app.state.container.timeline.ping()
    except Exception as exc:
        log.warning("readiness check failed: %s", type(exc).__name__)
        return problem_response(
            503, "not-ready", "Service Unavailable", "the database does not answer"
        )
    return Response(b'{"status":"ready"}', media_type="application/json")


@router.get("/metrics", summary="Prometheus metrics", openapi_extra=NO_BEARER_TOKEN)
def metrics(request: Request) -> Response:
    """Metrics in the Prometheus text format."""
    return Response(request.app.state.container.metrics.render(), media_type=CONTENT_TYPE_LATEST)
