"""Constant-time comparison of caller-sent secrets: equal exactly when the strings are."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from incidents.identity.secret_comparison import same_secret


@given(st.text(), st.text())
def test_same_secret_is_string_equality_for_any_text(given_value: str, expected: str) -> None:
    assert same_secret(given_value, expected) is (given_value == expected)
    assert same_secret(expected, expected) is True


def test_values_beyond_ascii_and_lone_surrogates_compare_without_raising() -> None:
    assert same_secret("é", "é") and not same_secret("é", "e")
    assert not same_secret("\udcc3", "state") and same_secret("\udcc3", "\udcc3")
