"""``incidents serve --workers N``: each process listens on a socket of its own.

With one shared socket, the first idle process accepted every connection waiting at
that moment, so clients that connect at once (a load balancer, a burst of stream
subscribers) could all land on one process. On Linux each process now has its own
``SO_REUSEPORT`` socket and the kernel spreads connections over them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import CONSOLE_SCRIPT, free_port

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="reads /proc; SO_REUSEPORT balances on Linux"
)

_LISTEN, _ESTABLISHED = "0A", "01"


def _env(database_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IM_")}
    env.update({"IM_DATABASE_URL": database_url, "IM_LOG_LEVEL": "warning"})
    return env


def _sockets(port: int, state: str) -> set[int]:
    """Inodes of the TCP sockets on local ``port`` in ``state`` (from /proc/net)."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            next(f)
            for line in f:
                fields = line.split()
                local_port = int(fields[1].rsplit(":", 1)[1], 16)
                if local_port == port and fields[3] == state:
                    inodes.add(int(fields[9]))
    return inodes


def _owners(inodes: set[int]) -> Counter[int]:
    """Which processes hold those sockets: pid -> how many."""
    owners: Counter[int] = Counter()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and int(target[8:-1]) in inodes:
                owners[int(pid)] += 1
    return owners


@pytest.fixture
def server(sqlite_url: str, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(CONSOLE_SCRIPT), "serve", "--workers", "2", "--port", str(port)],
            env=_env(sqlite_url),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while len(_sockets(port, _LISTEN)) < 2:
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the workers did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        while httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=5).status_code != 200:
            time.sleep(0.1)
        yield process, port
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def test_each_worker_listens_on_its_own_socket_and_gets_connections(
    server: tuple[subprocess.Popen[bytes], int],
) -> None:
    _, port = server
    listeners = _owners(_sockets(port, _LISTEN))
    assert len(listeners) == 2 and set(listeners.values()) == {1}
    # Sixteen clients connect at once, as a load balancer's pool does.
    clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(16)]
    try:
        for client in clients:
            client.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        for client in clients:
            assert client.recv(4096).startswith(b"HTTP/1.1 200")
        served = _owners(_sockets(port, _ESTABLISHED)) - Counter({os.getpid(): 16})
        # Every connection is held by a worker, and both workers hold some (all 16 on
        # one socket would happen by chance once in 32,768 runs).
        assert sum(served.values()) == 16
        assert set(served) == set(listeners)
    finally:
        for client in clients:
            client.close()


def _serve_beside(listener: socket.socket, database_url: str) -> tuple[int, Any]:
    """Start ``serve --workers 2`` on the port ``listener`` already listens on."""
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port: int = listener.getsockname()[1]
    done = subprocess.run(
        [str(CONSOLE_SCRIPT), "serve", "--workers", "2", "--port", str(port)],
        env=_env(database_url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    return port, done


def test_a_port_in_use_is_one_line_and_non_zero(sqlite_url: str) -> None:
    with socket.socket() as taken:
        port, done = _serve_beside(taken, sqlite_url)
    assert done.returncode != 0
    assert f"error: cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_shared_by_another_server_is_refused(sqlite_url: str) -> None:
    # Another server whose processes share their port (SO_REUSEPORT) would otherwise
    # take half of the connections without anyone noticing.
    with socket.socket() as other:
        other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        port, done = _serve_beside(other, sqlite_url)
    assert done.returncode != 0
    assert f"error: cannot listen on 127.0.0.1:{port}" in done.stderr
