"""What every router needs from the application: the container, and JSON answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import HTTPConnection
from starlette.responses import Response

if TYPE_CHECKING:
    from incidents.app import Container


def container_of(connection: HTTPConnection) -> Container:
    """The composition root the app was built with (HTTP request or WebSocket)."""
    container: Container = connection.app.state.container
    return container


def json_response(
    body: Any,
    status: int = 200,
    *,
    headers: dict[str, str] | None = None,
    media: str = "application/json",
) -> Response:
    """``body`` as orjson-encoded JSON."""
    return Response(orjson.dumps(body), status, headers=headers, media_type=media)
