"""deploy/compose.yaml: the server, a worker, PostgreSQL, Redis and NATS, migrated once.

Everywhere, the file is validated against the Compose Specification's JSON schema
(as vendored by check-jsonschema) and its structure checked with PyYAML;
``docker compose config`` checks it too where the compose plugin is installed.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
APP_SERVICES = ("migrate", "server", "worker")
# A value that comes from the environment (or deploy/.env) when compose runs.
INTERPOLATED = re.compile(r"\$\{[A-Z][A-Z0-9_]*(:?[?-][^}]*)?\}")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|KEY", re.IGNORECASE)
URL_PASSWORD = re.compile(r"://[^/:@\s]*:([^@\s]+)@")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def _compose_schema_errors(document: dict[str, Any]) -> list[str]:
    vendored = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(vendored.read_text())
    validator = jsonschema.validators.validator_for(schema)(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


def test_the_file_follows_the_compose_specification(compose: dict[str, Any]) -> None:
    assert _compose_schema_errors(compose) == []
    # The schema does catch mistakes: an unknown dependency condition is one.
    broken = copy.deepcopy(compose)
    broken["services"]["server"]["depends_on"]["migrate"]["condition"] = "service_finished"
    assert _compose_schema_errors(broken)


def _services(compose: dict[str, Any]) -> dict[str, Any]:
    services: dict[str, Any] = compose["services"]
    return services


def test_every_service_is_there(compose: dict[str, Any]) -> None:
    assert set(_services(compose)) == {"postgres", "redis", "nats", *APP_SERVICES}
    commands = {name: _services(compose)[name]["command"] for name in APP_SERVICES}
    assert commands == {
        "migrate": ["admin", "migrate"],
        "server": ["serve"],
        "worker": ["worker"],
    }


def test_migrations_run_once_before_the_server_and_worker(compose: dict[str, Any]) -> None:
    services = _services(compose)
    assert services["migrate"]["restart"] == "no"
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("server", "worker"):
        depends = services[name]["depends_on"]
        assert depends["migrate"] == {"condition": "service_completed_successfully"}
        assert depends["nats"] == {"condition": "service_healthy"}
    assert services["server"]["depends_on"]["redis"] == {"condition": "service_healthy"}


def test_healthchecks(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for name in ("postgres", "redis", "nats", "server"):
        check = services[name]["healthcheck"]
        assert check["test"][0] in ("CMD", "CMD-SHELL") and len(check["test"]) > 1, name
        assert check.get("disable") is not True
    assert services["server"]["healthcheck"]["test"] == [
        "CMD",
        "python",
        "-m",
        "incidents.probe",
        "readyz",
    ]
    # No HTTP in these two: the image's HEALTHCHECK would mark them unhealthy forever.
    for name in ("migrate", "worker"):
        assert services[name]["healthcheck"] == {"disable": True}


def test_the_application_services_share_one_hardened_image(compose: dict[str, Any]) -> None:
    services = _services(compose)
    for name in APP_SERVICES:
        service = services[name]
        assert service["build"] == {"context": "..", "dockerfile": "Dockerfile"}
        assert service["read_only"] is True
        assert service["cap_drop"] == ["ALL"]
        assert "user" not in service  # the image's unprivileged user
        env = service["environment"]
        assert env["IM_DATABASE_URL"].startswith("postgresql://incidents:")
        assert env["IM_NATS_URL"] == "nats://nats:4222"
        assert env["IM_REDIS_URL"] == "redis://redis:6379/0"
    assert (COMPOSE.parent / services["server"]["build"]["context"] / "Dockerfile").is_file()
    assert services["server"]["environment"]["IM_OUTBOX_RELAY"] == "false"
    for name in ("server", "worker"):
        assert services[name]["stop_grace_period"] == "30s"
    # Plain HTTP is published on the loopback interface unless asked otherwise.
    published = "${INCIDENTS_BIND:-127.0.0.1}:${INCIDENTS_PORT:-8080}:8080"
    assert services["server"]["ports"] == [published]


def _values(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every scalar of the document with where it is."""
    if isinstance(node, dict):
        return [pair for k, v in node.items() for pair in _values(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [pair for i, v in enumerate(node) for pair in _values(v, f"{path}[{i}]")]
    return [(path, str(node))]


def test_no_secret_is_written_in_the_file(compose: dict[str, Any]) -> None:
    for path, value in _values(compose):
        name = path.rsplit(".", 1)[-1]
        if SECRET_NAME.search(name):
            assert INTERPOLATED.fullmatch(value), f"{path} holds a literal secret"
        for password in URL_PASSWORD.findall(value):
            assert INTERPOLATED.fullmatch(password), f"{path} has a literal password in a URL"
    # The example environment file ships no value for the password.
    example = (COMPOSE.parent / ".env.example").read_text()
    assert re.search(r"^POSTGRES_PASSWORD=$", example, re.MULTILINE)
    assert "deploy/.env" in (ROOT / ".gitignore").read_text().splitlines()


def _compose_plugin() -> str | None:
    """Why ``docker compose`` cannot run here, or None when it can."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    done = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines()
        return f"docker compose is not available ({reason[0] if reason else 'no output'})"
    return None


def test_docker_compose_accepts_the_file() -> None:
    # Needs only the compose plugin, not a Docker engine.
    missing = _compose_plugin()
    if missing is not None:
        pytest.skip(f"{missing}; the structure is checked by the tests above")
    env = {**os.environ, "POSTGRES_PASSWORD": "only-for-config-check"}
    done = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    # Without the password, compose refuses to start anything, naming what is missing.
    bare = {k: v for k, v in os.environ.items() if k != "POSTGRES_PASSWORD"}
    refused = subprocess.run(
        ["docker", "compose", "-f", str(COMPOSE), "config", "--quiet"],
        capture_output=True,
        text=True,
        env=bare,
        timeout=60,
        check=False,
    )
    assert refused.returncode != 0 and "POSTGRES_PASSWORD" in refused.stderr
