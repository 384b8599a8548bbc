"""The redaction function on its own: tagged paths, field rules, and failing closed."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from incidents.events.envelope import EventValidationError, normalize
from incidents.policy.decision_point import EmbeddedDecisionPoint
from incidents.policy.model import Decision, FieldRule, Subject
from incidents.policy.redaction import redact_body

_PDP = EmbeddedDecisionPoint()
NOBODY = _PDP.decide(Subject("reader@example.com", frozenset({"timeline.reader"})))
EVERYTHING = _PDP.decide(
    Subject(
        "all@example.com",
        frozenset({"timeline.reader"}),
        frozenset({"pii_access", "phi_access", "financial_access", "legal_hold_access"}),
    )
)
M = "[REDACTED]"


def redact(body: dict[str, Any], decision: Decision = NOBODY) -> tuple[Any, bool]:
    return redact_body(body, decision)


@pytest.mark.parametrize(
    ("path", "data", "expected"),
    [
        (
            "customer.token",
            {"customer": {"token": "x", "id": 1}},
            {"customer": {"token": M, "id": 1}},
        ),
        ("$.customer.token", {"customer": {"token": "x"}}, {"customer": {"token": M}}),
        ("/customer/token", {"customer": {"token": "x"}}, {"customer": {"token": M}}),
        ("/a~1b", {"a/b": "x", "c": 1}, {"a/b": M, "c": 1}),
        (
            "contacts[1].tag",
            {"contacts": [{"tag": "a"}, {"tag": "b"}]},
            {"contacts": [{"tag": "a"}, {"tag": M}]},
        ),
        (
            "contacts[*].tag",
            {"contacts": [{"tag": "a"}, {"tag": "b"}]},
            {"contacts": [{"tag": M}, {"tag": M}]},
        ),
        (
            "contacts.*.tag",
            {"contacts": [{"tag": "a"}, {"tag": "b"}]},
            {"contacts": [{"tag": M}, {"tag": M}]},
        ),
        ("contacts.0", {"contacts": ["a", "b"]}, {"contacts": [M, "b"]}),
    ],
)
def test_tagged_paths(path: str, data: Any, expected: Any) -> None:
    out, applied = redact({"data": data, "data_class": {"pii": [path]}})
    assert applied
    assert out["data"] == expected


@pytest.mark.parametrize(
    "body",
    [
        # A path that addresses nothing may be a typo hiding real data.
        {"data": {"Customer": {"Mobile": "x"}}, "data_class": {"pii": ["customer.mobile"]}},
        # The whole data, spelled as a path.
        {"data": {"note": "x"}, "data_class": {"phi": ["$"]}},
        # Text and base64 data cannot be redacted field by field.
        {"data": "patient x diagnosis y", "data_class": {"phi": ["diagnosis"]}},
        {
            "data_base64": base64.b64encode(b'{"customer": {"email": "x"}}').decode(),
            "datacontenttype": "application/json",
            "data_class": {"pii": ["customer.email"]},
        },
    ],
)
def test_tags_that_cannot_be_applied_precisely_redact_everything(body: dict[str, Any]) -> None:
    out, applied = redact(body)
    assert applied
    assert out["data"] == M
    assert "data_base64" not in out


def test_whole_data_classes_leave_no_keys_and_cover_extensions() -> None:
    out, applied = redact(
        {"data": {"alice@example.com": {"a": 1}}, "data_class": ["pii"], "ext": {"ticket": "T-1"}}
    )
    assert applied
    assert out["data"] == M
    assert out["ext"] == {"ticket": M}


@pytest.mark.parametrize(
    "key",
    [
        "customer_email",
        "reporterEmail",
        "firstName",
        "last-name",
        "customer_name",
        "mail",
        "dateOfBirth",
        "customer_ssn",
        "cardNumber",
        "primaryDiagnosis",
        "iban_number",
    ],
)
def test_field_rules_catch_common_spellings(key: str) -> None:
    out, applied = redact({"data": {"nested": [{key: "secret"}], "service": "payments"}})
    assert applied
    assert out["data"] == {"nested": [{key: M}], "service": "payments"}


@pytest.mark.parametrize("key", ["hostname", "service_id", "session", "region"])
def test_field_rules_leave_operational_fields(key: str) -> None:
    out, applied = redact({"data": {key: "value"}})
    assert not applied
    assert out["data"] == {key: "value"}


def test_field_rules_apply_to_custom_extensions() -> None:
    out, applied = redact({"data": {"note": "n"}, "ext": {"customeremail": "a@b", "team": "x"}})
    assert applied
    assert out["ext"] == {"customeremail": M, "team": "x"}


def test_custom_classes_are_redacted_even_for_readers_of_every_builtin_class() -> None:
    custom = Decision(
        subject=EVERYTHING.subject,
        actions=EVERYTHING.actions,
        visibilities=EVERYTHING.visibilities,
        data_classes=EVERYTHING.data_classes,
        field_rules=(*EVERYTHING.field_rules, FieldRule("*password*", "credentials")),
    )
    out, applied = redact({"data": {"db_password": "hunter2"}}, custom)
    assert applied
    assert out["data"] == {"db_password": M}


def test_a_reader_of_every_class_sees_everything_and_the_body_is_not_copied() -> None:
    body = {"data": {"customer_email": "x"}, "data_class": ["pii"]}
    out, applied = redact(body, EVERYTHING)
    assert not applied
    assert out is body


def test_the_stored_body_is_never_modified() -> None:
    body = {"data": {"customer": {"email": "x"}}, "data_class": {"pii": ["customer.email"]}}
    redact(body)
    assert body["data"] == {"customer": {"email": "x"}}


@pytest.mark.parametrize("path", ["a..b", "a[x]", "a[", "[*"])
def test_malformed_paths_are_refused_at_append(path: str) -> None:
    raw = {
        "specversion": "1.0",
        "id": "1",
        "source": "s",
        "type": "im.note.add",
        "data": {"a": {"b": 1}},
        "imdataclass": {"pii": [path]},
    }
    with pytest.raises(EventValidationError, match="not a path into data"):
        normalize(raw)


_json_leaf = st.text(alphabet="abcdefgh", min_size=1, max_size=6)
_json = st.recursive(
    _json_leaf | st.integers(),
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.sampled_from(["a", "b", "c", "d"]), children, max_size=3)
    ),
    max_leaves=12,
)


@given(data=st.dictionaries(st.sampled_from(["a", "b", "c"]), _json, min_size=1, max_size=3))
def test_a_tagged_secret_never_survives(data: dict[str, Any]) -> None:
    """Wherever a secret sits, tagging its path hides it from a reader without the class."""
    # Plant the secret at the first path that leads to a leaf container.
    path: list[str] = []
    node: Any = data
    while isinstance(node, dict) and node:
        key = sorted(node)[0]
        if not isinstance(node[key], dict) or not node[key]:
            node[key] = "SECRET-VALUE"
            path.append(key)
            break
        path.append(key)
        node = node[key]
    body = {"data": data, "data_class": {"phi": [".".join(path)]}}
    out, applied = redact(body)
    assert applied
    assert "SECRET-VALUE" not in repr(out)
