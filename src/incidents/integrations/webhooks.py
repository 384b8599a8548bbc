"""What every alert provider's webhook shares: refusals, payload errors, correlation
and the answer.

Webhook endpoints do not take user tokens: each provider authenticates its deliveries
its own way (a bearer token, a signed body), in its folder under
:mod:`incidents.integrations`. What arrives is correlated and recorded by
``integration:<provider>:<name>``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import orjson
from starlette.responses import Response

from incidents.api.problems import Problem
from incidents.incident.correlation.alert import Alert
from incidents.incident.correlation.engine import AlertOutcome
from incidents.integrations.credentials import Integration
from incidents.integrations.payload import PayloadError
from incidents.log.commands import Rejected

if TYPE_CHECKING:
    from incidents.app import Container

audit = logging.getLogger("incidents.audit")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="incidents-ingest"'}


def refused(status: int, detail: str, provider: str) -> Problem:
    """A 401 (no or unknown credential) or 403 (a signature that matches no secret)."""
    # Audited without the credential: only what was wrong with it.
    audit.info("ingest refused (%s): %s", provider, detail, extra={"outcome": "unauthenticated"})
    headers = _CHALLENGE if status == 401 else None
    slug = "unauthorized" if status == 401 else "invalid-signature"
    return Problem(status, slug, detail, headers=headers)


def invalid_payload(exc: PayloadError, provider: str) -> Problem:
    """A 400 (not JSON) or 422 (a field the provider's format needs), naming the field."""
    status = 400 if exc.field == "body" else 422
    return Problem(
        status,
        "invalid-payload",
        f"the {provider} payload is not usable: {exc}",
        title="Invalid webhook payload",
        errors=[{"field": exc.field, "detail": exc.detail}],
    )


async def limit_delivery(container: Container, integration: Integration) -> None:
    """Refuse a delivery over the integration's limit so that the sender retries it.

    The answer is a 503 with Retry-After, not a 429: Alertmanager's webhook retries
    5xx answers but drops a notification answered 429, and an alert must not be lost
    to a rate limit. PagerDuty retries both.
    """
    limit = container.settings.rate_limit_webhook_per_minute
    if limit <= 0:
        return
    verdict = await container.rate_limiter.hit(f"webhook:{integration.recorder}", limit, 60.0)
    if not verdict.allowed:
        raise Problem(
            503,
            "rate-limited",
            f"{integration.recorder} delivered {limit} times in the last minute, its limit "
            f"(IM_RATE_LIMIT_WEBHOOK_PER_MINUTE); retry in {verdict.retry_after_header} s",
            title="Too many deliveries",
            headers={"Retry-After": verdict.retry_after_header},
            limit=limit,
        )


async def ingest_alerts(
    container: Container, alerts: list[Alert], integration: Integration
) -> list[AlertOutcome]:
    """Correlate and record ``alerts`` as ``integration``; what became of each."""
    if not alerts:
        return []
    # Correlation runs on the writer thread; the loop only waits for its future.
    try:
        return await asyncio.wrap_future(container.incidents.ingest(alerts, integration.recorder))
    except Rejected as exc:
        raise Problem(
            422, "invalid-payload", f"an alert could not be recorded: {exc}", title="Invalid alert"
        ) from None


def answer(
    integration: Integration, outcomes: list[AlertOutcome], status: int = 200, **extra: Any
) -> Response:
    """The webhook's answer: each alert's outcome and the counts."""
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
