"""The console's pages: incidents, an incident with its live timeline, boards, alerts.

Pages are rendered on the server with Jinja2 from the same services the API uses, for
the reader's one policy decision and through the same redaction. Changes (declare,
status, notes, acknowledgements) are made by the page's script calling the JSON API
with the session cookie and the page's CSRF proof; the live timeline is an
``EventSource`` on the API's SSE endpoint.
"""

from __future__ import annotations

import secrets
from importlib.resources import files
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, FastAPI, Request
from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.concurrency import run_in_threadpool
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from incidents.api.alerts import listed_alert
from incidents.api.auth import authenticate, decide, session_unavailable
from incidents.api.cookie_session import COOKIE, csrf_token
from incidents.api.incidents import shown, shown_all
from incidents.api.problems import Problem
from incidents.api.state import container_of
from incidents.boards.personas import Persona, UnknownPersona, parse_persona
from incidents.identity.oidc import looks_like_jwt
from incidents.identity.tokens import TOKEN_PREFIX, token_digest
from incidents.incident.lifecycle import SEVERITIES, Status
from incidents.incident.listing import incident_query
from incidents.log.query import InvalidQuery, TimelineFilter
from incidents.policy.model import Action, Decision
from incidents.sessions.console import (
    Credential,
    IdentityCredential,
    SessionStoreUnavailable,
    TokenCredential,
)
from incidents.store.alert_reader import STATUSES, AlertFilter
from incidents.timeline.render import to_entry

