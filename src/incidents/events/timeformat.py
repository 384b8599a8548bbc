"""RFC 3339 timestamps on the wire, integer microseconds since the epoch inside the store."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class TimeFormatError(ValueError):
    """A timestamp is not RFC 3339."""


def parse_rfc3339(text: str) -> datetime:
    """Parse an RFC 3339 timestamp (offset required) into an aware UTC datetime."""
    match = _RFC3339.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise TimeFormatError(f"{text!r} is not an RFC 3339 timestamp such as 2025-12-11T10:30:00Z")
    date, clock, fraction, offset = match.groups()
    # Python keeps microseconds; finer fractions are truncated, not rejected.
    fraction = (fraction or "")[:7]
    offset = "+00:00" if offset in ("Z", "z") else offset
    try:
        parsed = datetime.fromisoformat(f"{date}T{clock}{fraction}{offset}")
        return parsed.astimezone(UTC)
    except (ValueError, OverflowError) as exc:
        # OverflowError: an offset that moves year 1 or 9999 out of range.
        raise TimeFormatError(f"{text!r} is not a valid date and time: {exc}") from None


def to_micros(moment: datetime) -> int:
    """Microseconds since the Unix epoch of an aware datetime."""
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


@lru_cache(maxsize=4096)
def parse_micros(text: str) -> int:
    """Parse an RFC 3339 timestamp straight to epoch microseconds.

    Cached: a batch from one source often repeats the same timestamps.
    """
    return to_micros(parse_rfc3339(text))


@lru_cache(maxsize=4096)
def _format_seconds(seconds: int) -> str:
    # Cached: the events of a batch or a delivery mostly fall in the same few seconds.
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")


def format_micros(micros: int) -> str:
    """Format epoch microseconds as RFC 3339 UTC (``Z``), with a fraction only when needed."""
    seconds, fraction = divmod(micros, 1_000_000)
    text = _format_seconds(seconds)
    if fraction:
        text += f".{fraction:06d}".rstrip("0")
    return text + "Z"


def now_micros() -> int:
    """The current time in epoch microseconds."""
    return to_micros(datetime.now(UTC))
