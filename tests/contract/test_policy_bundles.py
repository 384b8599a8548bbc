"""Policy bundles in the object store: `incidents admin policy-bundle store|list`, and a
server that loads one by digest (IM_POLICY_BUNDLE), on the local directory and on S3
(moto in server mode)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from incidents.app import build_container, build_policy_bundles
from incidents.config import ConfigError, Settings
from incidents.policy.bundle import MAX_FILE_BYTES, MAX_TOTAL_BYTES, BundleError, rego_files
from incidents.policy.decision_point import SHIPPED_POLICIES
from tests.conftest import CONSOLE_SCRIPT, make_settings
from tests.contract.test_stored_backups import object_env  # noqa: F401 (a fixture)

_STORED = re.compile(r"stored policy bundle ([0-9a-f]{64}) ")


def _bundle(files: dict[str, bytes], *, gzip: bool = True) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz" if gzip else "w") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def _shipped(marker: str) -> bytes:
    text = (SHIPPED_POLICIES / "timeline.rego").read_text()
    return text.replace('marker := "[REDACTED]"', f'marker := "{marker}"').encode()


def _admin(env: dict[str, str], database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    merged = {k: v for k, v in os.environ.items() if not k.startswith(("IM_", "AWS_"))}
    merged.update(env, IM_DATABASE_URL=database_url)
    done = subprocess.run(
        [str(CONSOLE_SCRIPT), "admin", "policy-bundle", *args],
        env=merged,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture
def aws(object_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:  # noqa: F811
    """The object store's environment; its S3 credentials also set in this process."""
    for key, value in object_env.items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    return object_env


def _settings_of(env: dict[str, str], database_url: str, **more: str) -> Settings:
    fields = {
        "artifacts_dir": env.get("IM_ARTIFACTS_DIR", ""),
        "artifacts_s3_bucket": env.get("IM_ARTIFACTS_S3_BUCKET", ""),
        "artifacts_s3_endpoint_url": env.get("IM_ARTIFACTS_S3_ENDPOINT_URL", ""),
    }
    return make_settings(database_url, **{k: v for k, v in fields.items() if v}, **more)


