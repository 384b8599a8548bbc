"""Validation and normalisation of one CloudEvent into the platform's :class:`Event`.

Validation follows CloudEvents v1.0 (required attributes, attribute names, RFC 3339
``time``, ``data`` and ``data_base64`` exclusive) and the platform's extension rules.
All problems of an event are collected, so a client learns every bad field at once.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

import orjson

from incidents.events.attributes import (
    ATTRIBUTE_NAME,
    CONTEXT_ATTRIBUTES,
    DATA_CLASSES,
    DATA_MEMBERS,
    SERVER_ONLY,
    SPEC_VERSION,
    VISIBILITIES,
    Extension,
    platform_extension,
)
from incidents.events.paths import parse_path
from incidents.events.timeformat import TimeFormatError, parse_micros
from incidents.events.types import canonical_type

# Long keys would bloat the indexes they live in; real ids are far shorter.
MAX_KEY_LENGTH = 1024
INCIDENT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
_SUBJECT_INCIDENT = re.compile(r"^incidents?/([^/]+)$")
_DATA_CLASSES = DATA_CLASSES
_VISIBILITIES = VISIBILITIES


def dedupe_id_of(origin_id: str | None, event_id: str) -> str:
    """The second half of an event's dedupe key (its first is the source): the origin id
    when there is one, else the event id. The one definition: the SQL of the writers
    (``coalesce(origin_id, event_id)``) and migration 0011 agree with it."""
    return origin_id if origin_id is not None else event_id


@dataclass(frozen=True, slots=True)
class FieldError:
    """One bad field of one event."""

    field: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "detail": self.detail}


class EventValidationError(ValueError):
    """An event breaks CloudEvents v1.0 or the platform's extension rules."""

    def __init__(self, errors: list[FieldError]) -> None:
        self.errors = errors
        super().__init__("; ".join(f"{e.field}: {e.detail}" for e in errors))


@dataclass(slots=True)
class Event:
    """A validated CloudEvent, with the platform's extensions lifted into fields."""

    id: str
    source: str
    type: str
    time_us: int | None = None
    subject: str | None = None
    datacontenttype: str | None = None
    dataschema: str | None = None
    has_data: bool = False
    data: Any = None
    data_base64: str | None = None
    incident_id: str | None = None
    actor: str | None = None
    origin_id: str | None = None
    visibility: str | None = None
    data_class: list[str] | dict[str, list[str]] | None = None
    correlation_key: str | None = None
    fingerprint: str | None = None
    related_ids: list[str] | None = None
    # Extensions the platform does not interpret, under their spec names.
    extensions: dict[str, Any] = field(default_factory=dict)
    # Digest of what the client sent, used to tell a replay from a conflicting reuse.
    content_hash: bytes = b""
    # The stored body column: canonical JSON of :meth:`body`, made once at validation.
    body_json: bytes = b""

    @property
    def dedupe_id(self) -> str:
        """The second half of the dedupe key: the origin id when given, else the event id."""
        return dedupe_id_of(self.origin_id, self.id)

    def dedupe_key_text(self) -> str:
        """The dedupe key as a person reads it in an error message."""
        if self.origin_id is not None:
            return f"(source={self.source!r}, im.origin_id={self.origin_id!r})"
        return f"(source={self.source!r}, id={self.id!r})"

    def body(self) -> dict[str, Any]:
        """Everything not kept in its own column: data, content type, schema, other extensions."""
        out: dict[str, Any] = {}
        if self.has_data:
            out["data"] = self.data
        if self.data_base64 is not None:
            out["data_base64"] = self.data_base64
        if self.datacontenttype is not None:
            out["datacontenttype"] = self.datacontenttype
        if self.dataschema is not None:
            out["dataschema"] = self.dataschema
        if self.data_class is not None:
            out["data_class"] = self.data_class
        if self.related_ids is not None:
            out["related_ids"] = self.related_ids
        if self.extensions:
            out["ext"] = self.extensions
        return out


