"""CloudEvents over HTTP: structured, binary and batch content modes.

Structured mode carries the whole event as ``application/cloudevents+json``; binary
mode carries attributes in ``ce-*`` headers and the data as the body; batch mode is
a JSON array of structured events (``application/cloudevents-batch+json``).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import Enum
from itertools import accumulate
from typing import Any
from urllib.parse import unquote

import orjson

from incidents.events.envelope import Event, EventValidationError, FieldError, normalize

STRUCTURED = "application/cloudevents+json"
BATCH = "application/cloudevents-batch+json"
ACCEPTED_TYPES = f"{STRUCTURED}, {BATCH}, or binary mode (ce-* headers with any body type)"
CONTEXT_HEADER_PREFIX = "ce-"
# A "%" that does not start a two-digit hex escape.
_STRAY_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")

HeaderPairs = Mapping[str, str] | Iterable[tuple[str, str]]


class Mode(Enum):
    STRUCTURED = "structured"
    BINARY = "binary"
    BATCH = "batch"


class UnsupportedMediaType(ValueError):
    """The request's content type is not a CloudEvents content mode."""


class MalformedBody(ValueError):
    """The body is not the JSON its content type promises."""


class EventTooLarge(EventValidationError):
    """An event of a batch is larger than one event may be on its own."""

    def __init__(self, size: int, limit: int) -> None:
        self.size = size
        self.limit = limit
        super().__init__(
            [
                FieldError(
                    "",
                    f"the event is {size} bytes as stored, more than the limit of {limit} "
                    "bytes for one event; it was not stored",
                )
            ]
        )


def stored_size(event: Event) -> int:
    """An event's size as stored: its body (data and extensions) and its attributes.

    Measured on what validation already encoded, so a batch is not encoded twice.
    """
    attributes = (
        event.id,
        event.source,
        event.type,
        event.subject,
        event.actor,
        event.origin_id,
        event.correlation_key,
        event.fingerprint,
    )
    return len(event.body_json) + sum(len(a.encode()) for a in attributes if a)


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


def _pairs(headers: HeaderPairs) -> list[tuple[str, str]]:
    """Every header as a (name, value) pair, repeats kept (a mapping has none)."""
    if isinstance(headers, Mapping):
        return list(headers.items())
    return list(headers)


def detect_mode(content_type: str | None, headers: HeaderPairs) -> Mode:
    """Decide the content mode from the Content-Type and the presence of ``ce-specversion``."""
    mt = media_type(content_type)
    if mt == STRUCTURED:
        return Mode.STRUCTURED
    if mt == BATCH:
        return Mode.BATCH
    if any(name == "ce-specversion" for name, _ in _pairs(headers)):
        return Mode.BINARY
    if mt == "application/json":
        # Lenient: a structured event sent as plain JSON is still unambiguous.
        return Mode.STRUCTURED
    shown = mt or "no Content-Type"
    raise UnsupportedMediaType(f"{shown} is not a CloudEvents content mode; send {ACCEPTED_TYPES}")


# JSON strings (whose brackets do not nest) and the step each bracket takes.
_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


def nesting_depth(text: bytes | str) -> int:
    """How deeply arrays and objects nest in a JSON text, found without decoding it."""
    raw = text.encode(errors="surrogatepass") if isinstance(text, str) else text
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0)


def loads_body(body: bytes | str, *, max_depth: int | None = None) -> Any:
    """A request body's JSON document; :class:`MalformedBody` (a 400) if it is not one.

    The decoder is orjson's, which bounds nesting itself (1024 levels) without
    recursing in Python, so no body can exhaust the interpreter's stack while it is
    decoded. ``max_depth`` refuses shallower nesting before decoding, for documents
    handed on to code that does recurse (GraphQL variables).
    """
    if max_depth is not None and (depth := nesting_depth(body)) > max_depth:
        raise MalformedBody(
            f"the body nests arrays and objects {depth} levels deep; at most {max_depth} "
            "are accepted"
        )
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
    content_type: str | None,
    headers: HeaderPairs,
    body: bytes,
    *,
    max_event_bytes: int | None = None,
) -> ParsedRequest:
    """Parse an append request in any content mode into validated events.

    ``headers`` must have lowercase names: a mapping, or every (name, value) pair as
    received, so that a repeated ``ce-*`` header is noticed. Raises
    :class:`UnsupportedMediaType` or :class:`MalformedBody` when the request as a whole
    cannot be read; a single bad event is returned in place as its
    :class:`EventValidationError`. A batch's event over ``max_event_bytes`` is
    returned as :class:`EventTooLarge`: a batch must not carry what could not be sent
    alone (structured and binary bodies are capped before they are read).
    """
    pairs = _pairs(headers)
    mode = detect_mode(content_type, pairs)
    if mode is Mode.BINARY:
        return ParsedRequest(mode, [_validated_binary(content_type, pairs, body)])
    document = loads_body(body)
    if mode is Mode.BATCH:
        if not isinstance(document, list):
            raise MalformedBody(f"a {BATCH} body must be a JSON array of events")
        items = [_validated(item) for item in document]
        if max_event_bytes is not None:
            items = [_capped(item, max_event_bytes) for item in items]
        return ParsedRequest(mode, items)
    if isinstance(document, list):
        raise MalformedBody(f"a JSON array is a batch: send it as {BATCH}")
    return ParsedRequest(mode, [_validated(document)])


def _capped(item: Event | EventValidationError, limit: int) -> Event | EventValidationError:
    if isinstance(item, Event) and (size := stored_size(item)) > limit:
        return EventTooLarge(size, limit)
    return item


def decode_header_value(value: str) -> str:
    """A ``ce-*`` header value, percent-decoded as UTF-8; ``ValueError`` if it is not that.

    Nothing is decoded leniently: replacement characters or a kept-as-is ``%zz`` would
    let different ids sent by a client become one stored id (one dedupe key).
    """
    # Header bytes arrive as latin-1 text; anything beyond ASCII was sent raw, in
    # some unknown encoding, instead of percent-encoded.
    if not value.isascii():
        raise ValueError("holds characters outside ASCII; percent-encode them as UTF-8")
    if _STRAY_PERCENT.search(value):
        raise ValueError("holds a '%' that does not start a %XX escape; send '%' as %25")
    try:
        return unquote(value, errors="strict")
    except UnicodeDecodeError:
        raise ValueError("is not valid percent-encoded UTF-8") from None


def _context_attributes(
    headers: Iterable[tuple[str, str]],
) -> dict[str, Any] | EventValidationError:
    """The attributes of the ``ce-*`` headers, or the errors naming the bad headers."""
    attributes: dict[str, Any] = {}
    errors: list[FieldError] = []
    seen: set[str] = set()
    for name, value in headers:
        if not name.startswith(CONTEXT_HEADER_PREFIX):
            continue
        attribute = name[len(CONTEXT_HEADER_PREFIX) :]
        if attribute in seen:
            # Which of two values is meant cannot be known; keeping either one would
            # store something the client may not have meant.
            errors.append(FieldError(name, "is given more than once; send each attribute once"))
            continue
        seen.add(attribute)
        try:
            attributes[attribute] = decode_header_value(value)
        except ValueError as exc:
            errors.append(FieldError(name, str(exc)))
    return EventValidationError(errors) if errors else attributes


def _validated_binary(
    content_type: str | None, headers: list[tuple[str, str]], body: bytes
) -> Event | EventValidationError:
    # CloudEvents HTTP binding: header values are percent-encoded.
    context = _context_attributes(headers)
    if isinstance(context, EventValidationError):
        return context
    attributes: dict[str, Any] = context
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