router = APIRouter(include_in_schema=False)
TEMPLATES = Environment(
    loader=PackageLoader("incidents.web", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
# Entries an incident page shows before the live stream takes over.
TIMELINE_ON_PAGE = 100
MAX_SIGN_IN_BODY = 16_384
# Pages load scripts, styles and data only from this site; nothing may frame them.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class _SignIn(Exception):
    """The page needs a signed-in reader."""


async def _decision(request: Request) -> Decision:
    """The reader's policy decision, from the session cookie; _SignIn without one."""
    try:
        subject = await authenticate(request)
        return await decide(request, subject)
    except Problem as exc:
        if exc.status == 401:
            raise _SignIn from None
        raise


def _render(
    request: Request, template: str, decision: Decision | None, code: int = 200, **context: Any
) -> HTMLResponse:
    session_id = request.cookies.get(COOKIE, "")
    csrf = csrf_token(container_of(request).console_secret, session_id) if session_id else ""
    html = TEMPLATES.get_template(template).render(
        request_path=request.url.path,
        user=decision.subject.id if decision else None,
        can_write=bool(decision and decision.allows(Action.INCIDENT_WRITE)),
        can_close=bool(decision and decision.allows(Action.INCIDENT_CLOSE)),
        can_append=bool(decision and decision.allows(Action.APPEND)),
        can_export=bool(decision and decision.allows(Action.EXPORT)),
        csrf=csrf,
        **context,
    )
    return HTMLResponse(html, code, headers=_HEADERS)


def _problem_page(request: Request, decision: Decision | None, exc: Problem) -> HTMLResponse:
    return _render(request, "problem.html", decision, exc.status, problem=exc)


# --- signing in and out ---------------------------------------------------------------


@router.get("/sign-in")
async def sign_in_page(request: Request) -> Response:
    """The sign-in form: paste an API token (or an OIDC token where configured)."""
    return _render(request, "sign_in.html", None, error=None)


def _same_origin(request: Request) -> bool:
    """Whether a form post comes from this site (browsers send Origin with POSTs);
    refuses signing a browser in, or out, from another site's page."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


async def _credential(request: Request, token: str) -> Credential | None:
    """What a pasted token stands for, once checked (None if it is refused)."""
    container = container_of(request)
    if container.oidc is not None and not token.startswith(TOKEN_PREFIX) and looks_like_jwt(token):
        try:
            identity = await run_in_threadpool(container.oidc.verify, token)
        except Exception:
            return None
        return IdentityCredential(identity.email, identity.groups)
    if await run_in_threadpool(container.tokens.authenticate, token) is None:
        return None
    return TokenCredential(token_digest(token))


async def start_session(request: Request, credential: Credential) -> Response:
    """Create a console session for ``credential`` and send the browser to the console
    with its id in the session cookie (a 503 page if the session store is down)."""
    try:
        session = await container_of(request).console_sessions.create(credential)
    except SessionStoreUnavailable as exc:
        return _problem_page(request, None, session_unavailable(exc))
    response = RedirectResponse("/", 303, headers=_HEADERS)
    response.set_cookie(
        COOKIE,
        session.session_id,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """Check the token and start a console session; the cookie carries only its id."""
    if not _same_origin(request):
        return Response("sign in from this site's own page", 403, headers=_HEADERS)
    raw = await request.body()
    form = parse_qs(raw[:MAX_SIGN_IN_BODY].decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    credential = await _credential(request, token) if token else None
    if credential is None:
        return _render(
            request,
            "sign_in.html",
            None,
            401,
            error="That token is unknown, revoked or expired.",
        )
    return await start_session(request, credential)


def _forget_cookie(response: Response) -> Response:
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    """End the console session on the server and forget its cookie (the form carries
    the page's CSRF proof)."""
    if not _same_origin(request):
        return Response("sign out from this site's own page", 403, headers=_HEADERS)
    raw = await request.body()
    form = parse_qs(raw[:MAX_SIGN_IN_BODY].decode("utf-8", "replace"))
    session_id = request.cookies.get(COOKIE, "")
    proof = (form.get("csrf") or [""])[0]
    expected = csrf_token(container_of(request).console_secret, session_id) if session_id else ""
    if session_id and not secrets.compare_digest(proof, expected):
        return Response("the sign-out form's proof is missing", 403, headers=_HEADERS)
    if session_id:
        try:
            await container_of(request).console_sessions.delete(session_id)
        except SessionStoreUnavailable as exc:
            return _problem_page(request, None, session_unavailable(exc))
    return _forget_cookie(RedirectResponse("/sign-in", 303, headers=_HEADERS))


# --- pages ----------------------------------------------------------------------------


def _one(values: list[str]) -> list[str] | None:
    return [v for v in values if v] or None


@router.get("/")
async def incidents_page(request: Request) -> Response:
    """Incidents the reader may see, filtered by status, severity and title text."""
    decision = await _decision(request)
    container = container_of(request)
    params = request.query_params
    statuses = _one(params.getlist("status"))
    severities = _one(params.getlist("severity"))
    text = params.get("q") or None
    try:
        if not decision.allows(Action.INCIDENT_READ):
            raise Problem(403, "forbidden", "reading incidents needs the incident.reader role")
        query = incident_query(statuses, severities, None, None, None, text)
        page = await run_in_threadpool(
            container.incidents.page, query, decision.visibilities, None, 200
        )
        items = await run_in_threadpool(shown_all, container.incidents, page.incidents, decision)
    except InvalidQuery as exc:
        return _problem_page(request, decision, Problem(400, "invalid-parameter", str(exc)))
    except Problem as exc:
        return _problem_page(request, decision, exc)
    return _render(
        request,
        "incidents.html",
        decision,
        incidents=items,
        statuses=[s.value for s in Status],
        severities=SEVERITIES,
        chosen_status=statuses or [],
        chosen_severity=severities or [],
        text=text or "",
    )


@router.get("/declare")
async def declare_page(request: Request) -> Response:
    """The form to declare an incident (posted to the API by the page's script)."""
    decision = await _decision(request)
    return _render(request, "declare.html", decision, severities=SEVERITIES)


def _persona(request: Request) -> Persona:
    try:
        return parse_persona(request.query_params.get("persona"))
    except UnknownPersona as exc:
        raise Problem(422, "invalid-parameter", str(exc)) from None


def _board(request: Request, incident_id: str, persona: Persona, decision: Decision) -> Any:
    """The persona board, or None if the reader's persona view may not show the incident."""
    if persona is Persona.COMPLIANCE and not decision.allows(Action.VERIFY):
        raise Problem(403, "forbidden", "the compliance board needs the timeline.exporter role")
    boards = container_of(request).boards
    assert boards is not None
    return boards.board(incident_id, persona, decision)


def _incident_view(request: Request, incident_id: str, decision: Decision) -> dict[str, Any]:
    container = container_of(request)
    if not decision.allows(Action.INCIDENT_READ):
        raise Problem(403, "forbidden", "reading incidents needs the incident.reader role")
    incident = container.incidents.get(incident_id, decision.visibilities)
    if incident is None:
        raise Problem(404, "incident-not-found", f"no incident {incident_id!r}")
    document = shown(container.incidents, incident, decision)
    entries: list[dict[str, Any]] = []
    # Frames after this position come over the stream (a frame also on the page is
    # shown once: the script keys entries by position).
    head = container.reader.head_position()
    if decision.allows(Action.READ):
        filt = TimelineFilter(
            incident_id=incident_id, descending=True, visibilities=decision.visibilities
        )
        rows = container.reader.page(filt, None, TIMELINE_ON_PAGE)
        entries = [to_entry(row, decision) for row in rows]
    allowed = [
        s
        for s in document["allowed_transitions"]
        if decision.allows(Action.INCIDENT_CLOSE if s == "closed" else Action.INCIDENT_WRITE)
    ]
    return {"incident": document, "entries": entries, "head": head, "moves": allowed}


@router.get("/incidents/{incident_id}")
async def incident_page(request: Request, incident_id: str) -> Response:
    """One incident: its state, actions, persona board and live timeline."""
    decision = await _decision(request)
    try:
        persona = _persona(request)
        view = await run_in_threadpool(_incident_view, request, incident_id, decision)
    except Problem as exc:
        return _problem_page(request, decision, exc)
    board_problem = None
    try:
        board = await run_in_threadpool(_board, request, incident_id, persona, decision)
    except Problem as exc:
        board, board_problem = None, exc.detail
    return _render(
        request,
        "incident.html",
        decision,
        personas=[p.value for p in Persona],
        persona=persona.value,
        board=board,
        board_problem=board_problem,
        **view,
    )


@router.get("/incidents/{incident_id}/board-panel")
async def board_panel(request: Request, incident_id: str) -> Response:
    """The persona board alone (the incident page reloads it as events arrive)."""
    decision = await _decision(request)
    try:
        persona = _persona(request)
        if not decision.allows(Action.INCIDENT_READ):
            raise Problem(403, "forbidden", "reading incidents needs the incident.reader role")
        board = await run_in_threadpool(_board, request, incident_id, persona, decision)
    except Problem as exc:
        return _problem_page(request, decision, exc)
    if board is None:
        return _problem_page(
            request, decision, Problem(404, "incident-not-found", f"no incident {incident_id!r}")
        )
    return _render(request, "board_panel.html", decision, board=board, persona=persona.value)


@router.get("/boards")
async def boards_page(request: Request) -> Response:
    """The boards of every open incident, for one persona."""
    decision = await _decision(request)
    boards = container_of(request).boards
    assert boards is not None
    try:
        persona = _persona(request)
        if not decision.allows(Action.INCIDENT_READ):
            raise Problem(403, "forbidden", "reading incidents needs the incident.reader role")
        if persona is Persona.COMPLIANCE and not decision.allows(Action.VERIFY):
            raise Problem(403, "forbidden", "the compliance board needs the timeline.exporter role")
        found = await run_in_threadpool(boards.open_boards, persona, decision)
    except Problem as exc:
        return _problem_page(request, decision, exc)
    return _render(
        request,
        "boards.html",
        decision,
        boards=found,
        persona=persona.value,
        personas=[p.value for p in Persona],
    )


def _alerts_view(request: Request, decision: Decision, status: str | None) -> list[dict[str, Any]]:
    container = container_of(request)
    reader = container.alerts
    boards = container.boards
    assert reader is not None and boards is not None
    page = reader.page(AlertFilter(status, None, False, None, decision.visibilities), None, 200)
    listed = [listed_alert(item, decision) for item in page.alerts]
    # Why each alert is where it is: the correlation recorded on its latest event,
    # shown only if the reader may see that event, and redacted like any event.
    latest = boards.events_at([item.record.last_position for item in page.alerts])
    for entry, item in zip(listed, page.alerts, strict=True):
        row = latest.get(item.record.last_position)
        explanation: Any = None
        last_type = None
        if row is not None and (row.visibility or "public") in decision.visibilities:
            shown_entry = to_entry(row, decision)
            last_type = shown_entry["event_type"]
            data = shown_entry.get("data")
            explanation = data.get("correlation") if isinstance(data, dict) else None
        entry["explanation"] = explanation
        entry["acknowledged"] = last_type == "im.alert.acknowledge"
    return listed


@router.get("/alerts")
async def alerts_page(request: Request) -> Response:
    """Alerts, newest first, with why each was attached, opened or parked."""
    decision = await _decision(request)
    status = request.query_params.get("status") or None
    try:
        if not decision.allows(Action.INCIDENT_READ):
            raise Problem(403, "forbidden", "reading alerts needs the incident.reader role")
        if status is not None and status not in STATUSES:
            raise Problem(400, "invalid-parameter", f"status must be one of {', '.join(STATUSES)}")
        alerts = await run_in_threadpool(_alerts_view, request, decision, status)
    except Problem as exc:
        return _problem_page(request, decision, exc)
    return _render(
        request, "alerts.html", decision, alerts=alerts, statuses=STATUSES, status=status or ""
    )


def mount_console(app: FastAPI) -> None:
    """Serve the console at ``/`` and its static files at ``/static``."""
    app.include_router(router)
    static = files("incidents.web") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.exception_handler(_SignIn)
    async def _to_sign_in(request: Request, exc: _SignIn) -> Response:
        return _forget_cookie(RedirectResponse("/sign-in", 303, headers=_HEADERS))
