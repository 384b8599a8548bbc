"""Authentication: every endpoint but operations, the API description and webhooks needs
``Authorization: Bearer``, or the web console's session cookie.

The bearer value is an API token (``im_...``) or, when OIDC is configured, a JWT from
the identity provider. A console session stands for one of those, and is re-checked
the same way on every request.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Annotated

from fastapi import Depends
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from incidents.api.cookie_session import CsrfRefused, cookie_session_id
from incidents.api.problems import Problem
from incidents.identity.directory import DirectoryError
from incidents.identity.oidc import (
    OidcError,
    OidcIdentity,
    OidcUnavailable,
    OidcVerifier,
    looks_like_jwt,
)
from incidents.identity.tokens import TOKEN_PREFIX, TokenService, token_digest
from incidents.policy.model import Action, Decision, PolicyUnavailable
from incidents.policy.service import PDP_UNAVAILABLE, PolicyDenied, PolicyService, UnknownSubject
from incidents.sessions.console import (
    ConsoleSession,
    ConsoleSessions,
    IdentityCredential,
    SessionStoreUnavailable,
    TokenCredential,
)

audit = logging.getLogger("incidents.audit")
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="incidents"'}


def _unauthorized(detail: str) -> Problem:
    # Failed authentications are audited too; the detail never holds the credential.
    audit.info("authentication refused: %s", detail, extra={"outcome": "unauthenticated"})
    return Problem(401, "unauthorized", detail, headers=_CHALLENGE)


async def authenticate(request: HTTPConnection) -> str:
    """The subject (user) calling, from the bearer token; 401 problem if there is none."""
    header = request.headers.get("authorization")
    if not header:
        # The web console's session cookie stands in for the header (see cookie_session).
        try:
            session_id = cookie_session_id(request, request.app.state.container.console_secret)
        except CsrfRefused:
            raise Problem(
                403,
                "csrf-refused",
                "a console request that changes state needs the page's X-CSRF-Token header",
            ) from None
        if session_id is not None:
            return await _authenticate_session(request, session_id)
    if not header:
        raise _unauthorized(
            "this endpoint needs Authorization: Bearer TOKEN "
            "(create one with: incidents admin token create --user EMAIL)"
        )
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _unauthorized("the Authorization header must be 'Bearer TOKEN'")
    token = token.strip()
    container = request.app.state.container
    if container.oidc is not None and not token.startswith(TOKEN_PREFIX) and looks_like_jwt(token):
        return await _authenticate_oidc(request, token)
    tokens: TokenService = container.tokens
    subject = tokens.cached(token)
    if subject is None:
        subject = await run_in_threadpool(tokens.authenticate, token)
    if subject is None:
        raise _unauthorized("the bearer token is unknown or revoked")
    await enforce_token_limit(request, token_digest(token))
    request.state.subject = subject
    return subject


def session_unavailable(exc: SessionStoreUnavailable) -> Problem:
    """The 503 answered while the console session store cannot be reached."""
    return Problem(
        503,
        "session-store-unavailable",
        f"console sessions cannot be checked right now: {exc}",
        headers={"Retry-After": "5"},
    )


async def console_session(request: HTTPConnection, session_id: str) -> ConsoleSession | None:
    """The live console session ``session_id`` names (None if unknown, signed out or
    expired); 503 problem if the session store cannot be reached."""
    sessions: ConsoleSessions = request.app.state.container.console_sessions
    try:
        return await sessions.get(session_id)
    except SessionStoreUnavailable as exc:
        raise session_unavailable(exc) from None


async def _authenticate_session(request: HTTPConnection, session_id: str) -> str:
    """The subject of a console session, its credential checked as a bearer one would be."""
    container = request.app.state.container
    sessions: ConsoleSessions = container.console_sessions
    session = await console_session(request, session_id)
    if session is None:
        raise _unauthorized("the console session is unknown, signed out or expired; sign in again")
    credential = session.credential
    if isinstance(credential, TokenCredential):
        tokens: TokenService = container.tokens
        subject = tokens.cached_digest(credential.digest)
        if subject is None:
            subject = await run_in_threadpool(tokens.authenticate_digest, credential.digest)
        if subject is None:
            # The token was revoked: the sessions made with it end with it.
            await _forget(sessions, session_id)
            raise _unauthorized(
                "the API token this console session signed in with is revoked; sign in again"
            )
        await enforce_token_limit(request, credential.digest)
    else:
        subject = await signed_in_identity(request, _identity(credential))
    try:
        await sessions.touch(session)
    except SessionStoreUnavailable as exc:
        raise session_unavailable(exc) from None
    request.state.subject = subject
    return subject


def _identity(credential: IdentityCredential) -> OidcIdentity:
    return OidcIdentity(email=credential.email, groups=credential.groups)


async def _forget(sessions: ConsoleSessions, session_id: str) -> None:
    # If the store is down the session expires on its own; the token is refused anyway.
    with contextlib.suppress(SessionStoreUnavailable):
        await sessions.delete(session_id)


async def enforce_token_limit(request: HTTPConnection, digest: str) -> None:
    """429 with Retry-After once the token (by its :func:`token_digest`) made its limit of
    requests in the last minute."""
    container = request.app.state.container
    limit: int = container.settings.rate_limit_token_per_minute
    if limit <= 0:
        return
    # Keyed by a digest: the limiter (Redis) never holds the credential itself.
    key = "token:" + digest[:32]
    verdict = await container.rate_limiter.hit(key, limit, 60.0)
    if not verdict.allowed:
        raise Problem(
            429,
            "rate-limited",
            f"this token made {limit} requests in the last minute, its limit "
            f"(IM_RATE_LIMIT_TOKEN_PER_MINUTE); retry in {verdict.retry_after_header} s",
            title="Too many requests",
            headers={"Retry-After": verdict.retry_after_header},
            limit=limit,
        )


async def _authenticate_oidc(request: HTTPConnection, token: str) -> str:
    """The email an OIDC token names; its groups go to ``request.state.claimed_groups``."""
    container = request.app.state.container
    oidc: OidcVerifier = container.oidc
    try:
        # Cached keys verify on the loop; a key fetch (blocking I/O) goes to a thread.
        identity = oidc.verify_cached(token)
        if identity is None:
            identity = await run_in_threadpool(oidc.verify, token)
    except OidcUnavailable as exc:
        # Not the caller's fault: a 401 would send clients to sign in again for nothing.
        raise Problem(
            503,
            "identity-provider-unavailable",
            f"the OIDC token could not be checked: {exc}",
            headers={"Retry-After": "5"},
        ) from None
    except OidcError as exc:
        raise _unauthorized(f"the OIDC token was rejected: {exc}") from None
    return await signed_in_identity(request, identity)


async def signed_in_identity(request: HTTPConnection, identity: OidcIdentity) -> str:
    """The subject of an identity the OIDC provider vouched for; its groups go to
    ``request.state.claimed_groups``. The directory maps both to roles."""
    container = request.app.state.container
    policy: PolicyService = container.policy
    # A recent decision proves the user exists; otherwise create them just in time,
    # with no grants of their own (their groups' grants, or an admin's, give access).
    if policy.recent(identity.email, identity.groups) is None:
        try:
            await run_in_threadpool(container.directory.ensure_user, identity.email)
        except DirectoryError as exc:
            raise _unauthorized(f"the OIDC token was rejected: {exc}") from None
    request.state.claimed_groups = identity.groups
    request.state.subject = identity.email
    return identity.email


async def decide(
    request: HTTPConnection, subject: Annotated[str, Depends(authenticate)]
) -> Decision:
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


def require(request: HTTPConnection, decision: Decision, action: Action, resource: str) -> None:
    """Enforce ``action`` on ``resource``: 403 naming the missing role when refused."""
    policy: PolicyService = request.app.state.container.policy
    try:
        policy.require(decision, action, resource)
    except PolicyDenied as exc:
        raise Problem(403, "forbidden", str(exc), missing_role=exc.role) from None
