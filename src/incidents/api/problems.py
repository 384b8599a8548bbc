"""RFC 9457 problem details: every error the API returns is ``application/problem+json``."""

from __future__ import annotations

import logging
import sqlite3
from http import HTTPStatus
from typing import Any

import orjson
import psycopg
import sqlalchemy.exc
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from incidents.artifacts.ports import ObjectStoreError
from incidents.log.query import InvalidQuery

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"
# Failures of the database itself (connection lost, server restarting, lock timeout).
STORAGE_ERRORS: tuple[type[Exception], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    psycopg.OperationalError,
    psycopg.InterfaceError,
    sqlite3.OperationalError,
)


def problem_type(slug: str) -> str:
    """The ``type`` URI of one kind of problem."""
    return f"urn:incidents:problem:{slug}"


class Problem(Exception):
    """An error to answer with problem details."""

    def __init__(
        self,
        status: int,
        slug: str,
        detail: str,
        *,
        title: str | None = None,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.slug = slug
        self.title = title or HTTPStatus(status).phrase
        self.detail = detail
        self.errors = errors
        self.headers = headers
        self.extra = extra


def field_problem(
    status: int, slug: str, exc: Exception, field: str, title: str | None = None
) -> Problem:
    """A problem about one field: ``exc`` reads ``"<field>: <what is wrong>"``, and the
    part after the field's name is what ``errors`` says of it."""
    return Problem(
        status,
        slug,
        str(exc),
        title=title,
        errors=[{"field": field, "detail": str(exc).split(": ", 1)[-1]}],
    )


def invalid_parameter(exc: InvalidQuery) -> Problem:
    """A 400 naming the query parameter that cannot be used."""
    return field_problem(
        400, "invalid-parameter", exc, exc.parameter, title="Invalid query parameter"
    )


def malformed_body(exc: Exception) -> Problem:
    """A 400 for a body that is not the JSON document it must be."""
    return Problem(400, "malformed-body", str(exc), title="Malformed request body")


def problem_response(
    status: int,
    slug: str,
    title: str,
    detail: str,
    *,
    instance: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": problem_type(slug),
        "title": title,
        "status": status,
        "detail": detail,
    }
    if instance:
        body["instance"] = instance
    if errors:
        body["errors"] = errors
    if extra:
        body.update(extra)
    return Response(orjson.dumps(body), status, headers=headers, media_type=PROBLEM_JSON)


def _from_problem(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, Problem)
    return problem_response(
        exc.status,
        exc.slug,
        exc.title,
        exc.detail,
        instance=request.url.path,
        errors=exc.errors,
        headers=exc.headers,
        extra=exc.extra,
    )


def _from_validation(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    errors = []
    for err in exc.errors():
        loc = [str(p) for p in err.get("loc", ()) if p not in ("query", "path", "body", "header")]
        errors.append({"field": ".".join(loc) or "request", "detail": err.get("msg", "invalid")})
    detail = "; ".join(f"{e['field']}: {e['detail']}" for e in errors) or "invalid request"
    in_body = any(err.get("loc", ("",))[0] == "body" for err in exc.errors())
    return problem_response(
        422 if in_body else 400,
        "invalid-request-body" if in_body else "invalid-parameter",
        "Invalid request body" if in_body else "Invalid query parameter",
        detail,
        instance=request.url.path,
        errors=errors,
    )


def _from_http(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc.__cause__, ClientDisconnect):
        # The framework's own body parsing turns a disconnect into a 400.
        return _from_disconnect(request, exc.__cause__)
    status = exc.status_code
    slug = {404: "not-found", 405: "method-not-allowed"}.get(status, "http-error")
    detail = str(exc.detail)
    if status == 404 and detail == "Not Found":
        detail = f"no such endpoint: {request.method} {request.url.path}"
    return problem_response(
        status,
        slug,
        HTTPStatus(status).phrase,
        detail,
        instance=request.url.path,
        headers=dict(exc.headers) if exc.headers else None,
    )


def _from_storage(request: Request, exc: Exception) -> Response:
    # The database is down, restarting or locked: the client should retry, and nothing
    # was half-written because every append is one transaction.
    log.warning(
        "storage unavailable on %s %s: %s", request.method, request.url.path, type(exc).__name__
    )
    return problem_response(
        503,
        "storage-unavailable",
        "Service Unavailable",
        "the database is not answering; nothing was stored by this request, retry shortly",
        instance=request.url.path,
        headers={"Retry-After": "1"},
    )


def _from_object_store(request: Request, exc: Exception) -> Response:
    # The artifacts' bucket or directory failed (missing, no permission, unreachable):
    # the operator must act; the message names the store, never a credential.
    log.warning("object store failed on %s %s: %s", request.method, request.url.path, exc)
    return problem_response(
        503,
        "object-store-unavailable",
        "Service Unavailable",
        f"{exc}; no attachment was recorded by this request, retry once the store answers",
        instance=request.url.path,
        headers={"Retry-After": "30"},
    )


def _from_unstorable(request: Request, exc: Exception) -> Response:
    # A value PostgreSQL cannot take as text (a NUL in a path or query parameter).
    return problem_response(
        400,
        "invalid-value",
        "Bad Request",
        "the request holds a value that cannot be stored or searched for, such as a NUL "
        "(U+0000) character; nothing was stored",
        instance=request.url.path,
    )


def _from_disconnect(request: Request, exc: Exception) -> Response:
    # The client went away before sending its whole body: routine on flaky networks
    # and nothing the server got wrong, so one line, no traceback. Nothing was stored:
    # no body is parsed before it is complete.
    log.info(
        "client disconnected before sending its whole body: %s %s", request.method, request.url.path
    )
    return problem_response(
        400,
        "client-disconnected",
        "Bad Request",
        "the client disconnected before sending the whole request body; nothing was stored",
        instance=request.url.path,
    )


def _from_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(
        500,
        "internal-error",
        "Internal Server Error",
        "the server failed to handle this request; the error has been logged",
        instance=request.url.path,
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Answer every error, expected or not, with problem details."""
    app.add_exception_handler(Problem, _from_problem)
    app.add_exception_handler(RequestValidationError, _from_validation)
    app.add_exception_handler(StarletteHTTPException, _from_http)
    for storage_error in STORAGE_ERRORS:
        app.add_exception_handler(storage_error, _from_storage)
    app.add_exception_handler(ObjectStoreError, _from_object_store)
    app.add_exception_handler(ClientDisconnect, _from_disconnect)
    app.add_exception_handler(psycopg.DataError, _from_unstorable)
    app.add_exception_handler(sqlalchemy.exc.DataError, _from_unstorable)
    app.add_exception_handler(Exception, _from_unexpected)
