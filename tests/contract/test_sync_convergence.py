"""Property: any interleaving of edits on the incident and on the ticket, with
deliveries and polls in any order, converges to one value per field, loses no edit
that nobody overrode, and then stays quiet (no write, no event: no echo loop)."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from incidents.app import Container
from incidents.incident.commands import Update
from tests.contract.sync_support import SN, declare, drain
from tests.fakes.servicenow import FakeServiceNow

FIELDS = {"title": "short_description", "description": "description"}
VALUES = st.sampled_from(["alpha", "bravo", "charlie", "delta"])
OPS = st.lists(
    st.one_of(
        st.tuples(st.just("ours"), st.sampled_from(sorted(FIELDS)), VALUES),
        st.tuples(st.just("theirs"), st.sampled_from(sorted(FIELDS)), VALUES),
        st.tuples(st.just("deliver"), st.just(""), st.just("")),
        st.tuples(st.just("poll"), st.just(""), st.just("")),
    ),
    max_size=12,
)


def _events(container: Container, incident_id: str) -> int:
    return sum(
        1 for r in container.reader.in_position_order(10**12) if r.incident_id == incident_id
    )


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(ops=OPS)
def test_interleaved_edits_converge_without_loss_or_loop(
    synced: Container, snow: FakeServiceNow, ops: list[tuple[str, str, str]]
) -> None:
    assert synced.sync is not None
    incident_id = declare(synced, "start", description="start")
    drain(synced)
    sys_id = str(snow.by_correlation(incident_id)[0]["sys_id"])
    last: dict[tuple[str, str], str] = {}
    for kind, field, value in ops:
        if kind == "ours":
            synced.incidents.execute(
                Update(incident_id, "alice@example.com", None, changes={field: value})
            )
            last[("ours", field)] = value
        elif kind == "theirs":
            snow.edit(sys_id, **{FIELDS[field]: value})
            last[("theirs", field)] = value
        elif kind == "deliver":
            drain(synced)
        else:
            synced.sync.poll(SN)
    # Quiesce: the outbox and the poller run until nothing is left.
    for _ in range(3):
        drain(synced)
        synced.sync.poll(SN)
    drain(synced)
    incident = synced.incidents.get(incident_id, None)
    assert incident is not None
    record = snow.by_correlation(incident_id)[0]
    open_conflicts = synced.sync.store.open_conflict_fields(SN, incident_id)
    assert not open_conflicts  # most_recent_allowed settles every text field
    for field, external in FIELDS.items():
        ours = getattr(incident, field)
        theirs = record[external]
        # Converged: both sides hold one value.
        assert ours == theirs, (field, ours, theirs)
        # No lost edit: the value is the last edit of one side (never a stale one),
        # and when only one side edited, it is that side's last edit.
        candidates = {last.get(("ours", field)), last.get(("theirs", field))} - {None}
        if candidates:
            assert ours in candidates, (field, ours, candidates)
        else:
            assert ours == "start"
        if ("theirs", field) not in last and ("ours", field) in last:
            assert ours == last[("ours", field)]
        if ("ours", field) not in last and ("theirs", field) in last:
            assert ours == last[("theirs", field)]
    # No loop: another full round writes nothing and records nothing.
    writes, events = snow.writes(), _events(synced, incident_id)
    for _ in range(2):
        synced.sync.poll(SN)
        drain(synced)
    assert snow.writes() == writes
    assert _events(synced, incident_id) == events
