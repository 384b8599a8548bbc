"""The per-incident hash chain that makes the timeline tamper-evident.

Each stored event records the hash of the previous event of its incident and its own
hash, which covers every stored column. Changing, removing or reordering any stored
event breaks the chain at that event, and :func:`verify_chain` reports where.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from incidents.log.records import ChainHead, StoredEvent

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


@dataclass(frozen=True, slots=True)
class ErasedField:
    """One event whose body had fields erased, as its signed tombstone records it."""

    # The row digest the event had when it was appended (what its hash covers).
    original_digest: bytes
    # The row digest of the row as it is stored after the erasure.
    erased_digest: bytes


@dataclass(frozen=True, slots=True)
class ChainSeal:
    """What signed tombstones say about a chain: where its stored part starts (the tip
    of the events purged from its beginning) and which events had fields erased.

    Built only from tombstones whose signature checked out.
    """

    # The hash of the last purged event (GENESIS when nothing was purged).
    start_hash: bytes = GENESIS
    # The position of the last purged event (0 when nothing was purged).
    start_position: int = 0
    # How many events the purges removed from the beginning of the chain.
    removed: int = 0
    erased: Mapping[int, ErasedField] = field(default_factory=dict)


def verify_chain(
    rows: Iterable[StoredEvent],
    expected_count: int | None = None,
    seal: ChainSeal | None = None,
) -> ChainReport:
    """Walk a chain in position order and report the first event that does not link.

    With a ``seal`` the walk starts from the tip of the purged events instead of the
    genesis, and an erased event is checked against its tombstone: its stored row must
    have exactly the erased digest the tombstone signed, and its hash must link with
    the original digest. Everything else is checked as without a seal.
    """
    seal = seal or ChainSeal()
    prev = seal.start_hash
    count = 0
    for row in rows:
        count += 1
        if row.position <= seal.start_position:
            return ChainReport(
                False,
                count,
                row.position,
                "an event covered by a purge tombstone is still stored",
            )
        stored_prev = row.prev_hash if row.prev_hash is not None else GENESIS
        if stored_prev != prev:
            return ChainReport(
                False,
                count,
                row.position,
                "the previous-hash link does not match the event before it "
                "(an event was removed, inserted or changed)",
            )
        erased = seal.erased.get(row.position)
        if erased is None:
            computed = event_hash(prev, row)
        elif row_digest(row[1:16]) != erased.erased_digest:
            return ChainReport(
                False,
                count,
                row.position,
                "the erased event's content does not match its erasure tombstone",
            )
        else:
            computed = link_hash(prev, row.position, erased.original_digest)
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
    if count == 0 and not seal.removed:
        return ChainReport(True, 0)
    return ChainReport(True, count, last_hash=prev)


def verify_to_head(
    rows: Iterable[StoredEvent], head: ChainHead, seal: ChainSeal | None = None
) -> ChainReport:
    """Walk a chain against its recorded head: every link, the number of events the
    head records (less those a seal's purges removed), and the head's last hash, which
    catches events removed from the end."""
    expected = head.event_count - (seal.removed if seal is not None else 0)
    report = verify_chain(rows, expected, seal)
    if report.intact and report.last_hash != head.last_hash:
        return ChainReport(
            False,
            report.events,
            None,
            "the last stored event is not the recorded head of the chain "
            "(events were removed from the end)",
        )
    return report
