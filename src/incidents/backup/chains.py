"""Hash-chain checks for restores: while the events stream in, and once they are stored."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NoReturn

from sqlalchemy import Engine, select

from incidents.backup.archive import ArchiveError
from incidents.log.chain import (
    GENESIS,
    NO_INCIDENT,
    ChainSeal,
    chain_key,
    event_hash,
    verify_to_head,
)
from incidents.log.records import ChainHead, StoredEvent
from incidents.retention.service import TOMBSTONE_SECRET
from incidents.retention.tombstone import TombstoneSigner, trusted_seal_of
from incidents.store.archive_reader import ArchiveAwareReader
from incidents.store.engine import backend_of
from incidents.store.retention_store import SqlRetentionStore, reads_only
from incidents.store.schema import chain_heads


class BrokenChain(ArchiveError):
    """An event does not link to the one before it in its chain: history was altered."""


def describe_chain(key: str) -> str:
    return "the chain of events without an incident" if key == NO_INCIDENT else f"incident {key}"


@dataclass
class ChainWalker:
    """Checks events in log order, many chains interleaved, one event at a time.

    Keeps only each chain's tip, so an archive of any size is checked in one pass
    while it is loaded. ``sealed`` chains (incidents retention archived or purged
    from) are not all in the events table: only each event's own hash is checked
    here, and the whole chain by :func:`verify_stored_chains` once everything is
    stored.
    """

    tips: dict[str, ChainHead] = field(default_factory=dict)
    last_position: int = 0
    sealed: frozenset[str] = frozenset()

    def add(self, row: StoredEvent) -> None:
        if row.position <= self.last_position:
            raise BrokenChain(
                f"event positions are out of order at {row.position} (after {self.last_position})"
            )
        key = chain_key(row.incident_id)
        tip = self.tips.get(key)
        prev = tip.last_hash if tip is not None else GENESIS
        stored_prev = row.prev_hash if row.prev_hash is not None else GENESIS
        if key in self.sealed:
            # Its chain continues from archived or purged events: the link is checked
            # by the full verification; an erased event's hash is checked there too.
            prev = stored_prev
        elif stored_prev != prev:
            self._broken(key, row.position, "its link does not match the event before it")
        if key not in self.sealed and event_hash(prev, row) != row.hash:
            self._broken(key, row.position, "the event's content does not match its hash")
        self.tips[key] = ChainHead(row.position, row.hash, (tip.event_count if tip else 0) + 1)
        self.last_position = row.position

    @staticmethod
    def _broken(key: str, position: int, reason: str) -> NoReturn:
        where = describe_chain(key)
        raise BrokenChain(f"the hash chain of {where} breaks at position {position}: {reason}")

    def check_heads(self, recorded: dict[str, ChainHead]) -> None:
        """The recorded chain heads must be exactly the tips the events lead to."""
        for key in sorted((set(recorded) | set(self.tips)) - self.sealed):
            if recorded.get(key) != self.tips.get(key):
                raise BrokenChain(
                    f"the recorded head of {describe_chain(key)} does not match its events "
                    "(events were added or removed)"
                )

    @property
    def events(self) -> int:
        return sum(tip.event_count for tip in self.tips.values())


@dataclass(frozen=True, slots=True)
class ChainSummary:
    """The outcome of verifying every chain of a database."""

    chains: int
    events: int
    # The first broken chain's description, or None when all are intact.
    broken: str | None = None


def verify_stored_chains(engine: Engine) -> ChainSummary:
    """Walk every stored chain against its recorded head, as ``timeline verify`` does:
    archived events read back from their archive, purged and erased ones accounted for
    by their signed tombstones."""
    reader = ArchiveAwareReader(engine)
    seal = _seals(engine, reader)
    with engine.connect() as conn:
        heads = [
            (row[0], ChainHead(row[1], bytes(row[2]), row[3]))
            for row in conn.execute(
                select(
                    chain_heads.c.chain_key,
                    chain_heads.c.last_position,
                    chain_heads.c.last_hash,
                    chain_heads.c.event_count,
                ).order_by(chain_heads.c.chain_key)
            )
        ]
    events = 0
    for key, head in heads:
        incident = None if key == NO_INCIDENT else key
        # The chain of no incident has tombstones too (purges of its start), under ''.
        report = verify_to_head(reader.chain(incident), head, seal(key))
        events += report.events
        if not report.intact:
            at = report.first_broken_position
            where = f" at position {at}" if at is not None else ""
            return ChainSummary(
                len(heads), events, f"{describe_chain(key)}{where}: {report.reason}"
            )
    return ChainSummary(len(heads), events)


def _seals(engine: Engine, reader: ArchiveAwareReader) -> Callable[[str], ChainSeal | None]:
    """What the signed tombstones say of each incident's chain; none where a signature
    does not check out, so that its removed events are reported as missing."""
    store = SqlRetentionStore(engine, backend_of(engine.url.render_as_string()), reads_only)
    signer = TombstoneSigner(reader.instance_secret(TOMBSTONE_SECRET))

    return lambda incident_id: trusted_seal_of(store.tombstones(incident_id), signer)
