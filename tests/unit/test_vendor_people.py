"""The per-client translation of people: email <-> vendor user id, cached and bounded."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incidents.integrations.vendor_people import PersonUnmapped, VendorPeople


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


def test_answers_are_kept_both_ways_and_misses_are_asked_again() -> None:
    directory = Directory({"u1": "Ann@Example.com"})
    people = VendorPeople(directory.by_email, directory.email)
    assert people.vendor_id("ann@example.com") == "u1"
    assert people.email("u1") == "ann@example.com"  # learnt from the first lookup
    assert directory.asked == 1
    with pytest.raises(PersonUnmapped):
        people.email("u2")
    directory.users["u2"] = "bo@example.com"  # the user appears later
    assert people.email("u2") == "bo@example.com"


@given(st.lists(st.integers(min_value=0, max_value=50), max_size=200))
def test_the_cache_never_holds_more_than_its_capacity(ids: list[int]) -> None:
    directory = Directory({f"u{i}": f"p{i}@example.com" for i in range(51)})
    people = VendorPeople(directory.by_email, directory.email, capacity=8)
    for i in ids:
        assert people.email(f"u{i}") == f"p{i}@example.com"
        assert len(people) <= 8
