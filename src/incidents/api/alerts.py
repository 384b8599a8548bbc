"""Alerts endpoints: the alerts the platform has received, attached or waiting."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from incidents.api.auth import decide, require
from incidents.api.problems import invalid_parameter
from incidents.api.state import container_of
from incidents.events.attributes import VISIBILITIES
from incidents.events.timeformat import format_micros
from incidents.log.query import InvalidQuery, validate_limit
from incidents.policy.model import Action, Decision
from incidents.policy.redaction import redact_body
from incidents.store.alert_reader import STATUSES, AlertFilter, AlertPage, ListedAlert

if TYPE_CHECKING:
    pass

router = APIRouter(prefix="/api/v1", tags=["alerts"])
Decided = Annotated[Decision, Depends(decide)]


def _may_see_document(item: ListedAlert, decision: Decision) -> bool:
    """Whether this reader may see the alert's document (and what is taken from it).

    The listing shows an alert by its incident and its latest event; the document may
    come from an earlier event that is more restricted (a later event without a
    document keeps it), and is then withheld from readers who may not see that event.
    """
    needed = item.record.document_visibilities
    # A row folded before the visibilities were recorded: only a reader who may see
    # everything is shown its document (incidents admin rebuild-projections records
    # them).
    return set(VISIBILITIES if needed is None else needed) <= decision.visibilities


def _entry(item: ListedAlert, decision: Decision) -> dict[str, Any]:
    record = item.record
    shown = _may_see_document(item, decision)
    document = None
    if shown:
        # The provider's description passes the same field redaction as event data.
        redacted, _ = redact_body({"data": record.alert}, decision)
        document = redacted.get("data")
    return {
        "key": record.key,
        "provider": record.provider,
        "status": record.status,
        "incident_id": record.incident_id,
        # Severity and summary are read from the document.
        "severity": record.severity if shown else None,
        "summary": record.summary if shown else None,
        "rule": record.rule,
        "events": record.events,
        "first_seen": format_micros(record.first_us),
        "last_seen": format_micros(record.last_us),
        "classification": item.visibility,
        "alert": document,
    }


def listed_alert(item: ListedAlert, decision: Decision) -> dict[str, Any]:
    """One alert as the listing shows it to this reader (the console shows the same)."""
    return _entry(item, decision)


@router.get("/alerts", summary="List alerts")
async def list_alerts(
    request: Request,
    decision: Decided,
    status: Annotated[str | None, Query(description="firing or resolved")] = None,
    incident_id: Annotated[str | None, Query(description="Attached to this incident")] = None,
    unattached: Annotated[bool, Query(description="Only alerts attached to no incident")] = False,
    provider: Annotated[str | None, Query(description="alertmanager, pagerduty, ...")] = None,
    limit: Annotated[int | None, Query(description="1..1000, default 50")] = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> Response:
    """Alerts, newest first; those on an incident the caller may not see are left out."""
    container = container_of(request)
    require(request, decision, Action.INCIDENT_READ, "alerts")
    reader = container.alerts
    assert reader is not None
    try:
        if status is not None and status not in STATUSES:
            raise InvalidQuery("status", f"must be one of {', '.join(STATUSES)}, got {status!r}")
        if unattached and incident_id is not None:
            raise InvalidQuery("unattached", "cannot be combined with incident_id")
        size = validate_limit(limit)
        filt = AlertFilter(status, incident_id, unattached, provider, decision.visibilities)
        page: AlertPage = await run_in_threadpool(reader.page, filt, cursor, size)
    except InvalidQuery as exc:
        raise invalid_parameter(exc) from None
    body: dict[str, Any] = {"alerts": [_entry(item, decision) for item in page.alerts]}
    if page.next_cursor is not None:
        body["next_cursor"] = page.next_cursor
    return Response(orjson.dumps(body), 200, media_type="application/json")
