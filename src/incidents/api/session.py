"""Who am I: lets a client check its token (``incidents login`` uses it)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from incidents.api.auth import decide
from incidents.policy.model import Decision

router = APIRouter(prefix="/api/v1", tags=["session"])


@router.get("/whoami", summary="Who the bearer token belongs to, and what they may do")
async def whoami(decision: Annotated[Decision, Depends(decide)]) -> dict[str, Any]:
    """The authenticated user, their roles, attributes and clearance, and what the policy
    lets them do and see."""
    subject = decision.subject
    return {
        "subject": subject.id,
        "roles": sorted(subject.roles),
        "attributes": sorted(subject.attributes),
        "clearance": subject.clearance,
        "groups": sorted(subject.groups),
        "actions": sorted(decision.actions),
        "visibilities": sorted(decision.visibilities),
        "data_classes": sorted(decision.data_classes),
    }