def test_a_stored_bundle_is_what_the_server_decides_with(
    aws: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    if "IM_ARTIFACTS_DIR" not in aws:
        # With a bucket, bundles are unpacked beside the (local) artifacts directory.
        monkeypatch.chdir(tmp_path)
    path = tmp_path / "bundle.tar.gz"
    path.write_bytes(_bundle({".manifest": b"{}", "policy/authz.rego": _shipped("[FROM-BUNDLE]")}))
    assert "no stored policy bundles" in _admin(aws, database_url, "list").stderr
    stored = _admin(aws, database_url, "store", str(path))
    assert stored.returncode == 0, stored.stderr
    found = _STORED.search(stored.stdout)
    assert found is not None, stored.stdout
    digest = found.group(1)
    assert f"IM_POLICY_BUNDLE={digest}" in stored.stdout
    assert digest in _admin(aws, database_url, "list").stdout

    container = build_container(_settings_of(aws, database_url, policy_bundle=digest))
    try:
        container.directory.ensure_user("ann@example.com")
        assert container.policy.decide("ann@example.com").marker == "[FROM-BUNDLE]"
    finally:
        container.close()
    # Without the bundle, the shipped policy decides.
    plain = build_container(_settings_of(aws, database_url))
    try:
        plain.directory.ensure_user("ann@example.com")
        assert plain.policy.decide("ann@example.com").marker == "[REDACTED]"
    finally:
        plain.close()
    with pytest.raises(ConfigError, match="no stored policy bundle"):
        build_container(_settings_of(aws, database_url, policy_bundle="0" * 64))


def test_a_bad_bundle_is_refused_with_one_line(aws: dict[str, str], tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    cases = {
        "not-gzip": (_bundle({"a.rego": _shipped("x")}, gzip=False), "gzip"),
        "broken": (_bundle({"a.rego": b"package incidents.authz\n this is not rego"}), "cannot"),
        "no-decision": (_bundle({"a.rego": b"package other\n\nx := 1\n"}), "decision"),
        "data": (_bundle({"a.rego": _shipped("x"), "data.json": b"{}"}), "only .rego"),
    }
    for name, (data, needle) in cases.items():
        path = tmp_path / f"{name}.tar.gz"
        path.write_bytes(data)
        done = _admin(aws, database_url, "store", str(path))
        assert done.returncode == 1, (name, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
        assert needle in lines[0], (name, lines[0])


def test_bundle_contents_are_checked() -> None:
    assert set(rego_files(_bundle({"x/a.rego": b"package a", ".manifest": b"{}"}))) == {"a.rego"}
    with pytest.raises(BundleError, match="same name"):
        rego_files(_bundle({"x/a.rego": b"package a", "y/a.rego": b"package b"}))
    with pytest.raises(BundleError, match=r"no \.rego"):
        rego_files(_bundle({".manifest": b"{}"}))
    with pytest.raises(BundleError, match="gzip"):
        rego_files(b"plain text")


def test_files_beside_the_store_never_change_the_loaded_policy(tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    objects = tmp_path / "objects"
    settings = make_settings(database_url, artifacts_dir=str(objects))
    stored = build_policy_bundles(settings).put(_bundle({"authz.rego": _shipped("[FROM-BUNDLE]")}))
    # Someone who can write to the artifacts' directory drops policies where bundles
    # used to be unpacked, and edits any .rego they find there.
    planted = objects / "policy-bundles" / stored.key
    planted.mkdir(parents=True)
    (planted / "authz.rego").write_bytes(_shipped("[TAMPERED]"))
    for _start in range(2):
        container = build_container(replace(settings, policy_bundle=stored.key))
        try:
            container.directory.ensure_user("ann@example.com")
            assert container.policy.decide("ann@example.com").marker == "[FROM-BUNDLE]"
            for path in objects.rglob("*.rego"):
                path.write_bytes(_shipped("[TAMPERED]"))
            container.policy.invalidate()
            assert container.policy.decide("ann@example.com").marker == "[FROM-BUNDLE]"
        finally:
            container.close()


def _bomb(members: list[tuple[str, int]]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w:gz") as archive:
        for name, size in members:
            info = tarfile.TarInfo(name)
            info.size = size
            archive.addfile(info, io.BytesIO(bytes(size)))
    return out.getvalue()


def test_an_archive_that_unpacks_too_large_is_refused() -> None:
    one_big = _bomb([("authz.rego", 2 * MAX_FILE_BYTES)])
    assert len(one_big) < 64 * 1024
    with pytest.raises(BundleError, match=r"authz\.rego: \d+ bytes unpacked; the limit"):
        rego_files(one_big)
    many = _bomb([(f"p{i}.rego", MAX_FILE_BYTES) for i in range(MAX_TOTAL_BYTES // MAX_FILE_BYTES)])
    many_more = _bomb(
        [(f"p{i}.rego", MAX_FILE_BYTES) for i in range(MAX_TOTAL_BYTES // MAX_FILE_BYTES + 1)]
    )
    assert len(rego_files(many)) == MAX_TOTAL_BYTES // MAX_FILE_BYTES  # within the caps
    with pytest.raises(BundleError, match=f"over {MAX_TOTAL_BYTES} bytes unpacked"):
        rego_files(many_more)


_GOOD = _bundle({".manifest": b"{}", "policy/authz.rego": _shipped("[FROM-BUNDLE]")})


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, len(_GOOD) - 1), st.integers(1, 255)), min_size=1))
def test_a_damaged_bundle_is_only_ever_a_bundle_error(flips: list[tuple[int, int]]) -> None:
    damaged = bytearray(_GOOD)
    for index, mask in flips:
        damaged[index] ^= mask
    try:
        files = rego_files(bytes(damaged))
    except BundleError as exc:
        assert "\n" not in str(exc)
    else:
        assert all(isinstance(text, str) for text in files.values())