class EncodedObject(dict[str, Any]):
    """A JSON object encoded once, where it is made (sorted keys, as in every body).

    Every encoder still sees a plain dict. The writer splices :attr:`json` in (see
    :func:`encoded`) instead of encoding the object again under the log lock, where a
    large provider document, long out of the CPU's caches, costs several times what
    it cost when it was made. Never changed after it is made.
    """

    __slots__ = ("json",)

    def __init__(self, value: dict[str, Any] | None = None, /) -> None:
        super().__init__(value or {})
        self.json = orjson.dumps(self, option=orjson.OPT_SORT_KEYS)


def encoded(value: Any) -> Any:
    """``value`` for orjson: an :class:`EncodedObject` as its JSON, anything else as it is."""
    return orjson.Fragment(value.json) if type(value) is EncodedObject else value


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _string(raw: Any, name: str, errors: list[FieldError], *, required: bool) -> str | None:
    if raw is None:
        if required:
            errors.append(FieldError(name, "is required and must be a non-empty string"))
        return None
    if not isinstance(raw, str) or not raw:
        errors.append(FieldError(name, "must be a non-empty string"))
        return None
    if len(raw) > MAX_KEY_LENGTH:
        errors.append(FieldError(name, f"is longer than {MAX_KEY_LENGTH} characters"))
        return None
    if "\x00" in raw:
        # PostgreSQL text cannot hold NUL; refusing it here keeps one bad event from
        # failing the whole group commit it would share with other requests.
        errors.append(FieldError(name, "must not contain NUL (U+0000) characters"))
        return None
    if _CONTROL.search(raw):
        # Attributes travel in headers, SSE frames and logs, where a line break would
        # let a value forge the next field.
        errors.append(FieldError(name, "must not contain control characters (line breaks, tabs)"))
        return None
    return raw


def _string_list(raw: Any, name: str, errors: list[FieldError]) -> list[str] | None:
    # Lists travel as comma-separated strings in spec-conformant CloudEvents.
    if isinstance(raw, str):
        items = [item.strip() for item in raw.split(",") if item.strip()]
    elif isinstance(raw, list) and all(isinstance(item, str) and item for item in raw):
        items = list(raw)
    else:
        errors.append(FieldError(name, "must be a list of strings or a comma-separated string"))
        return None
    return items


def _data_class(raw: Any, errors: list[FieldError]) -> list[str] | dict[str, list[str]] | None:
    name = "im.data_class"
    allowed = ", ".join(sorted(_DATA_CLASSES))
    if isinstance(raw, str) and raw.lstrip().startswith("{"):
        # The spec dialect writes the object form as a JSON string; accept it back.
        try:
            raw = orjson.loads(raw)
        except orjson.JSONDecodeError:
            errors.append(FieldError(name, "is not valid JSON"))
            return None
    if isinstance(raw, dict):
        mapping: dict[str, list[str]] = {}
        for cls, paths in raw.items():
            if cls not in _DATA_CLASSES:
                errors.append(FieldError(name, f"unknown data class {cls!r} (known: {allowed})"))
                continue
            if isinstance(paths, str):
                paths = [paths]
            if not isinstance(paths, list) or not all(isinstance(p, str) and p for p in paths):
                errors.append(FieldError(name, f"paths for {cls!r} must be a list of strings"))
                continue
            malformed = [p for p in paths if parse_path(p) is None]
            if malformed:
                errors.append(
                    FieldError(
                        name,
                        f"{malformed[0]!r} is not a path into data; use customer.email, "
                        "contacts[0].phone, contacts[*].phone, /customer/email or $",
                    )
                )
                continue
            mapping[cls] = list(paths)
        return mapping
    classes = _string_list(raw, name, errors)
    if classes is None:
        return None
    unknown = [c for c in classes if c not in _DATA_CLASSES]
    if unknown:
        errors.append(FieldError(name, f"unknown data class {unknown[0]!r} (known: {allowed})"))
        return None
    return classes


def _incident_from_subject(subject: str | None) -> str | None:
    if subject is None:
        return None
    match = _SUBJECT_INCIDENT.fullmatch(subject)
    return match.group(1) if match else None


