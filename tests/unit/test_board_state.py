"""The board fold and persona selection, without a database."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from incidents.boards.personas import Persona, UnknownPersona, parse_persona, wanted
from incidents.boards.state import KEY_ENTRIES, LINKS, BoardState
from incidents.log.chain import GENESIS, event_hash
from incidents.log.records import StoredEvent
from incidents.policy.model import Decision, Subject

VISIBILITIES = ("public", "internal", "confidential", "restricted")
TYPES = ("im.note.add", "im.status_update.post", "im.alert.trigger", "im.jira.sync", "x.other")


def _chain(specs: list[tuple[str, str, str]]) -> list[StoredEvent]:
    """Stored rows of one incident, properly hash-linked."""
    rows: list[StoredEvent] = []
    prev = GENESIS
    for position, (kind, visibility, key) in enumerate(specs, start=1):
        body = b'{"data":{"key":"%s"}}' % key.encode()
        draft = StoredEvent(
            position, "INC-1", f"e{position}", "im://t", kind, None, position * 10, None,
            "a@example.com", "a@example.com", visibility, None, None, position, body,
            b"h" * 32, None if prev == GENESIS else prev, b"",
        )  # fmt: skip
        link = event_hash(prev, draft)
        rows.append(draft._replace(hash=link))
        prev = link
    return rows


def _fold(rows: list[StoredEvent]) -> BoardState:
    state = BoardState("INC-1")
    for row in rows:
        state.fold(row, {"key": row.body[17:-3].decode()}, [])
    return state


_specs = st.lists(
    st.tuples(st.sampled_from(TYPES), st.sampled_from(VISIBILITIES), st.sampled_from("abcde")),
    max_size=80,
)


@given(_specs)
def test_a_board_stays_bounded_and_round_trips(specs: list[tuple[str, str, str]]) -> None:
    state = _fold(_chain(specs))
    assert state.events == len(specs)
    assert sum(state.visibilities.values()) == len(specs)
    assert all(len(v) <= KEY_ENTRIES for v in state.key.values())
    assert all(len(v) <= LINKS for v in state.alerts.values())
    # One entry per alert key per visibility, at its latest position.
    for items in state.alerts.values():
        assert len({k for k, _ in items}) == len(items)
    assert state.chain.intact and state.chain.linked == len(specs)
    assert BoardState.from_json(state.to_json()) == state


@given(_specs, st.sets(st.sampled_from(VISIBILITIES)), st.sampled_from(list(Persona)))
def test_a_view_only_names_events_the_reader_may_see(
    specs: list[tuple[str, str, str]], visible: set[str], persona: Persona
) -> None:
    rows = _chain(specs)
    state = _fold(rows)
    decision = Decision(Subject("r@example.com"), frozenset(), frozenset(visible), frozenset())
    allowed = visible & {"public"} if persona is Persona.CUSTOMER else visible
    for position in wanted(persona, state, decision).all():
        assert (rows[position - 1].visibility or "public") in allowed


def test_a_changed_event_breaks_the_chain_where_it_is() -> None:
    rows = _chain([("im.note.add", "public", "a")] * 5)
    rows[2] = rows[2]._replace(actor="mallory@example.com")
    state = _fold(rows)
    assert not state.chain.intact and state.chain.broken_at == 3
    # The writer's own rows are not hashed again, but their links still are.
    live = BoardState("INC-1")
    for row in rows:
        live.fold(row, None, [], rehash=False)
    assert live.chain.intact
    unlinked = _chain([("im.note.add", "public", "a")] * 3)
    unlinked[1] = unlinked[1]._replace(prev_hash=b"x" * 32)
    live = BoardState("INC-1")
    for row in unlinked:
        live.fold(row, None, [], rehash=False)
    assert live.chain.broken_at == 2


def test_personas_parse_and_unknown_ones_are_refused() -> None:
    assert parse_persona(None) is Persona.RESPONDER
    assert parse_persona(" Customer ") is Persona.CUSTOMER
    try:
        parse_persona("ceo")
    except UnknownPersona as exc:
        assert "responder" in str(exc)
    else:
        raise AssertionError("an unknown persona was accepted")
