"""How the result of an append is told to its caller: response bodies and what a
caller may learn about an event already stored under their key."""

from __future__ import annotations

from incidents.log.session import AppendResult, Outcome
from incidents.policy.model import Decision
from incidents.policy.redaction import needs_redaction

DUPLICATE_MESSAGE = "Event already exists with this dedupe key"

KEY_IN_USE = (
    "An event is already stored under dedupe key {key}, recorded by another caller; "
    "it is not appended again. Use a new id (or im.origin_id) for a new event."
)


def may_be_disclosed_to(result: AppendResult, decision: Decision) -> bool:
    """Whether the caller may learn if a stored event equals what they sent.

    "Same content" against "different content" is an oracle: a caller who cannot
    read the stored event in full could confirm guesses of its redacted values by
    replaying variants. Only its recorder, or a reader who sees everything it may
    hold, is told; everyone else gets one answer for any use of the key.
    """
    if result.outcome is Outcome.CREATED or result.stored_by == decision.subject.id:
        return True
    return (result.stored_visibility or "public") in decision.visibilities and not (
        needs_redaction(decision)
    )


def result_body(result: AppendResult) -> dict[str, object]:
    """The guide's response body for one result."""
    if result.outcome is Outcome.CONFLICT:
        return {
            "status": 409,
            "event_id": result.event_id,
            "created": False,
            "incident_id": result.incident_id,
            "title": "Duplicate event conflict",
            "detail": conflict_detail(result.dedupe_key),
        }
    body: dict[str, object] = {
        "event_id": result.event_id,
        "created": result.outcome is Outcome.CREATED,
        "incident_id": result.incident_id,
    }
    if result.outcome is Outcome.DUPLICATE:
        body["message"] = DUPLICATE_MESSAGE
    else:
        body["position"] = result.position
    return body


def key_in_use(result: AppendResult) -> dict[str, object]:
    """The answer for a key whose stored event the caller may not compare against."""
    return {
        "status": 409,
        "created": False,
        "title": "Dedupe key in use",
        "detail": KEY_IN_USE.format(key=result.dedupe_key),
    }


def conflict_detail(dedupe_key: str) -> str:
    """The 409 message: names the key and says what to check."""
    stored = f"An event with dedupe key {dedupe_key} is already stored with different content."
    if "im.origin_id" in dedupe_key:
        return (
            f"{stored} Origin ids must be unique per source system: check how im.origin_id "
            "is generated (for example pagerduty:alert:P123456, not pagerduty:alert)."
        )
    return f"{stored} Event ids must be unique per source: send a new id for a new event."
