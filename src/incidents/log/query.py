"""Timeline queries: the filters a reader may give, and the opaque keyset cursor.

Pages are ordered by (event time, position). The cursor carries the last row's key,
a digest of the filters it was issued for, and an HMAC, so a tampered cursor or one
reused with other filters is refused instead of silently returning the wrong page.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

import orjson

DEFAULT_LIMIT = 50
MAX_LIMIT = 1000
MAX_TYPE_PATTERNS = 20
_TYPE_GLOB = re.compile(r"^[A-Za-z0-9._\-*?]{1,256}$")
_CURSOR_VERSION = 1
_MAC_BYTES = 16


class InvalidQuery(ValueError):
    """A query parameter cannot be used; the message names it."""

    def __init__(self, parameter: str, detail: str) -> None:
        self.parameter = parameter
        super().__init__(f"{parameter}: {detail}")


@dataclass(frozen=True, slots=True)
class TimelineFilter:
    """Which events a query or export selects, and in which order."""

    incident_id: str | None = None
    types: tuple[str, ...] = ()
    from_us: int | None = None
    to_us: int | None = None
    actor: str | None = None
    correlation_key: str | None = None
    fingerprint: str | None = None
    descending: bool = False
    # Exports pin the log position they started at, so counts and content agree.
    max_position: int | None = None
    # The visibilities the reader's policy decision opens; None means no restriction.
    # Not part of the cursor binding: it is the reader's right, not their question.
    visibilities: frozenset[str] | None = None

    def digest(self) -> bytes:
        """A digest of the filters, binding a cursor to the query it came from."""
        parts = [
            self.incident_id,
            list(self.types),
            self.from_us,
            self.to_us,
            self.actor,
            self.correlation_key,
            self.fingerprint,
            self.descending,
            self.max_position,
        ]
        return hashlib.sha256(orjson.dumps(parts)).digest()[:8]


def validate_type_patterns(patterns: list[str]) -> tuple[str, ...]:
    """Check ``type`` glob patterns (``im.incident.*``); comma-separated values are split."""
    flat = [p.strip() for raw in patterns for p in raw.split(",") if p.strip()]
    if len(flat) > MAX_TYPE_PATTERNS:
        raise InvalidQuery("type", f"at most {MAX_TYPE_PATTERNS} patterns")
    for pattern in flat:
        if not _TYPE_GLOB.fullmatch(pattern):
            raise InvalidQuery(
                "type",
                f"{pattern!r} is not a type pattern: use letters, digits, '.', '_', '-' "
                "and the wildcards '*' and '?', such as im.incident.*",
            )
    return tuple(flat)


def glob_to_like(pattern: str) -> str:
    """Translate a type glob into a SQL LIKE pattern with ``\\`` as the escape character."""
    out = []
    for ch in pattern:
        if ch == "*":
            out.append("%")
        elif ch == "?":
            out.append("_")
        elif ch in "%_\\":
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def validate_limit(limit: int | None) -> int:
    """The page size to use: the default when absent, else 1..1000 or InvalidQuery."""
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidQuery("limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


@dataclass(frozen=True, slots=True)
class Cursor:
    """The key of the last row of a page: (event time, position)."""

    time_us: int
    position: int


class CursorCodec:
    """Encodes and checks the opaque ``next_cursor`` tokens."""

    def __init__(self, key: bytes) -> None:
        self._key = key

    def _mac(self, payload: bytes) -> bytes:
        return hmac.new(self._key, payload, hashlib.sha256).digest()[:_MAC_BYTES]

    def seal(self, key: list[int | str], digest: bytes) -> str:
        """An opaque token carrying ``key``, bound to the query whose digest is given.

        ``digest`` is 8 bytes (see :meth:`TimelineFilter.digest`); any listing with a
        keyset order can use this for its cursors.
        """
        payload = orjson.dumps([_CURSOR_VERSION, *key])
        blob = payload + digest + self._mac(payload + digest)
        return base64.urlsafe_b64encode(blob).decode("ascii").rstrip("=")

    def unseal(self, token: str, digest: bytes, filters_hint: str) -> list[int | str]:
        """The key a token carries, or :class:`InvalidQuery` naming what is wrong.

        ``filters_hint`` names the parameters a cursor is bound to, for the message
        shown when the cursor is reused with other filters.
        """
        try:
            blob = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (binascii.Error, ValueError):
            raise InvalidQuery("cursor", "is not a cursor returned by this API") from None
        if len(blob) < _MAC_BYTES + 8 + 2:
            raise InvalidQuery("cursor", "is not a cursor returned by this API")
        payload, digest_in, mac = (
            blob[: -_MAC_BYTES - 8],
            blob[-_MAC_BYTES - 8 : -_MAC_BYTES],
            blob[-_MAC_BYTES:],
        )
        if not hmac.compare_digest(mac, self._mac(payload + digest_in)):
            raise InvalidQuery("cursor", "is damaged or was not issued by this server")
        if digest_in != digest:
            raise InvalidQuery(
                "cursor",
                f"was issued for different filters; repeat the query with the same {filters_hint}",
            )
        try:
            decoded = orjson.loads(payload)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            raise InvalidQuery("cursor", "is not a cursor returned by this API") from None
        if (
            not isinstance(decoded, list)
            or not decoded
            or decoded[0] != _CURSOR_VERSION
            or not all(isinstance(part, int | str) for part in decoded[1:])
        ):
            raise InvalidQuery("cursor", "comes from an incompatible version of the API")
        return list(decoded[1:])

    def encode(self, filt: TimelineFilter, after: Cursor) -> str:
        """The opaque cursor for the page after ``after`` of the query ``filt``."""
        return self.seal([after.time_us, after.position], filt.digest())

    def decode(self, filt: TimelineFilter, token: str) -> Cursor:
        """Return the cursor's key, or raise :class:`InvalidQuery` for a bad token."""
        key = self.unseal(
            token,
            filt.digest(),
            "type, from, to, actor, correlation_key, fingerprint and order",
        )
        if len(key) != 2 or not all(isinstance(part, int) for part in key):
            raise InvalidQuery("cursor", "comes from an incompatible version of the API")
        time_us, position = key
        assert isinstance(time_us, int) and isinstance(position, int)
        return Cursor(time_us, position)
