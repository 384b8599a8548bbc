"""Retention's pure rules: tiers, tombstone signatures, the archive codec, erasure."""

from __future__ import annotations

import dataclasses
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from incidents.log.records import StoredEvent
from incidents.retention.archive_codec import decode_chunk, encode_chunk
from incidents.retention.erasure import ERASED, ErasureError, erase_fields
from incidents.retention.tiers import DAY_US, Action, Candidate, Periods, Tier, classify
from incidents.retention.tombstone import (
    InvalidTombstone,
    Tombstone,
    TombstoneKind,
    TombstoneSigner,
    seal_of,
)

NOW = 1_900_000_000_000_000
PERIODS = Periods(90, 2555)


@given(
    age=st.floats(min_value=0, max_value=5000),
    held=st.booleans(),
    archived=st.booleans(),
    status=st.sampled_from([None, "open", "mitigated", "resolved", "closed", "canceled"]),
)
def test_tiers(age: float, held: bool, archived: bool, status: str | None) -> None:
    candidate = Candidate("INC-1", status, NOW - int(age * DAY_US), held, archived, 3)
    verdict = classify(candidate, NOW, PERIODS)
    if held or status in ("open", "mitigated", "resolved"):
        assert verdict.action is Action.KEEP
    elif age >= 2555:
        assert verdict.action is Action.PURGE and verdict.tier is Tier.PURGED
    elif age >= 90:
        assert verdict.action is (Action.KEEP if archived else Action.ARCHIVE)
        assert verdict.tier is Tier.ARCHIVED
    else:
        assert verdict.action is Action.KEEP
    assert verdict.reason


def test_periods_must_be_ordered() -> None:
    with pytest.raises(ValueError, match="at least"):
        Periods(90, 30)


def _stone(**changes: Any) -> Tombstone:
    base = Tombstone(
        "t-1", TombstoneKind.PURGE, "INC-1", "purge-after-2555d", 1, 1, 9, 5, b"\x01" * 32, {}
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.parametrize(
    "change",
    [
        {"incident_id": "INC-2"},
        {"rule": "other"},
        {"created_us": 2},
        {"first_position": 2},
        {"last_position": 10},
        {"event_count": 4},
        {"chain_tip": b"\x02" * 32},
        {"detail": {"x": 1}},
        {"kind": TombstoneKind.ERASURE},
    ],
)
def test_any_change_to_a_tombstone_breaks_its_signature(change: dict[str, Any]) -> None:
    signer = TombstoneSigner(b"secret")
    stone = _stone()
    signed = dataclasses.replace(stone, signature=signer.sign(stone))
    assert signer.valid(signed)
    altered = dataclasses.replace(signed, **change)
    assert not signer.valid(altered)
    with pytest.raises(InvalidTombstone):
        seal_of([altered], signer)
    # Another instance's secret does not verify it either.
    assert not TombstoneSigner(b"other").valid(signed)


_text = st.text(max_size=20)
_opt = st.none() | _text
_hash = st.binary(min_size=32, max_size=32)
_rows = st.builds(
    StoredEvent,
    st.integers(1, 2**40),
    _opt,
    _text,
    _text,
    _text,
    _opt,
    st.integers(0, 2**50),
    _opt,
    _text,
    _text,
    _opt,
    _opt,
    _opt,
    st.integers(0, 2**50),
    st.binary(max_size=200) | st.builds(lambda v: orjson.dumps(v), st.dictionaries(_text, _text)),
    _hash,
    st.none() | _hash,
    _hash,
)


@given(rows=st.lists(_rows, max_size=20))
def test_archive_chunks_give_back_the_rows_exactly(rows: list[StoredEvent]) -> None:
    assert decode_chunk(encode_chunk(rows)) == rows


@given(
    data=st.dictionaries(
        st.text(alphabet="abcdef", min_size=1, max_size=5),
        st.integers(-(2**62), 2**62) | st.text(max_size=10),
        min_size=1,
        max_size=6,
    ),
    pick=st.data(),
)
def test_erasure_replaces_the_named_fields_and_nothing_else(
    data: dict[str, Any], pick: Any
) -> None:
    body = orjson.dumps({"data": data, "type": "im.note.add"})
    names = pick.draw(st.lists(st.sampled_from(sorted(data)), min_size=1, unique=True))
    erased = orjson.loads(erase_fields(body, names))
    assert erased["type"] == "im.note.add"
    for key, value in data.items():
        assert erased["data"][key] == (ERASED if key in names else value)


def test_erasure_of_a_missing_or_nested_field() -> None:
    body = orjson.dumps({"data": {"customer": {"email": "a@b", "plan": "gold"}, "tags": ["x"]}})
    out = orjson.loads(erase_fields(body, ["customer.email", "tags.0"]))
    assert out["data"] == {"customer": {"email": ERASED, "plan": "gold"}, "tags": [ERASED]}
    with pytest.raises(ErasureError, match="not in the event"):
        erase_fields(body, ["customer.phone"])
    with pytest.raises(ErasureError, match="no structured data"):
        erase_fields(orjson.dumps({"data": "text"}), ["x"])
