"""The per-incident hash chain that makes the timeline tamper-evident.

Each stored event records the hash of the previous event of its incident and its own
hash, which covers every stored column. Changing, removing or reordering any stored
event breaks the chain at that event, and :func:`verify_chain` reports where.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from incidents.log.records import StoredEvent

GENESIS = bytes(32)
NO_INCIDENT = ""


def chain_key(incident_id: str | None) -> str:
    """The chain an event belongs to: its incident's, or the chain of unattached events."""
    return incident_id if incident_id is not None else NO_INCIDENT


# Indexes into a row's tail (EVENT_COLUMNS[1:16], incident_id to content_hash).
_SCALARS = slice(0, 13)
_BODY = 13
_CONTENT_HASH = 14


def row_digest(tail: Sequence[Any]) -> bytes:
    """SHA-256 over every column of a row but position and the chain links.

    ``tail`` is the row's columns from ``incident_id`` to ``content_hash``. It does
    not depend on the log lock, so writers compute it before taking the lock.
    """
    digest = hashlib.sha256()
    # The JSON array is self-delimiting and the two digests have fixed length,
    # so no two different rows can produce the same byte stream.
    digest.update(orjson.dumps(tail[_SCALARS]))
    digest.update(tail[_CONTENT_HASH])
    digest.update(hashlib.sha256(tail[_BODY]).digest())
    return digest.digest()


def link_hash(prev_hash: bytes, position: int, digest: bytes) -> bytes:
    """An event's hash: the previous link, its position, and its row digest."""
    return hashlib.sha256(prev_hash + position.to_bytes(8, "big") + digest).digest()


def event_hash(prev_hash: bytes, row: StoredEvent) -> bytes:
    """The hash a stored row must carry, given the hash of the event before it."""
    return link_hash(prev_hash, row.position, row_digest(row[1:16]))


@dataclass(frozen=True, slots=True)
class ChainReport:
    """The outcome of walking one chain."""

    intact: bool
    events: int
    first_broken_position: int | None = None
    reason: str | None = None
    last_hash: bytes | None = None


def verify_chain(rows: Iterable[StoredEvent], expected_count: int | None = None) -> ChainReport:
    """Walk a chain in position order and report the first event that does not link."""
    prev = GENESIS
    count = 0
    for row in rows:
        count += 1
        stored_prev = row.prev_hash if row.prev_hash is not None else GENESIS
        if stored_prev != prev:
            return ChainReport(
                False,
                count,
                row.position,
                "the previous-hash link does not match the event before it "
                "(an event was removed, inserted or changed)",
            )
        computed = event_hash(prev, row)
        if computed != row.hash:
            return ChainReport(
                False, count, row.position, "the event's content does not match its hash"
            )
        prev = computed
    if expected_count is not None and count != expected_count:
        return ChainReport(
            False,
            count,
            None,
            f"the chain head records {expected_count} events but {count} are stored",
        )
    return ChainReport(True, count, last_hash=prev if count else None)
