"""Signed tombstones: what a purge or an erasure removed, when, under which rule.

The signature is an HMAC-SHA256 with an instance secret over a canonical encoding of
every field, so a tombstone cannot be edited (or forged) without the secret, and
verification uses only tombstones whose signature checks out.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import orjson

from incidents.log.chain import ChainSeal, ErasedField


class TombstoneKind(StrEnum):
    PURGE = "purge"
    ERASURE = "erasure"


@dataclass(frozen=True, slots=True)
class Tombstone:
    """One removal. For a purge: the events of ``incident_id`` from ``first_position``
    to ``last_position`` (``event_count`` of them), the last having hash ``chain_tip``.
    For an erasure: the event at ``first_position`` (== ``last_position``), whose hash
    is ``chain_tip``; ``detail`` names the erased fields and both row digests."""

    tombstone_id: str
    kind: TombstoneKind
    incident_id: str
    rule: str
    created_us: int
    first_position: int
    last_position: int
    event_count: int
    chain_tip: bytes
    detail: dict[str, Any]
    signature: bytes = b""

    def payload(self) -> bytes:
        """The canonical bytes the signature covers."""
        return orjson.dumps(
            [
                "incidents-tombstone-v1",
                self.tombstone_id,
                self.kind.value,
                self.incident_id,
                self.rule,
                self.created_us,
                self.first_position,
                self.last_position,
                self.event_count,
                self.chain_tip.hex(),
                self.detail,
            ],
            option=orjson.OPT_SORT_KEYS,
        )

    def as_dict(self) -> dict[str, Any]:
        """The tombstone as the API and CLI show it."""
        return {
            "id": self.tombstone_id,
            "kind": self.kind.value,
            "incident_id": self.incident_id,
            "rule": self.rule,
            "created_us": self.created_us,
            "first_position": self.first_position,
            "last_position": self.last_position,
            "event_count": self.event_count,
            "chain_tip": self.chain_tip.hex(),
            "detail": self.detail,
            "signature": self.signature.hex(),
        }


class TombstoneSigner:
    """Signs and checks tombstones with the instance's tombstone secret."""

    def __init__(self, secret: bytes) -> None:
        self._secret = secret

    def sign(self, tombstone: Tombstone) -> bytes:
        return hmac.new(self._secret, tombstone.payload(), hashlib.sha256).digest()

    def valid(self, tombstone: Tombstone) -> bool:
        return hmac.compare_digest(self.sign(tombstone), tombstone.signature)


class InvalidTombstone(ValueError):
    """A tombstone's signature does not check out: it was altered or forged."""


def seal_of(tombstones: list[Tombstone], signer: TombstoneSigner) -> ChainSeal | None:
    """What an incident's tombstones say about its chain (None without tombstones).

    Raises :class:`InvalidTombstone` when any signature is wrong: a chain whose
    tombstones are not trustworthy must not verify.
    """
    if not tombstones:
        return None
    start_hash = b""
    start_position = 0
    removed = 0
    erased: dict[int, ErasedField] = {}
    for stone in sorted(tombstones, key=lambda t: t.first_position):
        if not signer.valid(stone):
            raise InvalidTombstone(
                f"tombstone {stone.tombstone_id} of {stone.incident_id} has an invalid signature"
            )
        if stone.kind is TombstoneKind.PURGE:
            removed += stone.event_count
            if stone.last_position > start_position:
                start_position = stone.last_position
                start_hash = stone.chain_tip
        else:
            erased[stone.first_position] = ErasedField(
                bytes.fromhex(stone.detail["original_digest"]),
                bytes.fromhex(stone.detail["erased_digest"]),
            )
    if start_position == 0:
        return ChainSeal(erased=erased)
    return ChainSeal(start_hash, start_position, removed, erased)


def trusted_seal_of(tombstones: list[Tombstone], signer: TombstoneSigner) -> ChainSeal | None:
    """:func:`seal_of`, or None when a signature is wrong: verification then runs as if
    there were no tombstones, and reports the removed events as missing."""
    try:
        return seal_of(tombstones, signer)
    except InvalidTombstone:
        return None
