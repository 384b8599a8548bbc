"""Signing in to the console and out of it: with an API token, or at the OIDC provider.

Either way the result is a console session on the server (:mod:`incidents.sessions`);
the browser keeps only its id. Sign-in by redirect keeps the attempt's state, nonce
and PKCE verifier on the server too, bound to a short-lived cookie of its own, and
each attempt can be finished once.
"""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response

from incidents.api.auth import session_unavailable
from incidents.api.cookie_session import COOKIE, csrf_token
from incidents.api.state import container_of
from incidents.identity.oidc import OidcError, OidcUnavailable, looks_like_jwt
from incidents.identity.oidc_login import OidcLogin, Pkce
from incidents.identity.secret_comparison import same_secret
from incidents.identity.tokens import TOKEN_PREFIX, token_digest
from incidents.sessions.console import (
    Credential,
    IdentityCredential,
    SessionStoreUnavailable,
    SignInAttempt,
    TokenCredential,
    new_session_id,
    session_key,
)
from incidents.web.rendering import HEADERS, problem_page, render

router = APIRouter(include_in_schema=False)
MAX_SIGN_IN_BODY = 16_384
# The sign-in attempt's cookie, sent back by the browser with the provider's answer.
ATTEMPT_COOKIE = "im_oidc_attempt"
ATTEMPT_PATH = "/auth/oidc"
# How long a browser may take at the provider before its attempt is forgotten.
ATTEMPT_SECONDS = 600


def _sign_in_page(request: Request, code: int = 200, error: str | None = None) -> Response:
    login: OidcLogin | None = container_of(request).oidc_login
    provider = login.provider_name if login is not None else None
    return render(request, "sign_in.html", None, code, error=error, provider=provider)


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    """The sign-in page: at the identity provider where configured, or with a token."""
    return _sign_in_page(request)


def _same_origin(request: Request) -> bool:
    """Whether a form post comes from this site (browsers send Origin with POSTs)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


async def _own_page_form(request: Request) -> dict[str, str] | None:
    """The fields (first value of each) of a form posted from this site's own page, or
    None if another site's page posted it: a browser is signed in, or out, only from
    here."""
    if not _same_origin(request):
        return None
    raw = await request.body()
    fields = parse_qs(raw[:MAX_SIGN_IN_BODY].decode("utf-8", "replace"))
    return {name: values[0] for name, values in fields.items()}


async def _credential(request: Request, token: str) -> tuple[Credential, float | None] | None:
    """What a pasted token stands for, once checked, and when the session it starts
    must end at the latest (None if it is refused)."""
    container = container_of(request)
    if container.oidc is not None and not token.startswith(TOKEN_PREFIX) and looks_like_jwt(token):
        try:
            identity = await run_in_threadpool(container.oidc.verify, token)
        except OidcError:
            return None
        # A pasted JWT vouches for its holder until it expires, not for a whole session.
        return IdentityCredential(identity.email, identity.groups), identity.expires_at
    if await run_in_threadpool(container.tokens.authenticate, token) is None:
        return None
    # API tokens are re-checked on every request: revoking one ends its sessions.
    return TokenCredential(token_digest(token)), None


def _current_session(request: Request) -> str:
    """The :func:`session_key` of the session the browser's cookie names ("" if none)."""
    session_id = request.cookies.get(COOKIE, "")
    return session_key(session_id) if session_id else ""


