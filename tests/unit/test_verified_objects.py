"""Content-addressed reads: bytes come back only if they still hash to their digest."""

from __future__ import annotations

from pathlib import Path

import pytest

from incidents.artifacts.content import content_key
from incidents.artifacts.local import LocalDirectoryStore
from incidents.artifacts.verified import DamagedObject, fetch_verified, read_verified


def test_verified_reads_serve_only_the_bytes_of_the_digest(tmp_path: Path) -> None:
    store = LocalDirectoryStore(tmp_path / "objects")
    data = b"policy bytes"
    digest = content_key(data)
    assert read_verified(store, digest, digest) is None
    assert not fetch_verified(store, digest, digest, tmp_path / "out")
    store.put(digest, data, "text/plain")
    assert read_verified(store, digest, digest) == data
    assert fetch_verified(store, digest, digest, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == data

    (tmp_path / "objects" / digest[:2] / digest).write_bytes(b"policy bytez")
    with pytest.raises(DamagedObject, match=digest):
        read_verified(store, digest, digest)
    with pytest.raises(DamagedObject):
        fetch_verified(store, digest, digest, tmp_path / "again")
    assert not (tmp_path / "again").exists()
