"""Backups kept in the object store: `incidents admin backup --to-artifacts`,
`backup-list` and `restore --from-artifacts`, on the local directory and on S3 (moto
in server mode), through the installed command."""

from __future__ import annotations

import os
import re
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.conftest import CONSOLE_SCRIPT, Fresh
from tests.contract.test_backup import _populate, _tables

_DIGEST = re.compile(r"stored the backup as ([0-9a-f]{64}) ")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(params=["local", "s3"])
def object_env(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The settings (as environment) of the artifacts' store: a directory, or a bucket."""
    if request.param == "local":
        yield {"IM_ARTIFACTS_DIR": str(tmp_path / "objects")}
        return
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    credentials = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket="incidents")
    try:
        yield {
            **credentials,
            "IM_ARTIFACTS_S3_BUCKET": "incidents",
            "IM_ARTIFACTS_S3_ENDPOINT_URL": endpoint,
        }
    finally:
        server.stop()


def _admin(
    database_url: str, extra: dict[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("IM_", "AWS_"))}
    env.update(extra, IM_DATABASE_URL=database_url)
    done = subprocess.run(
        [str(CONSOLE_SCRIPT), "admin", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def _one_line_error(done: subprocess.CompletedProcess[str], needle: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert needle in lines[0], lines[0]


def test_a_backup_stored_in_the_object_store_lists_and_restores(
    fresh: Fresh, object_env: dict[str, str]
) -> None:
    source = fresh("sqlite")
    _populate(source)
    assert "no stored backups" in _admin(source, object_env, "backup-list").stderr
    stored = _admin(source, object_env, "backup", "--to-artifacts")
    assert stored.returncode == 0, stored.stderr
    found = _DIGEST.search(stored.stdout)
    assert found is not None, stored.stdout
    digest = found.group(1)
    listed = _admin(source, object_env, "backup-list")
    assert listed.returncode == 0 and digest in listed.stdout

    target = fresh("postgresql")
    restored = _admin(target, object_env, "restore", "--from-artifacts", digest)
    assert restored.returncode == 0, restored.stderr
    assert "every hash chain verified" in restored.stdout
    assert f"restored stored backup {digest} into" in restored.stdout
    assert _tables(target) == _tables(source)

    _one_line_error(
        _admin(fresh("sqlite"), object_env, "restore", "--from-artifacts", "0" * 64),
        "no stored backup",
    )
    _one_line_error(
        _admin(fresh("sqlite"), object_env, "restore", "--from-artifacts", "nope"),
        "not a SHA-256",
    )
    _one_line_error(_admin(source, object_env, "backup", "--to-artifacts", "-o", "x.tar"), "either")
    _one_line_error(_admin(source, object_env, "backup"), "either")
    small = {**object_env, "IM_ARTIFACTS_BACKUP_MAX_BYTES": "1000"}
    _one_line_error(
        _admin(source, small, "backup", "--to-artifacts"), "IM_ARTIFACTS_BACKUP_MAX_BYTES"
    )


def test_a_damaged_stored_backup_is_refused(fresh: Fresh, tmp_path: Path) -> None:
    env = {"IM_ARTIFACTS_DIR": str(tmp_path / "objects")}
    source = fresh("sqlite")
    _populate(source)
    found = _DIGEST.search(_admin(source, env, "backup", "--to-artifacts").stdout)
    assert found is not None
    digest = found.group(1)
    kept = tmp_path / "objects" / "backups" / digest[:2] / digest
    kept.write_bytes(kept.read_bytes()[:-10] + b"0" * 10)
    target = fresh("sqlite")
    _one_line_error(_admin(target, env, "restore", "--from-artifacts", digest), "damaged")
    assert "no schema" in _admin(target, env, "backup", "-o", str(tmp_path / "t.tar")).stderr


@pytest.fixture
def missing_bucket() -> Iterator[dict[str, str]]:
    """The settings of a bucket that does not exist on a running S3 server."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing-secret-key",
            "IM_ARTIFACTS_S3_BUCKET": "no-such-bucket",
            "IM_ARTIFACTS_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        }
    finally:
        server.stop()


def test_a_missing_bucket_is_one_line_naming_it(
    fresh: Fresh, missing_bucket: dict[str, str]
) -> None:
    source = fresh("sqlite")
    _populate(source)
    for args in (
        ("backup-list",),
        ("backup", "--to-artifacts"),
        ("restore", "--from-artifacts", "0" * 64),
        ("policy-bundle", "list"),
    ):
        done = _admin(fresh("sqlite") if args[0] == "restore" else source, missing_bucket, *args)
        _one_line_error(done, "s3://no-such-bucket")
        # A missing bucket is not a missing backup, and no credential is shown.
        assert "no stored backup" not in done.stderr, args
        assert "testing-secret-key" not in done.stderr, args


def test_an_unusable_directory_is_one_line_naming_it(fresh: Fresh, tmp_path: Path) -> None:
    # Not a directory at all (permissions would not stop the root user tests may run as).
    blocked = tmp_path / "objects"
    blocked.write_text("a file where the directory should be")
    env = {"IM_ARTIFACTS_DIR": str(blocked)}
    source = fresh("sqlite")
    _populate(source)
    _one_line_error(_admin(source, env, "backup", "--to-artifacts"), str(blocked))
    _one_line_error(
        _admin(fresh("sqlite"), env, "restore", "--from-artifacts", "0" * 64), str(blocked)
    )
