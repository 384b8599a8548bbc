"""Authentication: every endpoint but health and metrics needs ``Authorization: Bearer``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from starlette.concurrency import run_in_threadpool

from incidents.api.problems import Problem
from incidents.identity.tokens import TokenService
from incidents.policy.model import Action, Decision, PolicyUnavailable
from incidents.policy.service import PDP_UNAVAILABLE, PolicyDenied, PolicyService, UnknownSubject

_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="incidents"'}


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", detail, headers=_CHALLENGE)


async def authenticate(request: Request) -> str:
    """The subject (user) calling, from the bearer token; 401 problem if there is none."""
    header = request.headers.get("authorization")
    if not header:
        raise _unauthorized(
            "this endpoint needs Authorization: Bearer TOKEN "
            "(create one with: incidents admin token create --user EMAIL)"
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("the Authorization header must be 'Bearer TOKEN'")
    tokens: TokenService = request.app.state.container.tokens
    subject = tokens.cached(token.strip())
    if subject is None:
        subject = await run_in_threadpool(tokens.authenticate, token.strip())
    if subject is None:
        raise _unauthorized("the bearer token is unknown or revoked")
    request.state.subject = subject
    return subject


async def decide(request: Request, subject: Annotated[str, Depends(authenticate)]) -> Decision:
    """The caller's policy decision, taken once per request (503 if it cannot be taken)."""
    policy: PolicyService = request.app.state.container.policy
    groups: tuple[str, ...] = getattr(request.state, "claimed_groups", ())
    decision = policy.recent(subject, groups)
    if decision is None:
        try:
            decision = await run_in_threadpool(policy.decide, subject, groups)
        except PolicyUnavailable as exc:
            raise Problem(
                503,
                "policy-unavailable",
                f"{PDP_UNAVAILABLE} ({exc})",
                headers={"Retry-After": "5"},
            ) from None
        except UnknownSubject as exc:
            raise _unauthorized(str(exc)) from None
    request.state.decision = decision
    return decision


def require(request: Request, decision: Decision, action: Action, resource: str) -> None:
    """Enforce ``action`` on ``resource``: 403 naming the missing role when refused."""
    policy: PolicyService = request.app.state.container.policy
    try:
        policy.require(decision, action, resource)
    except PolicyDenied as exc:
        raise Problem(403, "forbidden", str(exc), missing_role=exc.role) from None
