"""Rendering console pages: the templates, the security headers every page carries,
and the values every template gets (the reader, what they may do, the CSRF proof)."""

from __future__ import annotations

from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from incidents.api.cookie_session import COOKIE, csrf_token
from incidents.api.problems import Problem
from incidents.api.state import container_of
from incidents.policy.model import Action, Decision

TEMPLATES = Environment(
    loader=PackageLoader("incidents.web", "templates"),
    autoescape=select_autoescape(default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
# Pages load scripts, styles and data only from this site; nothing may frame them.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def render(
    request: Request, template: str, decision: Decision | None, code: int = 200, **context: Any
) -> HTMLResponse:
    """A page for the reader ``decision`` describes (None: not signed in)."""
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
    return HTMLResponse(html, code, headers=HEADERS)


def problem_page(request: Request, decision: Decision | None, exc: Problem) -> HTMLResponse:
    """The page of a refused request, with the problem's status and detail."""
    return render(request, "problem.html", decision, exc.status, problem=exc)
