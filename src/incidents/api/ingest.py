"""Ingest endpoints: alert providers' webhooks, authenticated per integration.

These endpoints do not take user tokens: Alertmanager sends the integration's bearer
token, PagerDuty signs the body with the integration's secret. What arrives is
correlated and recorded by ``integration:<provider>:<name>``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import APIRouter, Request
from starlette.responses import Response

from incidents.api.body import read_body_or_413
from incidents.api.problems import Problem
from incidents.api.state import container_of
from incidents.incident.correlation.alert import Alert
from incidents.incident.correlation.engine import AlertOutcome
from incidents.integrations.alertmanager import inbound as alertmanager
from incidents.integrations.credentials import ALERTMANAGER, PAGERDUTY, Integration
from incidents.integrations.pagerduty import inbound as pagerduty
from incidents.integrations.payload import PayloadError
from incidents.log.session import Rejected

if TYPE_CHECKING:
    from incidents.app import Container

router = APIRouter(prefix="/api/v1", tags=["ingest"])
audit = logging.getLogger("incidents.audit")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="incidents-ingest"'}


def _refused(status: int, detail: str, provider: str) -> Problem:
    # Audited without the credential: only what was wrong with it.
    audit.info("ingest refused (%s): %s", provider, detail, extra={"outcome": "unauthenticated"})
    headers = _CHALLENGE if status == 401 else None
    slug = "unauthorized" if status == 401 else "invalid-signature"
    return Problem(status, slug, detail, headers=headers)


def _invalid_payload(exc: PayloadError, provider: str) -> Problem:
    status = 400 if exc.field == "body" else 422
    return Problem(
        status,
        "invalid-payload",
        f"the {provider} payload is not usable: {exc}",
        title="Invalid webhook payload",
        errors=[{"field": exc.field, "detail": exc.detail}],
    )


async def _ingest(
    container: Container, alerts: list[Alert], integration: Integration
) -> list[AlertOutcome]:
    if not alerts:
        return []
    # Correlation runs on the writer thread; the loop only waits for its future.
    try:
        return await asyncio.wrap_future(container.incidents.ingest(alerts, integration.recorder))
    except Rejected as exc:
        raise Problem(
            422, "invalid-payload", f"an alert could not be recorded: {exc}", title="Invalid alert"
        ) from None


def _answer(
    integration: Integration, outcomes: list[AlertOutcome], status: int = 200, **extra: Any
) -> Response:
    counts = {"created": 0, "duplicates": 0, "conflicts": 0}
    for outcome in outcomes:
        if outcome.outcome == "created":
            counts["created"] += 1
        elif outcome.outcome == "duplicate":
            counts["duplicates"] += 1
        else:
            counts["conflicts"] += 1
    body = {
        "integration": integration.source,
        "alerts": [o.as_dict() for o in outcomes],
        **counts,
        **extra,
    }
    return Response(orjson.dumps(body), status, media_type="application/json")


@router.post(
    "/ingest/alertmanager",
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
        raise _refused(
            401,
            "this endpoint needs Authorization: Bearer <integration token> "
            "(integrations.alertmanager in the configuration file)",
            ALERTMANAGER,
        )
    integration = container.integrations.by_token(ALERTMANAGER, token.strip())
    if integration is None:
        raise _refused(
            401, "the token is not one of a configured Alertmanager integration", ALERTMANAGER
        )
    body = await read_body_or_413(request, container.settings.max_batch_bytes)
    try:
        alerts = alertmanager.alerts_from_payload(alertmanager.parse_payload(body), integration)
    except PayloadError as exc:
        raise _invalid_payload(exc, "Alertmanager") from None
    outcomes = await _ingest(container, alerts, integration)
    return _answer(integration, outcomes)


@router.post(
    "/ingest/pagerduty",
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
        raise _refused(401, "no PagerDuty integration is configured on this server", PAGERDUTY)
    body = await read_body_or_413(request, container.settings.max_batch_bytes)
    try:
        integration = pagerduty.verify(
            request.headers.get(pagerduty.SIGNATURE_HEADER), body, configured
        )
    except pagerduty.SignatureMissing as exc:
        raise _refused(401, str(exc), PAGERDUTY) from None
    except pagerduty.SignatureMismatch as exc:
        raise _refused(403, str(exc), PAGERDUTY) from None
    try:
        delivery = pagerduty.parse_delivery(
            body, integration, request.headers.get(pagerduty.WEBHOOK_ID_HEADER)
        )
    except PayloadError as exc:
        raise _invalid_payload(exc, "PagerDuty") from None
    if delivery.alert is None:
        return _answer(
            integration,
            [],
            202,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            skipped=delivery.skipped,
        )
    outcomes = await _ingest(container, [delivery.alert], integration)
    return _answer(
        integration, outcomes, event_id=delivery.event_id, event_type=delivery.event_type
    )
