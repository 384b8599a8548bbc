"""Who am I: lets a client check its token (``incidents login`` uses it)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from incidents.api.auth import authenticate

router = APIRouter(prefix="/api/v1", tags=["session"])


@router.get("/whoami", summary="The subject the bearer token belongs to")
async def whoami(subject: Annotated[str, Depends(authenticate)]) -> dict[str, str]:
    """The user the presented token authenticates."""
    return {"subject": subject}
