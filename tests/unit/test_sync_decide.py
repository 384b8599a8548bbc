"""The field rule: ownership and conflict policies, and that one step settles a field."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incidents.integrations.jira.adf import from_adf, to_adf
from incidents.integrations.jira.signature import SignatureMismatch, SignatureMissing, sign, verify
from incidents.integrations.vendor_http import retry_after_seconds
from incidents.sync.decide import FieldState, Verdict, decide
from incidents.sync.mapping import FieldMapping, MappingError, Owner, Policy, parse_field_mappings


def mapping(owner: Owner = Owner.BIDIRECTIONAL, policy: Policy = Policy.MANUAL) -> FieldMapping:
    return FieldMapping("title", "title", "short_description", owner, policy)


@pytest.mark.parametrize(
    ("owner", "policy", "ours_us", "theirs_us", "verdict"),
    [
        (Owner.BIDIRECTIONAL, Policy.INTERNAL_WINS, 1, 2, Verdict.PUSH),
        (Owner.BIDIRECTIONAL, Policy.EXTERNAL_WINS, 2, 1, Verdict.PULL),
        (Owner.BIDIRECTIONAL, Policy.MOST_RECENT_ALLOWED, 1, 2, Verdict.PULL),
        (Owner.BIDIRECTIONAL, Policy.MOST_RECENT_ALLOWED, 2, 1, Verdict.PUSH),
        (Owner.BIDIRECTIONAL, Policy.STATE_MACHINE, 2, 1, Verdict.PULL),
        (Owner.BIDIRECTIONAL, Policy.MANUAL, 1, 2, Verdict.CONFLICT),
        (Owner.INTERNAL, Policy.EXTERNAL_WINS, 1, 2, Verdict.PUSH),
        (Owner.EXTERNAL, Policy.INTERNAL_WINS, 2, 1, Verdict.PULL),
    ],
)
def test_both_sides_changed(
    owner: Owner, policy: Policy, ours_us: int, theirs_us: int, verdict: Verdict
) -> None:
    state = FieldState("ours", "theirs", "base", ours_us, theirs_us)
    assert decide(mapping(owner, policy), state).verdict is verdict


def test_one_side_changed_and_ownership() -> None:
    bidi, internal, external = mapping(), mapping(Owner.INTERNAL), mapping(Owner.EXTERNAL)
    only_ours = FieldState("new", "base", "base")
    only_theirs = FieldState("base", "new", "base")
    assert decide(bidi, only_ours).verdict is Verdict.PUSH
    assert decide(bidi, only_theirs).verdict is Verdict.PULL
    assert decide(internal, only_theirs).verdict is Verdict.PUSH  # repaired
    assert decide(external, only_ours).verdict is Verdict.PULL  # the ticket rules
    assert decide(bidi, FieldState("x", "x", "base")).verdict is Verdict.SETTLE
    assert decide(bidi, FieldState("x", "x", "x")).verdict is Verdict.NONE


def test_a_guard_refusal_is_a_conflict() -> None:
    status = FieldMapping("status", "status", "state")
    state = FieldState("8", "2", "8")
    assert decide(status, state, lambda _v: False).verdict is Verdict.CONFLICT
    assert decide(status, state, lambda _v: True).verdict is Verdict.PULL


TEXT = st.sampled_from(["a", "b", "c", None])


@given(
    ours=TEXT,
    theirs=TEXT,
    base=TEXT,
    owner=st.sampled_from(list(Owner)),
    policy=st.sampled_from(list(Policy)),
    times=st.tuples(st.integers(0, 3), st.integers(0, 3)),
)
def test_one_step_settles_the_field(
    ours: str | None,
    theirs: str | None,
    base: str | None,
    owner: Owner,
    policy: Policy,
    times: tuple[int, int],
) -> None:
    m = FieldMapping("description", "description", "description", owner, policy)
    verdict = decide(m, FieldState(ours, theirs, base, *times)).verdict
    if verdict is Verdict.PUSH:
        theirs, base = ours, ours
    elif verdict is Verdict.PULL:
        ours, base = theirs, theirs
    elif verdict is Verdict.SETTLE:
        base = ours
    elif verdict is Verdict.CONFLICT:
        return  # a human decides
    # After one step nothing is left to do: no second write, no loop.
    assert decide(m, FieldState(ours, theirs, base, *times)).verdict is Verdict.NONE


def test_field_mappings_override_defaults_and_name_the_key() -> None:
    defaults = (mapping(policy=Policy.MOST_RECENT_ALLOWED),)
    parsed = parse_field_mappings({"title": {"conflict_policy": "manual"}}, defaults, "x")
    assert parsed[0].policy is Policy.MANUAL and parsed[0].external_field == "short_description"
    assert parse_field_mappings({"title": None}, defaults, "x") == ()
    with pytest.raises(MappingError, match=r"x\.title\.source_of_truth"):
        parse_field_mappings({"title": {"source_of_truth": "both"}}, defaults, "x")


def test_lossy_value_maps_compare_as_the_ticket_holds_them() -> None:
    impact = FieldMapping(
        "severity", "severity", "impact", value_mapping={"SEV-3": "3", "SEV-4": "3"}
    )
    assert impact.to_external("SEV-4") == "3"
    assert impact.to_internal("3") == "SEV-3"
    assert impact.to_internal("9") is None


def test_webhook_signature_in_constant_time_form() -> None:
    body = b'{"issue":{"key":"OPS-1"}}'
    verify(sign("a-very-long-webhook-secret", body), body, "a-very-long-webhook-secret")
    with pytest.raises(SignatureMismatch):
        verify(sign("another-secret-value", body), body, "a-very-long-webhook-secret")
    with pytest.raises(SignatureMismatch):
        verify(sign("a-very-long-webhook-secret", body + b" "), body, "a-very-long-webhook-secret")
    with pytest.raises(SignatureMissing):
        verify("md5=abc", body, "a-very-long-webhook-secret")
    with pytest.raises(SignatureMissing):
        verify(None, body, "a-very-long-webhook-secret")


def test_adf_round_trip_and_retry_after() -> None:
    assert from_adf(to_adf("line one\nline two")) == "line one\nline two"
    assert retry_after_seconds("7") == 7.0
    assert retry_after_seconds(None) == 5.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
