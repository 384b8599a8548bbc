"""Channel names: Slack's rules hold for any title, and the slug is cut cleanly."""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from incidents.chatops.naming import MAX_CHANNEL_NAME, channel_name, slug

_SLACK_NAME = re.compile(r"^[a-z0-9_-]{1,80}$")


def test_the_conventional_name() -> None:
    assert channel_name("INC-12", "SEV-2", "Database down!", restricted=False) == (
        "inc-12-sev2-database-down"
    )


def test_restricted_incidents_get_the_suffix() -> None:
    assert channel_name("INC-7", "SEV-1", "Payroll", restricted=True) == (
        "inc-7-sev1-payroll-restricted"
    )


def test_unicode_titles_fold_to_ascii() -> None:
    assert slug("Café São Paulo — latência") == "cafe-sao-paulo-latencia"
    # Scripts with no ASCII form leave no slug: the name is still valid.
    assert channel_name("INC-3", "SEV-3", "データベース障害", restricted=False) == "inc-3-sev3"


def test_long_titles_are_cut_at_a_word_boundary() -> None:
    title = "checkout latency " * 20
    name = channel_name("INC-123456", "SEV-4", title, restricted=True)
    assert len(name) <= MAX_CHANNEL_NAME
    assert name.endswith("-restricted")
    words = name.removeprefix("inc-123456-sev4-").removesuffix("-restricted").split("-")
    assert set(words) == {"checkout", "latency"}


def test_a_first_word_longer_than_the_room_is_cut_hard() -> None:
    name = channel_name("INC-1", "SEV-1", "x" * 200, restricted=False)
    assert name == "inc-1-sev1-" + "x" * (MAX_CHANNEL_NAME - len("inc-1-sev1-"))


def test_a_collision_suffix_keeps_the_restricted_suffix_last() -> None:
    assert channel_name("INC-1", "SEV-2", "db", restricted=True, suffix="2") == (
        "inc-1-sev2-db-2-restricted"
    )


@given(
    number=st.integers(min_value=1, max_value=10**12),
    severity=st.sampled_from(["SEV-1", "SEV-2", "SEV-3", "SEV-4"]),
    title=st.text(max_size=300),
    restricted=st.booleans(),
    suffix=st.sampled_from(["", "2", "19"]),
)
def test_every_name_follows_slacks_rules(
    number: int, severity: str, title: str, restricted: bool, suffix: str
) -> None:
    name = channel_name(f"INC-{number}", severity, title, restricted=restricted, suffix=suffix)
    assert _SLACK_NAME.fullmatch(name)
    assert name.startswith(f"inc-{number}-sev{severity[-1]}")
    assert not name.endswith("-") and "--" not in name
    assert name.endswith("-restricted") == restricted
    # The slug is a prefix of the whole slug, made of whole words unless one word
    # alone is longer than the room.
    head = f"inc-{number}-sev{severity[-1]}"
    tail = (f"-{suffix}" if suffix else "") + ("-restricted" if restricted else "")
    part = name.removeprefix(head).removesuffix(tail).removeprefix("-")
    full = slug(title)
    assert full.startswith(part)
    if part and len(part) < len(full) and "-" in part:
        assert full[len(part)] == "-"
