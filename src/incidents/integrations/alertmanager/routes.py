"""The Alertmanager webhook endpoint: bearer token per integration."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from incidents.api.body import read_body_or_413
from incidents.api.docs import NO_BEARER_TOKEN
from incidents.api.state import container_of
from incidents.integrations.alertmanager.inbound import (
    ALERTMANAGER,
    alerts_from_payload,
    parse_payload,
)
from incidents.integrations.payload import PayloadError
from incidents.integrations.webhooks import (
    answer,
    ingest_alerts,
    invalid_payload,
    limit_delivery,
    refused,
)

router = APIRouter(prefix="/api/v1", tags=["ingest"])


@router.post(
    "/ingest/alertmanager",
    openapi_extra=NO_BEARER_TOKEN,
    summary="Receive a Prometheus Alertmanager webhook (payload version 4)",
    responses={
        200: {"description": "Every alert recorded or recognised as a duplicate"},
        401: {"description": "No or unknown integration token"},
        413: {"description": "Body over the limit"},
        422: {"description": "Not an Alertmanager v4 payload (the field is named)"},
    },
)
async def ingest_alertmanager(request: Request) -> Response:
    """Correlate and record each alert of an Alertmanager notification.

    Authenticate with ``Authorization: Bearer <token>`` of a configured
    ``integrations.alertmanager`` entry.
    """
    container = container_of(request)
    header = request.headers.get("authorization") or ""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise refused(
            401,
            "this endpoint needs Authorization: Bearer <integration token> "
            "(integrations.alertmanager in the configuration file)",
            ALERTMANAGER,
        )
    integration = container.integrations.by_token(ALERTMANAGER, token.strip())
    if integration is None:
        raise refused(
            401, "the token is not one of a configured Alertmanager integration", ALERTMANAGER
        )
    await limit_delivery(container, integration)
    body = await read_body_or_413(request, container.settings.max_batch_bytes)
    try:
        alerts = alerts_from_payload(parse_payload(body), integration)
    except PayloadError as exc:
        raise invalid_payload(exc, "Alertmanager") from None
    outcomes = await ingest_alerts(container, alerts, integration)
    return answer(integration, outcomes)
