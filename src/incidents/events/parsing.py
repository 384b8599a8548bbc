"""CloudEvents over HTTP: structured, binary and batch content modes.

Structured mode carries the whole event as ``application/cloudevents+json``; binary
mode carries attributes in ``ce-*`` headers and the data as the body; batch mode is
a JSON array of structured events (``application/cloudevents-batch+json``).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import unquote

import orjson

from incidents.events.envelope import Event, EventValidationError, FieldError, normalize

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
ACCEPTED_TYPES = f"{STRUCTURED}, {BATCH}, or binary mode (ce-* headers with any body type)"


class Mode(Enum):
    STRUCTURED = "structured"
    BINARY = "binary"
    BATCH = "batch"


class UnsupportedMediaType(ValueError):
    """The request's content type is not a CloudEvents content mode."""


class MalformedBody(ValueError):
    """The body is not the JSON its content type promises."""


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """The events of one append request, each either valid or the reason it is not."""

    mode: Mode
    items: list[Event | EventValidationError]


def media_type(content_type: str | None) -> str:
    """The bare media type of a Content-Type header, lowercased, without parameters."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def is_json_media_type(mt: str) -> bool:
    """Whether a media type carries JSON (``application/json``, ``*/*+json``, ``text/json``)."""
    return mt in ("application/json", "text/json") or mt.endswith("+json")


def detect_mode(content_type: str | None, headers: Mapping[str, str]) -> Mode:
    """Decide the content mode from the Content-Type and the presence of ``ce-specversion``."""
    mt = media_type(content_type)
    if mt == STRUCTURED:
        return Mode.STRUCTURED
    if mt == BATCH:
        return Mode.BATCH
    if "ce-specversion" in headers:
        return Mode.BINARY
    if mt == "application/json":
        # Lenient: a structured event sent as plain JSON is still unambiguous.
        return Mode.STRUCTURED
    shown = mt or "no Content-Type"
    raise UnsupportedMediaType(f"{shown} is not a CloudEvents content mode; send {ACCEPTED_TYPES}")


def _loads(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedBody(f"the body is not valid JSON: {exc}") from None


def _validated(raw: Any) -> Event | EventValidationError:
    try:
        return normalize(raw)
    except EventValidationError as exc:
        return exc


def parse_request(
    content_type: str | None, headers: Mapping[str, str], body: bytes
) -> ParsedRequest:
    """Parse an append request in any content mode into validated events.

    ``headers`` must have lowercase names. Raises :class:`UnsupportedMediaType` or
    :class:`MalformedBody` when the request as a whole cannot be read; a single bad
    event is returned in place as its :class:`EventValidationError`.
    """
    mode = detect_mode(content_type, headers)
    if mode is Mode.BINARY:
        return ParsedRequest(mode, [_validated_binary(content_type, headers, body)])
    document = _loads(body)
    if mode is Mode.BATCH:
        if not isinstance(document, list):
            raise MalformedBody(f"a {BATCH} body must be a JSON array of events")
        return ParsedRequest(mode, [_validated(item) for item in document])
    if isinstance(document, list):
        raise MalformedBody(f"a JSON array is a batch: send it as {BATCH}")
    return ParsedRequest(mode, [_validated(document)])


def _validated_binary(
    content_type: str | None, headers: Mapping[str, str], body: bytes
) -> Event | EventValidationError:
    attributes: dict[str, Any] = {}
    for name, value in headers.items():
        if name.startswith("ce-"):
            # CloudEvents HTTP binding: header values are percent-encoded.
            attributes[name[3:]] = unquote(value)
    if content_type:
        attributes["datacontenttype"] = content_type
    if body:
        mt = media_type(content_type)
        if is_json_media_type(mt):
            try:
                attributes["data"] = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                return EventValidationError(
                    [FieldError("data", f"Content-Type is {mt} but the body is not JSON: {exc}")]
                )
        elif mt.startswith("text/"):
            try:
                attributes["data"] = body.decode("utf-8")
            except UnicodeDecodeError:
                attributes["data_base64"] = base64.b64encode(body).decode("ascii")
        else:
            attributes["data_base64"] = base64.b64encode(body).decode("ascii")
    return _validated(attributes)