def normalize(raw: Any) -> Event:
    """Validate a decoded structured-mode CloudEvent and return it normalised.

    Raises :class:`EventValidationError` listing every bad field.
    """
    if not isinstance(raw, dict):
        raise EventValidationError([FieldError("", "an event must be a JSON object")])
    errors: list[FieldError] = []

    specversion = raw.get("specversion")
    if specversion != SPEC_VERSION:
        errors.append(
            FieldError("specversion", f'must be "1.0" (CloudEvents v1.0), got {specversion!r}')
        )
    event_id = _string(raw.get("id"), "id", errors, required=True)
    source = _string(raw.get("source"), "source", errors, required=True)
    raw_type = _string(raw.get("type"), "type", errors, required=True)
    subject = _string(raw.get("subject"), "subject", errors, required=False)
    datacontenttype = _string(raw.get("datacontenttype"), "datacontenttype", errors, required=False)
    dataschema = _string(raw.get("dataschema"), "dataschema", errors, required=False)

    time_us: int | None = None
    raw_time = raw.get("time")
    if isinstance(raw_time, str):
        try:
            time_us = parse_micros(raw_time)
        except TimeFormatError as exc:
            errors.append(FieldError("time", str(exc)))
    elif raw_time is not None:
        errors.append(FieldError("time", "must be an RFC 3339 string such as 2025-12-11T10:30:00Z"))

    has_data = "data" in raw
    data_base64 = raw.get("data_base64")
    if has_data and data_base64 is not None:
        errors.append(FieldError("data", "data and data_base64 are mutually exclusive"))
    if data_base64 is not None:
        if not isinstance(data_base64, str):
            errors.append(FieldError("data_base64", "must be a base64 string"))
        else:
            try:
                base64.b64decode(data_base64, validate=True)
            except (binascii.Error, ValueError):
                errors.append(FieldError("data_base64", "is not valid base64"))

    event = Event(
        id=event_id or "",
        source=source or "",
        type=canonical_type(raw_type) if raw_type else "",
        time_us=time_us,
        subject=subject,
        datacontenttype=datacontenttype,
        dataschema=dataschema,
        has_data=has_data,
        data=raw.get("data"),
        data_base64=data_base64 if isinstance(data_base64, str) else None,
    )

    seen: dict[Extension, str] = {}
    for name, value in raw.items():
        if name in CONTEXT_ATTRIBUTES or name in DATA_MEMBERS:
            continue
        ext = platform_extension(name)
        if ext is None:
            if not ATTRIBUTE_NAME.fullmatch(name):
                errors.append(
                    FieldError(
                        name,
                        "attribute names must be lowercase ASCII letters and digits "
                        "(CloudEvents v1.0)",
                    )
                )
            elif isinstance(value, dict | list):
                errors.append(FieldError(name, "extension values must be scalars"))
            elif value is not None:
                event.extensions[name] = value
            continue
        if ext in seen:
            errors.append(FieldError(name, f"given twice (also as {seen[ext]})"))
            continue
        seen[ext] = name
        if ext in SERVER_ONLY:
            # Written by the platform on the way out. An exported event sent back in
            # carries them; they are dropped, as the recorder is always the caller.
            continue
        _apply_extension(event, ext, name, value, errors)

    subject_incident = _incident_from_subject(subject)
    if event.incident_id is not None and subject_incident is not None:
        if event.incident_id != subject_incident:
            errors.append(
                FieldError(
                    "im.incident_id",
                    f"{event.incident_id!r} disagrees with subject {subject!r}",
                )
            )
    elif subject_incident is not None:
        event.incident_id = subject_incident
    if event.incident_id is not None and not INCIDENT_ID.fullmatch(event.incident_id):
        errors.append(
            FieldError(
                "im.incident_id",
                f"{event.incident_id!r} is not an incident id (letters, digits, '.', '_', "
                "':' and '-', at most 128 characters, such as INC-1234)",
            )
        )

    if errors:
        raise EventValidationError(errors)
    _seal(event)
    return event


