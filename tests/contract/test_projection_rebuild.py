"""Projections are a pure function of the log: a rebuild after any history changes nothing.

Random histories of commands (valid and invalid) and alert deliveries run through the
incident service, gathered into group commits as a busy server would; the projection
tables are then rebuilt from the log and must come out identical, row for row.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select
from typer.testing import CliRunner

from incidents.app import Container, build_container
from incidents.cli.main import app
from incidents.incident.commands import (
    Acknowledge,
    AddNote,
    Assign,
    AssignRole,
    ChangeStatus,
    Declare,
    Escalate,
    InvalidCommand,
    Link,
    Merge,
    Update,
)
from incidents.incident.correlation.alert import RESOLVE, TRIGGER, Alert
from incidents.incident.correlation.engine import IngestAlerts
from incidents.incident.correlation.rules import parse_rules
from incidents.incident.lifecycle import Status
from incidents.log.commands import Command, Rejected
from incidents.log.projections import BUILT
from incidents.log.session import AppendSession
from incidents.store.engine import writes
from incidents.store.projection_store import PROJECTION_TABLES
from incidents.store.schema import incidents
from tests.conftest import make_settings

CONSOLE_SCRIPT = Path(sys.executable).with_name("incidents")
T0 = 1_765_447_200_000_000
ACTOR = "alice@example.com"
RULES = parse_rules(
    {
        "open_incident_at": "SEV-2",
        "windows": {"absorb": "1h", "quiet": "20m", "max_lifetime": "3h"},
        "fingerprints": [
            {"name": "svc", "fields": ["service", "error_type"], "auto_mitigate": True},
            "alert_rule + host + time_window",
        ],
    }
)

Snapshot = dict[str, list[tuple[Any, ...]]]


def snapshot(engine: Engine) -> Snapshot:
    """Every projection row, by table, in key order (the build marker aside)."""
    out: Snapshot = {}
    with engine.connect() as conn:
        for name, table in PROJECTION_TABLES.items():
            stmt = select(*table.columns).order_by(*table.primary_key.columns)
            rows = [
                tuple(bytes(v) if isinstance(v, memoryview) else v for v in r)
                for r in conn.execute(stmt)
            ]
            # "built" records the head position of the last rebuild, not state.
            out[name] = [r for r in rows if not (name == "projection_meta" and r[0] == BUILT)]
    return out


# --- random histories ------------------------------------------------------------------

_ref = st.integers(min_value=1, max_value=14).map(lambda n: f"INC-{n}")
_sev = st.sampled_from(["SEV-1", "SEV-2", "SEV-3", "SEV-4"])
_user = st.sampled_from(["alice@example.com", "bob@example.com", "carol@example.com"])
_word = st.sampled_from(["db", "api", "queue", "edge"])
# Any text, NUL and lone surrogates included: the first is stored, the second refused.
_text = st.text(max_size=12)


def _alert(key: str, minute: int, resolve: bool, severity: str, fields: dict[str, str]) -> Alert:
    time_us = T0 + minute * 60_000_000
    kind = RESOLVE if resolve else TRIGGER
    notification = f"test:{key}:{kind}:{time_us}"
    return Alert(
        provider="test",
        key=f"test:{key}",
        event_type=kind,
        time_us=time_us,
        event_id=notification,
        origin_id=notification,
        source="test://replay",
        name=f"alert {key}",
        severity=severity,
        summary=f"{key} is failing",
        attributes=fields,
    )


_alerts = st.builds(
    _alert,
    st.sampled_from(["a", "b", "c", "d", "e"]),
    st.integers(min_value=0, max_value=400),
    st.booleans(),
    st.sampled_from(["critical", "error", "warning", "info"]),
    st.fixed_dictionaries(
        {},
        optional={
            "service": _word,
            "error_type": st.sampled_from(["5xx", "timeout"]),
            "alert_rule": st.sampled_from(["HighErrors", "Latency"]),
            "host": st.sampled_from(["h1", "h2"]),
        },
    ),
)

_commands: st.SearchStrategy[Command] = st.one_of(
    st.builds(
        Declare,
        title=_text.filter(bool),
        actor=_user,
        severity=_sev,
        service=st.none() | _word,
        labels=st.dictionaries(_word, st.sampled_from(["", "x", "y"]), max_size=2),
        classification=st.sampled_from(["public", "restricted"]),
        draft=st.booleans(),
        parent_id=st.none() | _ref,
    ),
    st.builds(
        ChangeStatus,
        _ref,
        _user,
        st.none(),
        target=st.sampled_from(list(Status)),
        reason=st.none() | st.just("because"),
    ),
    st.builds(Acknowledge, _ref, _user, st.none()),
    st.builds(Escalate, _ref, _user, st.none(), severity=st.none() | _sev),
    st.builds(
        Update,
        _ref,
        _user,
        st.none(),
        changes=st.fixed_dictionaries(
            {},
            optional={
                "title": _text.filter(bool),
                "severity": _sev,
                "labels": st.dictionaries(_word, st.just("z"), max_size=2),
                "classification": st.sampled_from(["public", "confidential"]),
                "service": _word,
            },
        ),
    ),
    st.builds(
        Assign,
        _ref,
        _user,
        st.none(),
        add=st.lists(_user, max_size=2).map(tuple),
        remove=st.lists(_user, max_size=1).map(tuple),
    ),
    st.builds(
        AssignRole,
        _ref,
        _user,
        st.none(),
        role=st.sampled_from(["commander", "scribe"]),
        user=st.none() | _user,
    ),
    st.builds(AddNote, _ref, _user, st.none(), text=_text),
    st.builds(Merge, _ref, _user, st.none(), target=_ref),
    st.builds(
        Link,
        _ref,
        _user,
        st.none(),
        parent_id=st.none() | _ref,
        related=st.lists(_ref, max_size=2).map(tuple),
    ),
    st.builds(
        IngestAlerts,
        st.lists(_alerts, min_size=1, max_size=4).map(tuple),
        st.just(RULES),
        st.just("integration:test:replay"),
    ),
)

# Commands submitted together land in shared group commits, as on a busy server.
_history = st.lists(st.lists(_commands, min_size=1, max_size=6), min_size=1, max_size=10)


def run_history(container: Container, history: list[list[Command]]) -> None:
    for burst in history:
        futures: list[Future[Any]] = [container.incidents.submit(c) for c in burst]
        for future in futures:
            # Refused commands are part of a realistic history.
            with contextlib.suppress(Rejected):
                future.result()


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(history=_history)
def test_rebuild_reproduces_the_live_projections(
    container: Container, history: list[list[Command]]
) -> None:
    # The container lives across examples: each history extends the previous ones.
    run_history(container, history)
    live = snapshot(container.engine)
    report = container.incidents.rebuild()
    assert report.head_position == container.reader.head_position()
    assert snapshot(container.engine) == live


def test_rebuild_after_a_known_history(container: Container) -> None:
    """A fixed history touching every command kind, so the property is never vacuous."""
    run_history(
        container,
        [
            [
                Declare("db down", ACTOR, severity="SEV-2", service="db", labels={"team": "x"}),
                Declare("api slow", ACTOR),
                Declare("child", ACTOR, parent_id="INC-1", draft=True),
            ],
            [
                Acknowledge("INC-1", ACTOR, None),
                Escalate("INC-1", ACTOR, None),
                Update("INC-2", ACTOR, None, {"title": "api very slow", "labels": {"a": ""}}),
                Assign("INC-2", ACTOR, None, add=("bob@example.com",)),
                AssignRole("INC-1", ACTOR, None, role="commander", user="bob@example.com"),
                AddNote("INC-1", ACTOR, None, text="looking"),
                ChangeStatus("INC-2", ACTOR, None, target=Status.CLOSED),  # refused
                Link("INC-2", ACTOR, None, related=("INC-1",)),
            ],
            [
                IngestAlerts(
                    (
                        _alert("a", 0, False, "critical", {"service": "api", "error_type": "5xx"}),
                        _alert("b", 1, False, "warning", {"service": "api", "error_type": "5xx"}),
                        _alert("c", 2, False, "warning", {"host": "h1"}),
                    ),
                    RULES,
                    "integration:test:replay",
                ),
            ],
            [Merge("INC-2", ACTOR, None, target="INC-4")],
            [
                IngestAlerts(
                    (
                        _alert("a", 5, True, "critical", {"service": "api", "error_type": "5xx"}),
                        _alert("b", 6, True, "warning", {"service": "api", "error_type": "5xx"}),
                    ),
                    RULES,
                    "integration:test:replay",
                ),
                ChangeStatus("INC-1", ACTOR, None, target=Status.MITIGATED),
                ChangeStatus("INC-1", ACTOR, None, target=Status.RESOLVED),
            ],
        ],
    )
    live = snapshot(container.engine)
    assert [r[0] for r in live["incidents"]] == ["INC-1", "INC-2", "INC-3", "INC-4"]
    assert {r[0]: r[4] for r in live["incidents"]} == {
        "INC-1": "resolved",
        "INC-2": "canceled",
        "INC-3": "draft",
        "INC-4": "mitigated",
    }
    assert len(live["alerts"]) == 3
    assert live["correlation_groups"]
    # Every incident has a board, and the boards are rebuilt like the rest.
    assert [r[0] for r in live["boards"]] == ["INC-1", "INC-2", "INC-3", "INC-4"]
    container.incidents.rebuild()
    assert snapshot(container.engine) == live


# --- incident numbers under concurrency ----------------------------------------------------


def test_concurrent_declarations_get_gap_free_numbers(database_url: str) -> None:
    # Two containers on one database stand for two server processes.
    containers = [build_container(make_settings(database_url)) for _ in range(2)]
    for c in containers:
        c.start()
    ids: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(8)

    def declare(worker: int) -> None:
        service = containers[worker % 2].incidents
        start.wait()
        for n in range(10):
            result = service.execute(Declare(f"w{worker} #{n}", ACTOR))
            with lock:
                ids.append(result.incident.id)

    try:
        threads = [threading.Thread(target=declare, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(ids, key=lambda i: int(i[4:])) == [f"INC-{n}" for n in range(1, 81)]
        stored = snapshot(containers[0].engine)["incidents"]
        assert [r[0] for r in stored] == sorted(ids)
    finally:
        for c in containers:
            c.close()


@dataclass(frozen=True)
class Hold:
    """A command that keeps the writer busy until released, so the next ones share a group."""

    released: threading.Event

    def execute(self, session: AppendSession) -> None:
        self.released.wait(timeout=30)


def test_a_refused_declaration_leaves_no_gap(container: Container) -> None:
    released = threading.Event()
    hold = container.incidents.submit(Hold(released))
    # An origin id over the attribute limit is refused only when the event is built.
    refused = container.incidents.submit(Declare("bad", ACTOR, idempotency_key="k" * 2000))
    declared = container.incidents.submit(Declare("next", ACTOR))
    released.set()
    hold.result()
    with pytest.raises(Rejected):
        refused.result()
    assert declared.result().incident.id == "INC-1"


def test_a_title_with_nul_is_stored_on_postgresql(postgres_url: str) -> None:
    container = build_container(make_settings(postgres_url))
    container.start()
    try:
        declared = container.incidents.execute(Declare("db\x00down", ACTOR))
        # The event keeps the title as sent; the projection shows U+FFFD instead.
        assert declared.incident.title == "db\x00down"
        stored = container.incidents.reader.get(declared.incident.id)
        assert stored is not None and stored.title == "db\x00down"
        with container.engine.connect() as conn:
            column = conn.execute(select(incidents.c.title)).scalar_one()
        assert column == "db\ufffddown"
        assert container.incidents.rebuild().events == 1
    finally:
        container.close()


def test_a_note_with_a_lone_surrogate_is_refused(container: Container) -> None:
    container.incidents.execute(Declare("db down", ACTOR))
    with pytest.raises(InvalidCommand, match="not valid Unicode"):
        container.incidents.execute(AddNote("INC-1", ACTOR, None, text="half \ud800 a pair"))
    assert container.incidents.get("INC-1", None) is not None


# --- the admin command -------------------------------------------------------------------


def _cli_env(url: str) -> dict[str, str | None]:
    env: dict[str, str | None] = {
        name: None for name in os.environ if name.startswith("IM_") and name != "IM_TEST_POSTGRES"
    }
    env["IM_DATABASE_URL"] = url
    return env


def test_admin_rebuild_projections_end_to_end(sqlite_url: str) -> None:
    container = build_container(make_settings(sqlite_url))
    container.start()
    try:
        run_history(
            container,
            [
                [Declare("one", ACTOR), Declare("two", ACTOR)],
                [AddNote("INC-1", ACTOR, None, text="n"), Escalate("INC-2", ACTOR, None)],
            ],
        )
        live = snapshot(container.engine)
        head = container.reader.head_position()
        # Lose the projections (as after restoring the log alone from a backup).
        with writes(container.engine).begin() as conn:
            for table in PROJECTION_TABLES.values():
                conn.execute(table.delete())
    finally:
        container.close()

    result = CliRunner().invoke(app, ["admin", "rebuild-projections"], env=_cli_env(sqlite_url))
    assert result.exit_code == 0, (result.stdout, result.stderr, result.exception)
    assert result.stdout.strip().splitlines() == [
        f"rebuilt projections: {head} events folded, head position {head}"
    ]
    container = build_container(make_settings(sqlite_url))
    try:
        assert snapshot(container.engine) == live
    finally:
        container.close()


def test_admin_rebuild_projections_failure_is_one_line() -> None:
    merged = {k: v for k, v in os.environ.items() if not k.startswith("IM_")}
    merged["IM_DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/none"
    done = subprocess.run(
        [str(CONSOLE_SCRIPT), "admin", "rebuild-projections"],
        capture_output=True,
        text=True,
        env=merged,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("error: database postgresql://nobody@127.0.0.1:1/none")
