"""Authentication: every endpoint but health and metrics needs ``Authorization: Bearer``."""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from incidents.api.problems import Problem
from incidents.identity.tokens import TokenService

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
