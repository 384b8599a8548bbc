"""Status board endpoints: one incident's board, and the boards of every open incident.

A board passes the same policy decision as every read: incident read access, the
reader's classifications (an incident outside them is a 404, as if it did not exist),
and the one redaction function for everything the board shows. The ``compliance``
persona shows the chain's state and the data classes present, so it also needs the
right to verify timelines.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from incidents.api.auth import decide, require
from incidents.api.problems import Problem
from incidents.api.state import container_of, json_response
from incidents.boards.personas import Persona, UnknownPersona, parse_persona
from incidents.boards.service import BoardService
from incidents.policy.model import Action, Decision

router = APIRouter(prefix="/api/v1", tags=["boards"])
Decided = Annotated[Decision, Depends(decide)]
PersonaQuery = Annotated[
    str | None,
    Query(description="responder (default), commander, executive, customer or compliance"),
]


def persona_of(value: str | None) -> Persona:
    """The persona asked for; a 422 naming the parameter if it is not one."""
    try:
        return parse_persona(value)
    except UnknownPersona as exc:
        raise Problem(
            422,
            "invalid-parameter",
            str(exc),
            title="Invalid parameter",
            errors=[{"field": "persona", "detail": str(exc)}],
        ) from None


def require_persona(request: Request, decision: Decision, persona: Persona, resource: str) -> None:
    """The actions a persona's board needs of its reader (403 naming the role if not)."""
    require(request, decision, Action.INCIDENT_READ, resource)
    if persona is Persona.COMPLIANCE:
        require(request, decision, Action.VERIFY, resource)


def service_of(request: Request) -> BoardService:
    boards = container_of(request).boards
    assert boards is not None, "the container builds the board service"
    return boards


@router.get("/incidents/{incident_id}/board", summary="An incident's status board")
def incident_board(
    request: Request, decision: Decided, incident_id: str, persona: PersonaQuery = None
) -> Response:
    """The incident's board as a persona sees it, through the caller's policy decision."""
    chosen = persona_of(persona)
    require_persona(request, decision, chosen, f"incident/{incident_id}")
    board = service_of(request).board(incident_id, chosen, decision)
    if board is None:
        raise Problem(404, "incident-not-found", f"no incident {incident_id!r}")
    return json_response(board)


@router.get("/boards", summary="Status boards of every open incident")
def open_boards(request: Request, decision: Decided, persona: PersonaQuery = None) -> Response:
    """A summary board per open incident (draft, open, mitigated), newest first."""
    chosen = persona_of(persona)
    require_persona(request, decision, chosen, "incident")
    boards = service_of(request).open_boards(chosen, decision)
    return json_response({"persona": chosen.value, "boards": boards})
