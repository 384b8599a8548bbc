"""The console's pages: incidents, an incident with its live timeline, boards, alerts.

Pages are rendered on the server with Jinja2 from the same services the API uses, for
the reader's one policy decision and through the same redaction. Changes (declare,
status, notes, acknowledgements) are made by the page's script calling the JSON API
with the session cookie and the page's CSRF proof; the live timeline is an
``EventSource`` on the API's SSE endpoint.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import RedirectResponse, Response
from starlette.staticfiles import StaticFiles

from incidents.api.alerts import listed_alert
from incidents.api.auth import authenticate, decide
from incidents.api.incidents import shown, shown_all
from incidents.api.problems import Problem
from incidents.api.state import container_of
from incidents.boards.personas import Persona, UnknownPersona, parse_persona
from incidents.boards.service import OPEN_INCIDENTS
from incidents.incident.lifecycle import SEVERITIES, Status
from incidents.incident.listing import incident_query
from incidents.log.query import InvalidQuery, TimelineFilter
from incidents.policy.model import Action, Decision
from incidents.store.alert_reader import STATUSES, AlertFilter
from incidents.timeline.render import to_entry
from incidents.web.paging import PageRequest, page_links
from incidents.web.rendering import HEADERS, problem_page, render
from incidents.web.sign_in import forget_cookie
from incidents.web.sign_in import router as sign_in_router

router = APIRouter(include_in_schema=False)
# Entries an incident page shows before the live stream takes over.
TIMELINE_ON_PAGE = 100


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


# --- pages ----------------------------------------------------------------------------


def _page_problem(exc: InvalidQuery | Problem) -> Problem:
    """What a list page shows when it cannot be listed; a bad cursor, limit or filter
    says how to start again."""
    if isinstance(exc, Problem):
        return exc
    return Problem(
        400,
        "invalid-parameter",
        f"{exc}; start again from the first page (links carry the filters they were made for)",
    )


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
        asked = PageRequest.of(params)
        page = await run_in_threadpool(
            container.incidents.page, query, decision.visibilities, asked.cursor, asked.limit
        )
        items = await run_in_threadpool(shown_all, container.incidents, page.incidents, decision)
    except (InvalidQuery, Problem) as exc:
        return problem_page(request, decision, _page_problem(exc))
    return render(
        request,
        "incidents.html",
        decision,
        incidents=items,
        pages=page_links("/", params, asked, page.next_cursor),
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
    return render(request, "declare.html", decision, severities=SEVERITIES)


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
        return problem_page(request, decision, exc)
    board_problem = None
    try:
        board = await run_in_threadpool(_board, request, incident_id, persona, decision)
    except Problem as exc:
        board, board_problem = None, exc.detail
    return render(
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
        return problem_page(request, decision, exc)
    if board is None:
        return problem_page(
            request, decision, Problem(404, "incident-not-found", f"no incident {incident_id!r}")
        )
    return render(request, "board_panel.html", decision, board=board, persona=persona.value)


@router.get("/boards")
async def boards_page(request: Request) -> Response:
    """The boards of open incidents, for one persona, a page at a time."""
    decision = await _decision(request)
    container = container_of(request)
    boards = container.boards
    assert boards is not None
    params = request.query_params
    try:
        persona = _persona(request)
        if not decision.allows(Action.INCIDENT_READ):
            raise Problem(403, "forbidden", "reading incidents needs the incident.reader role")
        if persona is Persona.COMPLIANCE and not decision.allows(Action.VERIFY):
            raise Problem(403, "forbidden", "the compliance board needs the timeline.exporter role")
        asked = PageRequest.of(params)
        page = await run_in_threadpool(
            container.incidents.page,
            OPEN_INCIDENTS,
            decision.visibilities,
            asked.cursor,
            asked.limit,
        )
        found = await run_in_threadpool(boards.summaries, page.incidents, persona, decision)
    except (InvalidQuery, Problem) as exc:
        return problem_page(request, decision, _page_problem(exc))
    return render(
        request,
        "boards.html",
        decision,
        boards=found,
        persona=persona.value,
        personas=[p.value for p in Persona],
        pages=page_links("/boards", params, asked, page.next_cursor),
    )


def _alerts_view(
    request: Request, decision: Decision, status: str | None, asked: PageRequest
) -> tuple[list[dict[str, Any]], str | None]:
    container = container_of(request)
    reader = container.alerts
    boards = container.boards
    assert reader is not None and boards is not None
    filt = AlertFilter(status, None, False, None, decision.visibilities)
    page = reader.page(filt, asked.cursor, asked.limit)
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
    return listed, page.next_cursor


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
        asked = PageRequest.of(request.query_params)
        alerts, next_cursor = await run_in_threadpool(
            _alerts_view, request, decision, status, asked
        )
    except (InvalidQuery, Problem) as exc:
        return problem_page(request, decision, _page_problem(exc))
    return render(
        request,
        "alerts.html",
        decision,
        alerts=alerts,
        statuses=STATUSES,
        status=status or "",
        pages=page_links("/alerts", request.query_params, asked, next_cursor),
    )


def mount_console(app: FastAPI) -> None:
    """Serve the console at ``/`` and its static files at ``/static``."""
    app.include_router(sign_in_router)
    app.include_router(router)
    static = files("incidents.web") / "static"
    app.mount("/static", StaticFiles(directory=str(static)), name="static")

    @app.exception_handler(_SignIn)
    async def _to_sign_in(request: Request, exc: _SignIn) -> Response:
        return forget_cookie(RedirectResponse("/sign-in", 303, headers=HEADERS))
