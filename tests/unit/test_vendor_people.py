"""The per-client translation of people: email <-> vendor user id, cached and bounded."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incidents.integrations.vendor_people import PersonUnmapped, VendorPeople, is_plain_email


class Directory:
    """A vendor's users, counting the lookups made."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users  # vendor id -> email
        self.asked = 0

    def by_email(self, email: str) -> str:
        self.asked += 1
        for vendor_id, address in self.users.items():
            if address.lower() == email.lower():
                return vendor_id
        raise PersonUnmapped(f"no user has {email}")

    def email(self, vendor_id: str) -> str:
        self.asked += 1
        if vendor_id not in self.users:
            raise PersonUnmapped(f"no user {vendor_id}")
        return self.users[vendor_id]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_answers_are_kept_both_ways_and_misses_are_asked_again_after_a_while() -> None:
    directory = Directory({"u1": "Ann@Example.com"})
    clock = Clock()
    people = VendorPeople(directory.by_email, directory.email, miss_seconds=300, clock=clock)
    assert people.vendor_id("ann@example.com") == "u1"
    assert people.email("u1") == "ann@example.com"  # learnt from the first lookup
    assert directory.asked == 1
    with pytest.raises(PersonUnmapped, match="no user u2"):
        people.email("u2")
    directory.users["u2"] = "bo@example.com"  # the user appears later
    clock.now += 299
    with pytest.raises(PersonUnmapped, match="no user u2"):  # the miss is still believed
        people.email("u2")
    assert directory.asked == 2
    clock.now += 2
    assert people.email("u2") == "bo@example.com"
    assert directory.asked == 3


def test_a_miss_is_asked_once_while_it_is_believed_and_forgotten_when_learnt() -> None:
    directory = Directory({})
    clock = Clock()
    people = VendorPeople(directory.by_email, directory.email, clock=clock)
    for _ in range(5):
        with pytest.raises(PersonUnmapped):
            people.vendor_id("cy@example.com")
    assert directory.asked == 1
    people.remember("u9", "cy@example.com")  # seen in passing on an issue
    assert people.vendor_id("cy@example.com") == "u9"
    assert directory.asked == 1


class YieldingDict(OrderedDict[str, Any]):
    """An ordered dict that lets other threads run right after each read, so an
    eviction lands between a cache read and its move to the end, as it does under
    load (the interpreter would otherwise switch threads there only rarely)."""

    def get(self, key: str, default: Any = None) -> Any:
        value = super().get(key, default)
        time.sleep(0)
        return value


def test_concurrent_lookups_with_a_tiny_cache_never_fail() -> None:
    directory = Directory({f"u{i}": f"p{i}@example.com" for i in range(3)})
    people = VendorPeople(directory.by_email, directory.email, capacity=2)
    for cache in (people._ids, people._emails):
        cache._items = YieldingDict()
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def work(n: int) -> None:
        start.wait()
        try:
            for round_ in range(300):
                i = (n + round_) % 3
                if round_ % 2:
                    assert people.email(f"u{i}") == f"p{i}@example.com"
                else:
                    assert people.vendor_id(f"p{i}@example.com") == f"u{i}"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(people) <= 2


@given(st.lists(st.integers(min_value=0, max_value=50), max_size=200))
def test_the_cache_never_holds_more_than_its_capacity(ids: list[int]) -> None:
    directory = Directory({f"u{i}": f"p{i}@example.com" for i in range(51)})
    people = VendorPeople(directory.by_email, directory.email, capacity=8)
    for i in ids:
        assert people.email(f"u{i}") == f"p{i}@example.com"
        assert len(people) <= 8


@pytest.mark.parametrize(
    ("value", "plain"),
    [
        ("ann@example.com", True),
        ("Ann.Lee+ops@mail.example.co.uk", True),
        ("x@y.z^ORuser_name=admin", False),
        ("x y@example.com", False),
        ("x@example.com\n", False),
        ("x@example.com\x00", False),
        ("a@b@example.com", False),
        ("nobody", False),
        ("x@localhost", False),
    ],
)
def test_plain_email_shape(value: str, plain: bool) -> None:
    assert is_plain_email(value) is plain