def _seal(event: Event, body: dict[str, Any] | None = None) -> None:
    """Make the body column and the content digest of a checked event (``body``: its
    :meth:`~Event.body`, already made)."""
    try:
        event.body_json = orjson.dumps(
            event.body() if body is None else body, option=orjson.OPT_SORT_KEYS
        )
    except TypeError as exc:
        if "Recursion limit" in str(exc):
            # orjson encodes at most 254 levels of nesting (the body object is one of
            # them); say so, rather than "not Unicode".
            raise EventValidationError(
                [FieldError("data", "nests arrays and objects too deeply (at most 253 levels)")]
            ) from None
        # A lone surrogate ("\ud800") is valid in JSON text but is not Unicode text;
        # an integer beyond 64 bits is valid JSON that no reader agrees on.
        raise EventValidationError(
            [
                FieldError(
                    "data",
                    "holds text that is not valid Unicode (such as a lone surrogate) or an "
                    f"integer beyond 64 bits ({exc})",
                )
            ]
        ) from None
    event.content_hash = content_digest(event)


def placed(
    event: Event,
    incident_id: str | None,
    *,
    visibility: str | None,
    fingerprint: str | None,
    data: dict[str, Any],
) -> Event:
    """A validated event put on an incident, with new JSON object data: what
    :func:`normalize` returns for the same event with ``subject`` ``incident/ID``,
    ``imvisibility`` (omitted when public), ``imfingerprint`` and ``data``.

    For events the platform composes under the log lock from one it validated
    beforehand: the incident id, visibility and fingerprint come from the platform's
    own state, so only the body and the digest are made again, not the checks.
    """
    if incident_id is not None and not INCIDENT_ID.fullmatch(incident_id):
        raise ValueError(f"{incident_id!r} is not an incident id")
    if visibility is not None and visibility not in _VISIBILITIES:
        raise ValueError(f"{visibility!r} is not a visibility")
    # Built field by field: dataclasses.replace introspects the fields on every call,
    # which costs more than the rest of this function under the log lock.
    out = Event(
        id=event.id,
        source=event.source,
        type=event.type,
        time_us=event.time_us,
        subject=f"incident/{incident_id}" if incident_id is not None else event.subject,
        datacontenttype=event.datacontenttype,
        dataschema=event.dataschema,
        has_data=True,
        data=data,
        data_base64=event.data_base64,
        incident_id=incident_id if incident_id is not None else event.incident_id,
        actor=event.actor,
        origin_id=event.origin_id,
        visibility=visibility if visibility != "public" else None,
        data_class=event.data_class,
        correlation_key=event.correlation_key,
        fingerprint=fingerprint,
        related_ids=event.related_ids,
        extensions=dict(event.extensions),
    )
    body = out.body()
    body["data"] = {key: encoded(value) for key, value in data.items()}
    _seal(out, body)
    return out


def _apply_extension(
    event: Event, ext: Extension, name: str, value: Any, errors: list[FieldError]
) -> None:
    if value is None:
        return
    if ext is Extension.DATA_CLASS:
        event.data_class = _data_class(value, errors)
    elif ext is Extension.RELATED_IDS:
        event.related_ids = _string_list(value, name, errors)
    elif ext is Extension.VISIBILITY:
        if value not in _VISIBILITIES:
            errors.append(FieldError(name, f"must be one of {', '.join(sorted(_VISIBILITIES))}"))
        else:
            event.visibility = value
    else:
        text = _string(value, name, errors, required=False)
        if ext is Extension.ACTOR:
            event.actor = text
        elif ext is Extension.ORIGIN_ID:
            event.origin_id = text
        elif ext is Extension.INCIDENT_ID:
            event.incident_id = text
        elif ext is Extension.CORRELATION_KEY:
            event.correlation_key = text
        elif ext is Extension.FINGERPRINT:
            event.fingerprint = text


def content_digest(event: Event) -> bytes:
    """SHA-256 over what the client said, in a canonical form.

    With an origin id the event id is left out: the origin id is then the identity,
    and a source that re-sends the same fact under a fresh event id is replaying it.
    """
    canonical = [
        None if event.origin_id is not None else event.id,
        event.source,
        event.type,
        event.time_us,
        event.subject,
        event.incident_id,
        event.actor,
        event.origin_id,
        event.visibility,
        event.correlation_key,
        event.fingerprint,
    ]
    digest = hashlib.sha256(orjson.dumps(canonical))
    # The body is already canonical JSON (sorted keys); the array before it is
    # self-delimiting, so the two parts cannot run together.
    digest.update(event.body_json)
    return digest.digest()
