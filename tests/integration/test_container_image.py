"""The Dockerfile: multi-stage, slim, the wheel installed, non-root, health-checked.

Its structure is checked everywhere. Where a Docker engine answers, the image is also
built and run against the machine's PostgreSQL: /readyz and one append. Without an
engine that test is skipped, saying so; it is not one of the services
IM_REQUIRE_SERVICES insists on.
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from incidents.probe import main as probe_main
from tests.conftest import PG_DSN, event, free_port, require_postgres

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) per instruction, continuation lines joined."""
    text = DOCKERFILE.read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), " ".join(rest.split())))
    return out


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for instruction in _instructions():
        if instruction[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(instruction)
    return stages


def test_the_image_is_built_in_stages_on_a_slim_base() -> None:
    stages = _stages()
    assert len(stages) >= 2
    for stage in stages:
        assert "-slim" in stage[0][1], stage[0]
    build, runtime = stages[0], stages[-1]
    assert any(i == "RUN" and "pip wheel" in args for i, args in build)
    # The runtime installs only the wheels built before, offline.
    install = next(args for i, args in runtime if i == "RUN" and "pip install" in args)
    assert "--no-index" in install and "from=build" in install
    assert not any(i == "COPY" and "src" in args for i, args in runtime)


def test_the_image_runs_unprivileged_with_a_healthcheck() -> None:
    runtime = _stages()[-1]
    user = [args for i, args in runtime if i == "USER"]
    assert user and user[-1].split(":")[0] not in ("0", "root")
    assert user[-1].split(":")[0].isdigit()  # numeric, for Kubernetes' runAsNonRoot
    healthcheck = next(args for i, args in runtime if i == "HEALTHCHECK")
    assert '"incidents.probe", "healthz"' in healthcheck
    assert ("ENTRYPOINT", '["incidents"]') in runtime
    assert ("CMD", '["serve"]') in runtime
    assert ("EXPOSE", "8080") in runtime
    env = " ".join(args for i, args in runtime if i == "ENV")
    assert "IM_HOST=0.0.0.0" in env and "IM_PORT=8080" in env


def test_the_build_context_holds_only_what_the_build_reads() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines  # everything excluded but what is listed
    assert {"!pyproject.toml", "!README.md", "!src"} <= set(lines)


class _Answer(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/readyz" else 200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def answering(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_Answer]]:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("IM_PORT", str(server.server_address[1]))
    try:
        yield _Answer
    finally:
        server.shutdown()
        server.server_close()
        _Answer.status = 200


def test_the_probe_exits_0_only_on_200(
    answering: type[_Answer], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert probe_main(["healthz"]) == 0
    assert probe_main(["readyz"]) == 0
    answering.status = 503
    assert probe_main(["readyz"]) == 1
    assert "answered HTTP 503" in capsys.readouterr().err
    assert probe_main(["elsewhere"]) == 2
    monkeypatch.setenv("IM_PORT", str(free_port()))
    assert probe_main([]) == 1
    assert "Connection refused" in capsys.readouterr().err


# --- Building and running the image, where Docker can -------------------------------


def _engine_missing() -> str | None:
    """Why no image can be built here, or None."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    done = subprocess.run(["docker", "info"], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines()
        return f"no Docker engine answers (`docker info` failed: {lines[-1] if lines else '?'})"
    return None


def _docker(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture
def image() -> Iterator[str]:
    missing = _engine_missing()
    if missing is not None:
        # Deliberately a skip even with IM_REQUIRE_SERVICES=1: CI machines have no engine.
        pytest.skip(f"{missing}; the Dockerfile's structure is checked by the tests above")
    tag = f"incidents-test:{uuid.uuid4().hex[:8]}"
    built = _docker("build", "--tag", tag, str(ROOT), timeout=1200)
    assert built.returncode == 0, built.stderr[-3000:]
    try:
        yield tag
    finally:
        _docker("rmi", "--force", tag)


def test_the_image_serves_against_postgresql(image: str) -> None:
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    database_url = f"{PG_DSN}?options=-csearch_path%3D{schema}"
    port = free_port()
    env = ["-e", f"IM_DATABASE_URL={database_url}", "-e", f"IM_PORT={port}"]
    name = f"incidents-test-{uuid.uuid4().hex[:8]}"
    try:
        token = _docker(
            "run", "--rm", "--network", "host", *env, image,
            "admin", "token", "create", "--user", "image@example.com",
            "--role", "timeline.writer",
        )  # fmt: skip
        assert token.returncode == 0, token.stderr
        started = _docker("run", "--detach", "--name", name, "--network", "host", *env, image)
        assert started.returncode == 0, started.stderr
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                ready = httpx.get(f"{url}/readyz", timeout=2)
                if ready.status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, _docker("logs", name).stderr[-3000:]
            time.sleep(0.5)
        assert ready.json()["checks"]["database"]["ok"] is True
        appended = httpx.post(
            f"{url}/api/v1/timeline/events",
            json=event("from-the-image"),
            headers={
                "Authorization": f"Bearer {token.stdout.strip()}",
                "Content-Type": "application/cloudevents+json",
            },
            timeout=10,
        )
        assert appended.status_code == 201, appended.text
        stopped = _docker("stop", "--time", "30", name, timeout=60)
        assert stopped.returncode == 0
        whoami = _docker("inspect", "--format", "{{.Config.User}}", image)
        assert whoami.stdout.strip() == "10001:10001"
    finally:
        _docker("rm", "--force", name)
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')