async def _start_session(
    request: Request,
    credential: Credential,
    landing: Response,
    *,
    ends_by: float | None = None,
    replaces: tuple[str, ...] = (),
) -> Response:
    """Create a console session for ``credential`` (ending by ``ends_by`` at the latest),
    end those it ``replaces`` (by :func:`session_key`), and put the new id in the
    session cookie of ``landing`` (a 503 page instead if the session store is down)."""
    sessions = container_of(request).console_sessions
    try:
        session = await sessions.create(credential, ends_by=ends_by)
        # The browser's previous session must not outlive the cookie it loses now.
        for key in dict.fromkeys(replaces):
            if key:
                await sessions.delete_keyed(key)
    except SessionStoreUnavailable as exc:
        return problem_page(request, None, session_unavailable(exc))
    landing.set_cookie(
        COOKIE,
        session.session_id,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return landing


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """Check the token and start a console session; the cookie carries only its id."""
    form = await _own_page_form(request)
    if form is None:
        return Response("sign in from this site's own page", 403, headers=HEADERS)
    token = form.get("token", "").strip()
    checked = await _credential(request, token) if token else None
    if checked is None:
        return _sign_in_page(request, 401, "That token is unknown, revoked or expired.")
    credential, ends_by = checked
    landing = RedirectResponse("/", 303, headers=HEADERS)
    return await _start_session(
        request, credential, landing, ends_by=ends_by, replaces=(_current_session(request),)
    )


def forget_cookie(response: Response) -> Response:
    """``response``, telling the browser to drop its session cookie."""
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    """End the console session on the server and forget its cookie (the form carries
    the page's CSRF proof)."""
    form = await _own_page_form(request)
    if form is None:
        return Response("sign out from this site's own page", 403, headers=HEADERS)
    session_id = request.cookies.get(COOKIE, "")
    proof = form.get("csrf", "")
    expected = csrf_token(container_of(request).console_secret, session_id) if session_id else ""
    if session_id and not same_secret(proof, expected):
        return Response("the sign-out form's proof is missing", 403, headers=HEADERS)
    if session_id:
        try:
            await container_of(request).console_sessions.delete(session_id)
        except SessionStoreUnavailable as exc:
            return problem_page(request, None, session_unavailable(exc))
    return forget_cookie(RedirectResponse("/sign-in", 303, headers=HEADERS))


# --- at the identity provider ---------------------------------------------------------

_NOT_CONFIGURED = "Sign-in with an identity provider is not configured here; use an API token."
_UNREACHABLE = (
    "The identity provider cannot be reached right now; try again shortly, or sign in "
    "with an API token."
)


def _refused(request: Request, code: int, error: str) -> Response:
    response = _sign_in_page(request, code, error)
    response.delete_cookie(ATTEMPT_COOKIE, path=ATTEMPT_PATH, httponly=True, samesite="lax")
    return response


@router.get("/auth/oidc/start")
async def oidc_start(request: Request) -> Response:
    """Send the browser to the identity provider to sign in (code flow with PKCE)."""
    container = container_of(request)
    login: OidcLogin | None = container.oidc_login
    if login is None:
        return _sign_in_page(request, 404, _NOT_CONFIGURED)
    pkce = Pkce.new()
    attempt = SignInAttempt(
        secrets.token_urlsafe(32),
        secrets.token_urlsafe(32),
        pkce.verifier,
        # Known now: the provider's redirect back is cross-site, without the cookie.
        _current_session(request),
    )
    try:
        url = await run_in_threadpool(login.authorization_url, attempt.state, attempt.nonce, pkce)
    except OidcUnavailable:
        return _sign_in_page(request, 503, _UNREACHABLE)
    attempt_id = new_session_id()
    try:
        await container.console_sessions.begin_sign_in(attempt_id, attempt, ATTEMPT_SECONDS)
    except SessionStoreUnavailable as exc:
        return problem_page(request, None, session_unavailable(exc))
    response = RedirectResponse(url, 303, headers=HEADERS)
    # Lax, not Strict: the browser comes back from the provider's site, a cross-site
    # navigation that Strict cookies are withheld from.
    response.set_cookie(
        ATTEMPT_COOKIE,
        attempt_id,
        max_age=ATTEMPT_SECONDS,
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
        path=ATTEMPT_PATH,
    )
    return response


@router.get("/auth/oidc/callback")
async def oidc_callback(request: Request) -> Response:
    """Finish a sign-in at the identity provider: check the answer belongs to this
    browser's attempt, exchange the code, verify the ID token, start the session."""
    container = container_of(request)
    login: OidcLogin | None = container.oidc_login
    if login is None:
        return _sign_in_page(request, 404, _NOT_CONFIGURED)
    params = request.query_params
    attempt_id = request.cookies.get(ATTEMPT_COOKIE, "")
    try:
        # Taken, not read: an answer can finish its attempt once.
        attempt = await container.console_sessions.take_sign_in(attempt_id) if attempt_id else None
    except SessionStoreUnavailable as exc:
        return problem_page(request, None, session_unavailable(exc))
    if attempt is None:
        return _refused(
            request, 400, "This sign-in expired or was already finished; please sign in again."
        )
    if not same_secret(params.get("state", ""), attempt.state):
        return _refused(
            request,
            400,
            "The identity provider's answer does not belong to this browser's sign-in; "
            "please sign in again.",
        )
    error = params.get("error")
    if error is not None:
        shown = "" if error == "access_denied" else f" ({error[:40]})"
        return _refused(
            request, 400, f"The identity provider did not sign you in{shown}; please try again."
        )
    code = params.get("code", "")
    if not code:
        return _refused(request, 400, "The identity provider sent no sign-in code; try again.")
    try:
        identity = await run_in_threadpool(login.sign_in, code, attempt.verifier, attempt.nonce)
    except OidcUnavailable:
        return _refused(request, 503, _UNREACHABLE)
    except OidcError as exc:
        return _refused(request, 401, f"Sign-in refused: {exc}.")
    # A page that moves on to the console, rather than a redirect: the browser arrived
    # from the provider's site, and would withhold the new SameSite=Strict cookie from
    # a redirect in the same navigation.
    landing = render(request, "signed_in.html", None, email=identity.email)
    landing.delete_cookie(ATTEMPT_COOKIE, path=ATTEMPT_PATH, httponly=True, samesite="lax")
    credential = IdentityCredential(identity.email, identity.groups)
    replaces = (attempt.replaces, _current_session(request))
    return await _start_session(request, credential, landing, replaces=replaces)
