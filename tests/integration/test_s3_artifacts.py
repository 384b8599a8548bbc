"""The S3 object store against a real S3-compatible HTTP server (moto in server mode)."""

from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer

from incidents.app import build_container, create_app
from incidents.artifacts.ports import ObjectStoreError
from incidents.config import ConfigError
from incidents.store.s3_objects import S3ObjectStore
from tests.conftest import grant_access, make_settings

PNG = b"\x89PNG\r\n\x1a\n" + b"chart" * 50


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(
        Bucket="incidents"
    )
    try:
        yield endpoint
    finally:
        server.stop()


def test_put_get_exists_over_http(s3_endpoint: str) -> None:
    store = S3ObjectStore("incidents", endpoint_url=s3_endpoint)
    key = hashlib.sha256(PNG).hexdigest()
    assert not store.exists(key) and store.get(key) is None
    store.put(key, PNG, "image/png")
    store.put(key, PNG, "image/png")  # again: harmless
    assert store.exists(key) and store.get(key) == PNG
    # The object is really in the bucket, under the prefix, with its type.
    raw = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    head = raw.head_object(Bucket="incidents", Key=f"artifacts/{key}")
    assert head["ContentType"] == "image/png" and head["ContentLength"] == len(PNG)


def test_the_api_stores_artifacts_in_the_bucket(s3_endpoint: str, tmp_path: Path) -> None:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        artifacts_s3_bucket="incidents",
        artifacts_s3_endpoint_url=s3_endpoint,
    )
    container = build_container(settings)
    grant_access(container, "cora@example.com", roles=("incident.commander",))
    _, token = container.tokens.create("cora@example.com")
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(container)) as client:
        declared = client.post("/api/v1/incidents", json={"title": "x"}, headers=auth)
        incident = declared.json()["id"]
        answer = client.post(
            f"/api/v1/incidents/{incident}/artifacts",
            params={"filename": "chart.png"},
            content=PNG,
            headers={**auth, "Content-Type": "image/png"},
        )
        assert answer.status_code == 201, answer.text
        digest = answer.json()["sha256"]
        got = client.get(f"/api/v1/incidents/{incident}/artifacts/{digest}", headers=auth)
        assert got.status_code == 200 and got.content == PNG
    assert not (tmp_path / "artifacts").exists()
    raw = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    stored = raw.get_object(Bucket="incidents", Key=f"artifacts/{digest}")["Body"].read()
    assert stored == PNG


def test_a_stored_export_goes_to_the_bucket(s3_endpoint: str, tmp_path: Path) -> None:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        artifacts_s3_bucket="incidents",
        artifacts_s3_endpoint_url=s3_endpoint,
    )
    container = build_container(settings)
    grant_access(container, "cora@example.com", roles=("incident.commander",))
    _, token = container.tokens.create("cora@example.com")
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(container)) as client:
        incident = client.post("/api/v1/incidents", json={"title": "x"}, headers=auth).json()["id"]
        answer = client.post(
            f"/api/v1/incidents/{incident}/timeline/export/artifacts",
            params={"format": "md"},
            headers=auth,
        )
        assert answer.status_code == 201, answer.text
        digest = answer.json()["sha256"]
        got = client.get(f"/api/v1/incidents/{incident}/artifacts/{digest}", headers=auth)
        assert got.status_code == 200 and got.headers["content-type"].startswith("text/markdown")
    raw = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    head = raw.head_object(Bucket="incidents", Key=f"artifacts/export-{digest}")
    assert head["ContentType"] == "text/markdown" and head["ContentLength"] == len(got.content)
    assert hashlib.sha256(got.content).hexdigest() == digest


def test_a_missing_bucket_is_a_503_naming_it(s3_endpoint: str, tmp_path: Path) -> None:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        artifacts_s3_bucket="no-such-bucket",
        artifacts_s3_endpoint_url=s3_endpoint,
    )
    store = S3ObjectStore("no-such-bucket", endpoint_url=s3_endpoint)
    for call in (lambda: store.exists("k"), lambda: store.get("k"), store.listing):
        with pytest.raises(ObjectStoreError, match="s3://no-such-bucket"):
            call()
    container = build_container(settings)
    grant_access(container, "cora@example.com", roles=("incident.commander",))
    _, token = container.tokens.create("cora@example.com")
    auth = {"Authorization": f"Bearer {token}"}
    with TestClient(create_app(container)) as client:
        incident = client.post("/api/v1/incidents", json={"title": "x"}, headers=auth).json()["id"]
        answer = client.post(
            f"/api/v1/incidents/{incident}/artifacts",
            params={"filename": "chart.png"},
            content=PNG,
            headers={**auth, "Content-Type": "image/png"},
        )
        assert answer.status_code == 503, answer.text
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert "s3://no-such-bucket" in answer.json()["detail"]
        listed = client.get(f"/api/v1/incidents/{incident}/artifacts", headers=auth)
        assert listed.status_code == 200 and listed.json()["artifacts"] == []


def test_a_policy_bundle_in_a_missing_bucket_stops_the_start_with_one_line(
    s3_endpoint: str, tmp_path: Path
) -> None:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        artifacts_s3_bucket="no-such-bucket",
        artifacts_s3_endpoint_url=s3_endpoint,
        policy_bundle="a" * 64,
    )
    with pytest.raises(ConfigError, match=r"IM_POLICY_BUNDLE: .*s3://no-such-bucket"):
        build_container(settings)
