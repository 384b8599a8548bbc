"""Stored exports: a reader's decision covers an export's view exactly when it lets
them read everything that export shows."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from incidents.artifacts.export_view import covers, view_of
from incidents.policy.model import Decision, FieldRule, Subject

_LEVELS = st.frozensets(st.sampled_from(["public", "internal", "confidential", "restricted"]))
_CLASSES = st.frozensets(st.sampled_from(["pii", "financial", "legal_hold", "security"]))
_RULES = st.lists(
    st.builds(
        FieldRule,
        st.sampled_from(["*email*", "*phone*", "ssn"]),
        st.sampled_from(["pii", "security"]),
    ),
    max_size=3,
    unique=True,
)


def _decision(
    visibilities: frozenset[str], classes: frozenset[str], rules: list[FieldRule]
) -> Decision:
    return Decision(Subject("x@example.com"), frozenset(), visibilities, classes, tuple(rules))


@given(_LEVELS, _CLASSES, _RULES)
def test_a_reader_covers_their_own_export(
    visibilities: frozenset[str], classes: frozenset[str], rules: list[FieldRule]
) -> None:
    decision = _decision(visibilities, classes, rules)
    assert covers(decision, view_of(decision))


@given(_LEVELS, _CLASSES, _RULES, _LEVELS, _CLASSES, _RULES)
def test_covering_means_seeing_at_least_as_much(
    v1: frozenset[str],
    c1: frozenset[str],
    r1: list[FieldRule],
    v2: frozenset[str],
    c2: frozenset[str],
    r2: list[FieldRule],
) -> None:
    exporter, reader = _decision(v1, c1, r1), _decision(v2, c2, r2)
    covered = covers(reader, view_of(exporter))
    if covered:
        # Nothing the export shows is hidden from the reader.
        assert v2 >= v1 and c2 >= c1
        hidden = {r.data_class for r in r2 if r not in r1}
        assert hidden <= c2
    if v2 >= v1 and c2 >= c1 and set(r2) <= set(r1):
        assert covered
    # Reading more never loses coverage.
    wider = _decision(v2 | v1, c2 | c1, r2)
    if covered:
        assert covers(wider, view_of(exporter))


def test_a_view_that_is_not_one_covers_nothing() -> None:
    decision = _decision(frozenset({"public"}), frozenset(), [])
    for view in (None, [], {"visibilities": "public"}, {"data_classes": []}):
        assert not covers(decision, view)
