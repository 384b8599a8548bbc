"""What a channel is shown: decided for its audience, redacted by the one function."""

from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from incidents.chatops.channels import IncidentChannel
from incidents.chatops.render import MAX_TOPIC, audience, message_text, posts, topic
from incidents.incident.aggregate import Incident
from incidents.log.records import StoredEvent
from incidents.policy.decision_point import EmbeddedDecisionPoint

_PDP = EmbeddedDecisionPoint()
SECRET = "s3cr3t-value"
PUBLIC = IncidentChannel("slack:acme", "INC-1", "C1", "inc-1-sev2-x", private=False)
PRIVATE = IncidentChannel("slack:acme", "INC-1", "C2", "inc-1-sev2-x-restricted", private=True)


def row(
    data: Any, *, visibility: str | None = None, data_class: Any = None, type_: str = "im.note.add"
) -> StoredEvent:
    body: dict[str, Any] = {"data": data, "datacontenttype": "application/json"}
    if data_class is not None:
        body["data_class"] = data_class
    return StoredEvent(
        1, "INC-1", "e1", "im://t", type_, None, 0, None, "alice@example.com", "alice",
        visibility, None, None, 0, orjson.dumps(body), b"", None, b"",
    )  # fmt: skip


def test_a_public_channel_sees_public_events_with_their_text() -> None:
    decision = _PDP.decide(audience("slack:acme", PUBLIC, "public"))
    text = message_text(row({"text": "restarted <db> & cache"}), decision)
    assert text == "*Note Added*\nrestarted &lt;db&gt; &amp; cache\n_alice@example.com_"


def test_a_public_channel_never_sees_a_confidential_event() -> None:
    decision = _PDP.decide(audience("slack:acme", PUBLIC, "confidential"))
    assert message_text(row({"text": SECRET}, visibility="confidential"), decision) is None


def test_a_private_channel_sees_its_incidents_level() -> None:
    # The clearance scale: public < internal < confidential < restricted < secret.
    decision = _PDP.decide(audience("slack:acme", PRIVATE, "confidential"))
    shown = message_text(row({"text": SECRET}, visibility="confidential"), decision)
    assert shown is not None and SECRET in shown
    assert message_text(row({"text": SECRET}, visibility="restricted"), decision) is None


def test_personal_data_is_redacted_for_every_channel() -> None:
    decision = _PDP.decide(audience("slack:acme", PRIVATE, "restricted"))
    text = message_text(row({"text": SECRET}, data_class=["pii"]), decision)
    assert text is not None and SECRET not in text and "[REDACTED]" in text


def test_which_events_are_posted() -> None:
    assert posts(row({}, type_="im.incident.mitigate"))
    assert posts(row({}, type_="im.note.add"))
    assert not posts(row({}, type_="im.alert.trigger"))
    assert not posts(row({}, type_="im.slack.message"))


def test_the_topic_fits_slacks_limit() -> None:
    incident = Incident(id="INC-1", title="t" * 400, severity="SEV-1", status="open", declared_us=0)
    text = topic(incident, "<@U1>", "https://x/b", "https://x/t")
    assert len(text) <= MAX_TOPIC
    assert text.endswith("| SEV-1 | open | IC: <@U1> | board https://x/b | timeline https://x/t")


_VIS = st.sampled_from([None, "public", "restricted", "confidential"])
_CLASSES = st.sampled_from(["pii", "phi", "financial", "legal_hold"])
_KEYS = st.sampled_from(["text", "note", "customer_email", "cardNumber", "diagnosis", "summary"])


@settings(max_examples=300)
@given(
    visibility=_VIS,
    tagged=st.one_of(st.none(), st.lists(_CLASSES, min_size=1, max_size=2)),
    keys=st.lists(_KEYS, min_size=1, max_size=4, unique=True),
)
def test_no_secret_reaches_a_public_channel(
    visibility: str | None, tagged: list[str] | None, keys: list[str]
) -> None:
    """A value is secret when its event is not public, its data is tagged with a data
    class, or its field is classified by name; none of them is ever posted."""
    decision = _PDP.decide(audience("slack:acme", PUBLIC, "public"))
    by_name = {"customer_email", "cardNumber", "diagnosis"}
    data = {key: f"{SECRET}-{key}" for key in keys}
    text = message_text(row(data, visibility=visibility, data_class=tagged), decision)
    if text is None:
        return
    secret_keys = set(keys) if (visibility not in (None, "public") or tagged) else by_name
    for key in secret_keys & set(keys):
        assert f"{SECRET}-{key}" not in text
