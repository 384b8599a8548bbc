"""The PagerDuty v3 webhook endpoint: the body signed with an integration's secret."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from incidents.api.body import read_body_or_413
from incidents.api.docs import NO_BEARER_TOKEN
from incidents.api.state import container_of
from incidents.integrations.pagerduty import inbound as pagerduty
from incidents.integrations.pagerduty.inbound import PAGERDUTY
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
    "/ingest/pagerduty",
    openapi_extra=NO_BEARER_TOKEN,
    summary="Receive a PagerDuty v3 webhook",
    responses={
        200: {"description": "The event was recorded or recognised as a duplicate"},
        202: {"description": "Accepted but not an alert transition: nothing stored"},
        401: {"description": "No X-PagerDuty-Signature"},
        403: {"description": "No signature matches a configured secret"},
        422: {"description": "Not a v3 webhook payload (the field is named)"},
    },
)
async def ingest_pagerduty(request: Request) -> Response:
    """Correlate and record one PagerDuty v3 webhook event.

    The raw body must be signed (``X-PagerDuty-Signature: v1=<hex HMAC-SHA256>``)
    with a secret of a configured ``integrations.pagerduty`` entry.
    """
    container = container_of(request)
    configured = container.integrations.of(PAGERDUTY)
    if not configured:
        raise refused(401, "no PagerDuty integration is configured on this server", PAGERDUTY)
    body = await read_body_or_413(request, container.settings.max_batch_bytes)
    try:
        integration = pagerduty.verify(
            request.headers.get(pagerduty.SIGNATURE_HEADER), body, configured
        )
    except pagerduty.SignatureMissing as exc:
        raise refused(401, str(exc), PAGERDUTY) from None
    except pagerduty.SignatureMismatch as exc:
        raise refused(403, str(exc), PAGERDUTY) from None
    await limit_delivery(container, integration)
    try:
        delivery = pagerduty.parse_delivery(
            body, integration, request.headers.get(pagerduty.WEBHOOK_ID_HEADER)
        )
    except PayloadError as exc:
        raise invalid_payload(exc, "PagerDuty") from None
    if delivery.alert is None:
        return answer(
            integration,
            [],
            202,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            skipped=delivery.skipped,
        )
    outcomes = await ingest_alerts(container, [delivery.alert], integration)
    return answer(integration, outcomes, event_id=delivery.event_id, event_type=delivery.event_type)
