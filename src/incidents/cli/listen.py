"""Listening sockets for ``incidents serve --workers N``: one per process.

With one socket shared by every process, the first idle process accepts every
connection waiting at that moment (an event loop takes all it can), so a client that
opens its connections at once (a load balancer, a benchmark, a burst of stream
subscribers) may land them all on one process while the others idle. Where the
platform has ``SO_REUSEPORT``, each process listens on a socket of its own, bound to
the same address, and the kernel spreads new connections over them.
"""

from __future__ import annotations

import socket
import sys
from typing import Any

# uvicorn's exit status for a worker that cannot start: its supervisor then stops
# instead of restarting the worker again and again.
_STARTUP_FAILURE = 3


def can_reuse_port() -> bool:
    """Whether this platform spreads connections over sockets sharing a port (Linux)."""
    return hasattr(socket, "SO_REUSEPORT") and sys.platform.startswith("linux")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def _bound(host: str, port: int, *, share: bool) -> socket.socket:
    """A TCP socket bound to ``host:port``; with ``share``, one of several sharing it."""
    sock = socket.socket(_family(host), socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if share:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def check_port(host: str, port: int) -> None:
    """Raise OSError now if anything listens on ``host:port``.

    Bound without ``SO_REUSEPORT``, so a server that shares its port (another
    ``incidents serve --workers``) is found too, not joined.
    """
    _bound(host, port, share=False).close()


def _listening(host: str, port: int, backlog: int) -> list[socket.socket]:
    # Runs in the worker process, as its socket list is unpickled.
    try:
        sock = _bound(host, port, share=True)
    except OSError as exc:
        print(f"error: cannot listen on {host}:{port}: {exc}", file=sys.stderr)
        sys.exit(_STARTUP_FAILURE)
    sock.listen(backlog)
    return [sock]


class PerProcessSockets(list[socket.socket]):
    """The socket list handed to each worker process: empty here, and in the worker
    (where it arrives pickled) a socket of its own, listening on ``host:port``.

    uvicorn's supervisor passes one list to every worker it starts, restarts
    included, so each gets its own socket without changing the supervisor.
    """

    def __init__(self, host: str, port: int, backlog: int) -> None:
        super().__init__()
        self.host, self.port, self.backlog = host, port, backlog

    def __reduce__(self) -> tuple[Any, ...]:
        return (_listening, (self.host, self.port, self.backlog))
