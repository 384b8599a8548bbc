"""Where the CLI finds its server and token: ``IM_SERVER``/``IM_TOKEN`` or the login file."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from incidents.config import DEFAULT_SERVER


def credentials_path() -> Path:
    """``$XDG_CONFIG_HOME/incidents/credentials.json`` (``~/.config`` by default)."""
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "incidents" / "credentials.json"


@dataclass(frozen=True, slots=True)
class Credentials:
    server: str
    token: str | None


def load_credentials() -> Credentials:
    """Environment first, then the file written by ``incidents login``, then defaults."""
    saved: dict[str, str] = {}
    path = credentials_path()
    if path.exists():
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            saved = {}
    server = os.environ.get("IM_SERVER") or saved.get("server") or DEFAULT_SERVER
    token = os.environ.get("IM_TOKEN") or saved.get("token")
    return Credentials(server.rstrip("/"), token)


def save_credentials(server: str, token: str) -> Path:
    """Write the login file readable by the owner only."""
    path = credentials_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"server": server.rstrip("/"), "token": token}, fh)
    os.chmod(path, 0o600)
    return path
