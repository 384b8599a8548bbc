"""The archive's chunk format: stored rows, exactly as they were, compressed.

A chunk is zlib-compressed JSON: one array per row in column order, binary columns
hex-encoded (the body as text when it is UTF-8, which it always is for rows the
platform wrote). Decoding gives back rows equal to the stored ones, so hashes verify
and exports are byte-for-byte the same.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import Any

import orjson

from incidents.log.records import StoredEvent

# Fields holding bytes (body, content_hash, prev_hash, hash).
_BODY = 14
_BINARY = (15, 16, 17)
CHUNK_EVENTS = 1000
_LEVEL = 6


def _encode_row(row: StoredEvent) -> list[Any]:
    out: list[Any] = list(row)
    try:
        out[_BODY] = ["t", row.body.decode("utf-8")]
    except UnicodeDecodeError:
        out[_BODY] = ["x", row.body.hex()]
    for i in _BINARY:
        value = out[i]
        out[i] = None if value is None else bytes(value).hex()
    return out


def _decode_row(raw: list[Any]) -> StoredEvent:
    kind, text = raw[_BODY]
    raw[_BODY] = text.encode("utf-8") if kind == "t" else bytes.fromhex(text)
    for i in _BINARY:
        value = raw[i]
        raw[i] = None if value is None else bytes.fromhex(value)
    return StoredEvent._make(raw)


def encode_chunk(rows: Sequence[StoredEvent]) -> bytes:
    """Rows (one incident's, in position order) as one compressed chunk."""
    return zlib.compress(orjson.dumps([_encode_row(r) for r in rows]), _LEVEL)


def decode_chunk(data: bytes) -> list[StoredEvent]:
    """The rows of a chunk, equal to those encoded."""
    return [_decode_row(raw) for raw in orjson.loads(zlib.decompress(data))]
