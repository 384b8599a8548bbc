"""NUL (U+0000) is refused at the edge, the same way on every database backend.

PostgreSQL text cannot hold NUL and fails the query; SQLite stores or searches for
it. Left to the backends, one request would be a 400 on one and a stored user or an
empty page on the other, so path and query values are checked here, for every
route, and JSON documents (SCIM bodies, GraphQL variables) by :func:`nul_path`.
"""

from __future__ import annotations

from typing import Any

from fastapi import WebSocketException
from starlette.requests import HTTPConnection
from starlette.status import WS_1003_UNSUPPORTED_DATA

from incidents.api.problems import Problem

NUL = "\x00"
REFUSED = "must not contain NUL (U+0000) characters"


def _refused(kind: str, name: str) -> Problem:
    return Problem(
        400,
        "invalid-value",
        f"the {kind} {name!r} {REFUSED}; nothing was stored",
        title="Invalid value",
        errors=[{"field": name, "detail": REFUSED}],
    )


def refuse_nul(connection: HTTPConnection) -> None:
    """A dependency of every route: 400 problem naming a path or query value with NUL.

    A WebSocket is closed before it opens, with 1003 like other bad parameters.
    """
    found: Problem | None = None
    for name, value in connection.path_params.items():
        if isinstance(value, str) and NUL in value:
            found = _refused("path parameter", name)
            break
    else:
        for name, value in connection.query_params.multi_items():
            if NUL in name or NUL in value:
                found = _refused("query parameter", name.replace(NUL, "\\x00"))
                break
    if found is None:
        return
    if connection.scope["type"] == "websocket":
        raise WebSocketException(WS_1003_UNSUPPORTED_DATA, found.detail[:120])
    raise found


def nul_path(document: Any) -> str | None:
    """Where the first NUL of a decoded JSON document is (``a.b[0]``), or None.

    Walked with a stack, not recursion: a document may be nested as deeply as the
    JSON decoder allows.
    """
    stack: list[tuple[str, Any]] = [("", document)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if NUL in value:
                return path or "$"
        elif isinstance(value, dict):
            children: list[tuple[str, Any]] = []
            for key, item in value.items():
                child = f"{path}.{key}" if path else str(key)
                if NUL in str(key):
                    return child.replace(NUL, "\\x00")
                children.append((child, item))
            stack.extend(reversed(children))
        elif isinstance(value, list):
            stack.extend(reversed([(f"{path}[{i}]", item) for i, item in enumerate(value)]))
    return None
