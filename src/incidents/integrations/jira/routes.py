"""The Jira webhook endpoint: ``POST /api/v1/connectors/jira/{name}/webhook``.

Jira Cloud signs the body with the webhook's secret (``X-Hub-Signature``). The payload
only says which issue changed: the issue is read back from Jira (so a reordered or
stale delivery cannot roll a field back), then taken in like a polled change, with
the same deterministic event id; a redelivery is a dedupe hit.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from incidents.api.body import read_body_or_413
from incidents.api.problems import Problem
from incidents.api.state import container_of, json_response
from incidents.integrations.jira import signature

router = APIRouter(prefix="/api/v1", tags=["connectors"])


def _field(name: str, detail: str) -> Problem:
    return Problem(
        422,
        "invalid-request-body",
        f"{name}: {detail}",
        errors=[{"field": name, "detail": detail}],
    )


@router.post(
    "/connectors/jira/{name}/webhook",
    summary="Receive a Jira Cloud webhook",
    responses={
        200: {"description": "Taken in (or a duplicate)"},
        202: {"description": "Not about a linked issue: nothing recorded"},
        401: {"description": "No signature, or no webhook secret configured"},
        403: {"description": "The signature does not match"},
        404: {"description": "No such Jira connector"},
        422: {"description": "Not a Jira issue webhook (the field is named)"},
        503: {"description": "Jira could not be read back; Jira retries the delivery"},
    },
)
async def jira_webhook(request: Request, name: str) -> Response:
    """Take in a change of a linked Jira issue (issue updated, comment created or
    edited)."""
    container = container_of(request)
    connector_id = f"jira:{name}"
    entry = container.connectors.get(connector_id)
    engine = container.sync
    if entry is None or engine is None:
        raise Problem(404, "not-found", f"no Jira connector {name!r}")
    if not entry.webhook_secret:
        raise Problem(401, "unauthorized", f"{connector_id} has no webhook_secret configured")
    body = await read_body_or_413(request, container.settings.max_batch_bytes)
    try:
        signature.verify(
            request.headers.get(signature.SIGNATURE_HEADER), body, entry.webhook_secret
        )
    except signature.SignatureMissing as exc:
        raise Problem(401, "unauthorized", str(exc)) from None
    except signature.SignatureMismatch as exc:
        raise Problem(403, "forbidden", str(exc)) from None
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise _field("body", "not JSON") from None
    if not isinstance(payload, dict):
        raise _field("body", "expected a JSON object")
    issue = payload.get("issue")
    if not isinstance(issue, dict) or not isinstance(issue.get("key"), str):
        raise _field("issue.key", "required (an issue webhook)")
    key = str(issue["key"])
    comment = payload.get("comment")
    comment_id = comment.get("id") if isinstance(comment, dict) else None
    about_comment = comment_id is not None
    event_id = None
    if about_comment and payload.get("webhookEvent") != "comment_updated":
        event_id = f"{connector_id}:{key}:comment:{comment_id}"
    # An edited comment becomes a note of its own, named by the comment and the edit
    # time read back from Jira (the engine's id), so no event id is given here.

    def take_in() -> dict[str, Any]:
        ticket = engine.bound(connector_id).client.get(key)
        outcome = engine.inbound(connector_id, ticket, event_id=event_id, force=about_comment)
        return {
            "issue": key,
            "version": ticket.version,
            "pulled": outcome.pulled,
            "conflicts": outcome.conflicts,
            "push_requested": outcome.push_requested,
            "linked": outcome.linked,
        }

    try:
        result = await run_in_threadpool(take_in)
    except Exception as exc:
        raise Problem(
            503, "vendor-unavailable", f"{connector_id}: {type(exc).__name__}: {exc}"
        ) from None
    return json_response(result, 200 if result["linked"] else 202)
