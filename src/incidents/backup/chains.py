"""Hash-chain checks for restores: while the events stream in, and once they are stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NoReturn

from sqlalchemy import Engine, select

from incidents.backup.archive import ArchiveError
from incidents.log.chain import GENESIS, NO_INCIDENT, chain_key, event_hash, verify_chain
from incidents.log.records import ChainHead, StoredEvent
from incidents.store.event_reader import EventReader
from incidents.store.schema import chain_heads


class BrokenChain(ArchiveError):
    """An event does not link to the one before it in its chain: history was altered."""


def describe_chain(key: str) -> str:
    return "the chain of events without an incident" if key == NO_INCIDENT else f"incident {key}"


@dataclass
class ChainWalker:
    """Checks events in log order, many chains interleaved, one event at a time.

    Keeps only each chain's tip, so an archive of any size is checked in one pass
    while it is loaded.
    """

    tips: dict[str, ChainHead] = field(default_factory=dict)
    last_position: int = 0

    def add(self, row: StoredEvent) -> None:
        if row.position <= self.last_position:
            raise BrokenChain(
                f"event positions are out of order at {row.position} (after {self.last_position})"
            )
        key = chain_key(row.incident_id)
        tip = self.tips.get(key)
        prev = tip.last_hash if tip is not None else GENESIS
        stored_prev = row.prev_hash if row.prev_hash is not None else GENESIS
        if stored_prev != prev:
            self._broken(key, row.position, "its link does not match the event before it")
        if event_hash(prev, row) != row.hash:
            self._broken(key, row.position, "the event's content does not match its hash")
        self.tips[key] = ChainHead(row.position, row.hash, (tip.event_count if tip else 0) + 1)
        self.last_position = row.position

    @staticmethod
    def _broken(key: str, position: int, reason: str) -> NoReturn:
        where = describe_chain(key)
        raise BrokenChain(f"the hash chain of {where} breaks at position {position}: {reason}")

    def check_heads(self, recorded: dict[str, ChainHead]) -> None:
        """The recorded chain heads must be exactly the tips the events lead to."""
        for key in sorted(set(recorded) | set(self.tips)):
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
    """Walk every stored chain against its recorded head, as ``timeline verify`` does."""
    reader = EventReader(engine)
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
        report = verify_chain(reader.chain(None if key == NO_INCIDENT else key), head.event_count)
        events += report.events
        if not report.intact or report.last_hash != head.last_hash:
            at = report.first_broken_position
            where = f" at position {at}" if at is not None else ""
            reason = report.reason or "the last stored event is not the recorded head"
            return ChainSummary(len(heads), events, f"{describe_chain(key)}{where}: {reason}")
    return ChainSummary(len(heads), events)
