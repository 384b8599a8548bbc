"""Shared pieces of the benchmarks: server process, raw HTTP client, event generator, stats.

The benchmark client, the server and the database share the machine's cores, so the
client is kept as cheap as possible: a minimal HTTP/1.1 keep-alive client on asyncio
(uvloop when available) with request bodies serialised before the clock starts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import psycopg

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PROTECTED_DATABASES = frozenset({"postgres", "test", "template0", "template1"})


def log(message: str) -> None:
    """Progress for humans goes to stderr; stdout carries only the JSON results."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def add_server_arguments(parser: argparse.ArgumentParser, default_database: str) -> None:
    """The options every benchmark shares: backend, server processes, database URL."""
    parser.add_argument("--backend", choices=["postgresql", "sqlite"], default="postgresql")
    parser.add_argument(
        "--workers", type=int, default=1, help="server processes (incidents serve --workers)"
    )
    parser.add_argument("--database-url", help=f"default: {default_database}")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --------------------------------------------------------------------------- databases


def _split_pg_url(url: str) -> tuple[str, str]:
    parsed = urllib.parse.urlsplit(url)
    name = parsed.path.lstrip("/")
    admin = urllib.parse.urlunsplit(parsed._replace(path="/postgres"))
    return admin, name


def recreate_pg_database(url: str) -> None:
    """Drop and create the database named by ``url`` (never a shared one)."""
    admin, name = _split_pg_url(url)
    if not name or name in PROTECTED_DATABASES:
        raise SystemExit(f"refusing to recreate database {name!r}: name a dedicated one")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def pg_database_exists(url: str) -> bool:
    """Whether the database named by ``url`` exists."""
    admin, name = _split_pg_url(url)
    with psycopg.connect(admin, autocommit=True) as conn:
        row = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
    return row is not None


def drop_pg_database(url: str) -> None:
    """Drop the benchmark database (refuses shared names)."""
    admin, name = _split_pg_url(url)
    if not name or name in PROTECTED_DATABASES:
        raise SystemExit(f"refusing to drop database {name!r}")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --------------------------------------------------------------------------- server


@dataclass
class Server:
    """The platform's HTTP server, run as a subprocess on a free port."""

    database_url: str
    port: int = field(default_factory=free_port)
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["IM_DATABASE_URL"] = self.database_url
        env.setdefault("IM_LOG_LEVEL", "warning")
        # Benchmarks measure the server, not its rate limits.
        env.setdefault("IM_RATE_LIMIT_TOKEN_PER_MINUTE", "0")
        env.setdefault("IM_RATE_LIMIT_WEBHOOK_PER_MINUTE", "0")
        env.update(self.env)
        return env

    def create_token(
        self,
        user: str = "bench@example.com",
        roles: tuple[str, ...] = ("timeline.reader", "timeline.writer", "timeline.exporter"),
    ) -> str:
        """A fresh API token, made with the admin CLI exactly as an operator would."""
        flags = [arg for role in roles for arg in ("--role", role)]
        out = subprocess.run(
            [str(BIN / "incidents"), "admin", "token", "create", "--user", user, *flags],
            env=self._env(),
            check=True,
            capture_output=True,
        )
        return out.stdout.decode().strip().splitlines()[0]

    def grant_attributes(self, user: str, attributes: tuple[str, ...]) -> None:
        """Give a user data-access attributes, through the platform's own directory."""
        from incidents.app import build_container
        from incidents.config import Settings
        from incidents.identity.directory import GrantKind, PrincipalType

        container = build_container(Settings(database_url=self.database_url))
        try:
            account = container.directory.ensure_user(user)
            for attribute in attributes:
                container.directory.grant(
                    PrincipalType.USER, account.user_id, GrantKind.ATTRIBUTE, attribute
                )
        finally:
            container.close()

    def start(self, timeout: float = 60.0) -> None:
        """Start the server and wait until /readyz answers."""
        self.process = subprocess.Popen(
            [str(BIN / "incidents"), "serve", "--port", str(self.port)],
            env=self._env(),
            stdout=sys.stderr,
            stderr=sys.stderr,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited with {self.process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock,
            ):
                sock.sendall(b"GET /readyz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
            time.sleep(0.1)
        raise RuntimeError("the server did not become ready")

    def stop(self) -> None:
        """Stop the server gracefully (SIGINT drains the group-commit writer)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid


# --------------------------------------------------------------------------- CPU accounting

_TICKS = os.sysconf("SC_CLK_TCK")


_LOCK_SERIES = (
    "timeline_append_lock_held_seconds_sum",
    "timeline_append_lock_wait_seconds_sum",
    "timeline_append_group_events_count",
    "timeline_append_group_events_sum",
)


def _lock_sample(base_url: str) -> tuple[float, ...]:
    # A new connection each time: the kernel hands it to any of the server's processes.
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    values = dict.fromkeys(_LOCK_SERIES, 0.0)
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in values:
            values[name] = float(value)
    return tuple(values[name] for name in _LOCK_SERIES)


def log_lock_totals(server: Server, workers: int, tries: int = 60) -> dict[str, float]:
    """The log-lock figures of ``/metrics`` summed over the server's processes.

    Each process keeps its own; a scrape reaches one of them, so this scrapes until it
    has seen ``workers`` different samples (a process that has appended nothing yet
    answers zeros, which add nothing). Take it while no request is running.
    """
    seen: set[tuple[float, ...]] = set()
    for _ in range(tries):
        seen.add(_lock_sample(server.base_url))
        if len(seen) >= workers:
            break
    totals = [sum(sample[i] for sample in seen) for i in range(len(_LOCK_SERIES))]
    return {
        "held_seconds": totals[0],
        "wait_seconds": totals[1],
        "transactions": totals[2],
        "events": totals[3],
    }


def log_lock_delta(
    before: dict[str, float], after: dict[str, float], wall: float
) -> dict[str, Any]:
    """What one phase did with the log lock: time held, per event and per second of wall."""
    held = after["held_seconds"] - before["held_seconds"]
    events = after["events"] - before["events"]
    transactions = after["transactions"] - before["transactions"]
    return {
        "transactions": int(transactions),
        "events_per_transaction": round(events / transactions, 1) if transactions else 0,
        "held_seconds": round(held, 3),
        "held_us_per_event": round(held / events * 1e6, 1) if events else 0,
        # Near 1: the lock was the limit (one holder at a time across all processes).
        "held_share_of_wall": round(held / wall, 3) if wall else 0,
        "wait_seconds": round(after["wait_seconds"] - before["wait_seconds"], 3),
    }


def _proc_cpu(pid: int) -> tuple[str, int, float]:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        raw = fh.read().decode()
    comm = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    # ppid is field 4 of stat; utime and stime are 14 and 15 (1, 11 and 12 after the comm).
    return comm, int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICKS


def cpu_snapshot(server_pid: int | None) -> dict[tuple[str, int], float]:
    """CPU seconds used so far by the server, this client, PostgreSQL, and everything else."""
    totals: dict[tuple[str, int], float] = {}
    own = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        try:
            comm, ppid, seconds = _proc_cpu(pid)
        except (OSError, ValueError, IndexError):
            continue
        # With --workers the server is a parent process and its worker children.
        if server_pid is not None and server_pid in (pid, ppid):
            totals[("server", pid)] = seconds
        elif pid == own:
            totals[("client", pid)] = seconds
        elif comm == "postgres":
            totals[("postgres", pid)] = seconds
        else:
            # Anything else busy on the machine distorts the figures: report it.
            totals[("other", pid)] = seconds
    return totals


def cpu_delta(
    before: dict[tuple[str, int], float], after: dict[tuple[str, int], float], wall: float
) -> dict[str, float]:
    """Cores used on average by each party over ``wall`` seconds.

    Per process, so a PostgreSQL backend that exits in between (its time is gone from
    /proc) counts as zero rather than as negative time.
    """
    used = {"server": 0.0, "client": 0.0, "postgres": 0.0, "other": 0.0}
    for key, seconds in after.items():
        used[key[0]] += seconds - before.get(key, 0.0)
    return {k: round(v / wall, 2) for k, v in used.items()} if wall > 0 else used


# --------------------------------------------------------------------------- HTTP client


@dataclass
class HttpResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class HttpConnection:
    """One HTTP/1.1 keep-alive connection, just enough protocol for the benchmarks.

    httpx costs several hundred microseconds of client CPU per request; with two cores
    shared with the server and the database, that would distort the single-event figures.
    """

    def __init__(self, host: str, port: int, token: str) -> None:
        self._host = host
        self._port = port
        self._auth = f"Authorization: Bearer {token}\r\n".encode()
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self._host, self._port, limit=1 << 22
            )
            sock = self._writer.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return self._reader, self._writer

    def request_head(self, method: str, path: str, content_type: str | None, length: int) -> bytes:
        """The request line and headers, to be built once and reused."""
        head = f"{method} {path} HTTP/1.1\r\nHost: bench\r\n".encode() + self._auth
        if content_type is not None:
            head += f"Content-Type: {content_type}\r\nContent-Length: {length}\r\n".encode()
        return head + b"\r\n"

    async def send(self, head: bytes, body: bytes = b"", *, sink: bool = False) -> HttpResponse:
        """Send one request and read the whole response (``sink`` discards the body)."""
        reader, writer = await self._connect()
        writer.write(head + body if len(body) < 65536 else head)
        if len(body) >= 65536:
            writer.write(body)
            await writer.drain()
        status_line = await reader.readuntil(b"\r\n")
        status = int(status_line.split(b" ", 2)[1])
        headers: dict[str, str] = {}
        while True:
            line = await reader.readuntil(b"\r\n")
            if line == b"\r\n":
                break
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        chunks: list[bytes] = []
        size = 0
        if "content-length" in headers:
            data = await reader.readexactly(int(headers["content-length"]))
            size = len(data)
            if not sink:
                chunks.append(data)
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                n = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
                if n == 0:
                    await reader.readuntil(b"\r\n")
                    break
                data = await reader.readexactly(n + 2)
                size += n
                if not sink:
                    chunks.append(data[:-2])
        if headers.get("connection", "").lower() == "close":
            await self.close()
        response = HttpResponse(status, headers, b"".join(chunks))
        response.headers["x-bench-body-bytes"] = str(size)
        return response

    async def get(self, path: str, *, sink: bool = False) -> HttpResponse:
        return await self.send(self.request_head("GET", path, None, 0), sink=sink)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(Exception):
                await self._writer.wait_closed()
        self._reader = self._writer = None


def install_uvloop() -> None:
    """Use uvloop when installed: a cheaper client leaves more CPU to the server."""
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


# --------------------------------------------------------------------------- events

_SERVICES = ["checkout", "payments", "search", "auth", "inventory", "shipping", "api-gateway"]
_ENVS = ["prod", "staging"]
_REGIONS = ["eu-west-1", "us-east-1", "ap-south-1"]
_ACTORS = ["alice@example.com", "bob@example.com", "carol@example.com", "dave@example.com"]
_ALERTS = [
    "HighErrorRate",
    "LatencyP99Breached",
    "PodCrashLooping",
    "DiskAlmostFull",
    "CertificateExpiring",
]
_TEXT = (
    "the upstream dependency returned elevated error rates after the deploy and the "
    "on-call engineer rolled back the canary while customers saw intermittent timeouts "
    "on checkout requests originating from the mobile clients in several regions"
)
_WORDS = _TEXT.split()


def _rfc3339(micros: int) -> str:
    seconds, us = divmod(micros, 1_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{us:06d}Z"


def make_event(
    run: str,
    seq: int,
    incident: str,
    time_us: int,
    rng: random.Random,
    note_share: float = 0.3,
    sensitive_share: float = 0.0,
) -> dict[str, Any]:
    """A realistic event of 300-500 bytes: an alert firing or a responder's note.

    With ``sensitive_share``, that share of events is restricted (``im.visibility``) and
    as many again carry personal data: a tagged path and a field the policy's name
    rules classify, so readers without access see them redacted.
    """
    service = rng.choice(_SERVICES)
    words = rng.randint(4, 10)
    start = rng.randint(0, len(_WORDS) - words)
    description = " ".join(_WORDS[start : start + words])
    event: dict[str, Any] = {
        "specversion": "1.0",
        "id": f"{run}-{seq}",
        "subject": f"incident/{incident}",
        "time": _rfc3339(time_us),
        "datacontenttype": "application/json",
    }
    if rng.random() < note_share:
        event["type"] = "im.note.add"
        event["source"] = "//bench/slack"
        event["im.actor"] = rng.choice(_ACTORS)
        event["im.origin_id"] = f"slack-{run}-{seq}"
        event["data"] = {
            "title": f"Update on {service}",
            "description": description,
            "service": service,
            "labels": {"channel": f"#inc-{incident.lower()}", "env": rng.choice(_ENVS)},
        }
    else:
        alert = rng.choice(_ALERTS)
        event["type"] = "im.alert.trigger"
        event["source"] = "//bench/prometheus"
        event["im.actor"] = "alertmanager"
        event["im.origin_id"] = f"am-{run}-{seq}"
        event["data"] = {
            "title": f"{alert} on {service}",
            "description": description,
            "service": service,
            "labels": {
                "alertname": alert,
                "severity": rng.choice(["critical", "warning"]),
                "region": rng.choice(_REGIONS),
            },
        }
    roll = rng.random()
    if roll < sensitive_share:
        event["im.visibility"] = "restricted"
    elif roll < 2 * sensitive_share:
        event["im.data_class"] = {"pii": ["customer.name"]}
        event["data"]["customer"] = {"name": rng.choice(_ACTORS), "tier": "gold"}
        event["data"]["reporter_email"] = rng.choice(_ACTORS)
    return event


def chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    """Consecutive slices of ``items`` of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


# --------------------------------------------------------------------------- statistics


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values."""
    if not sorted_values:
        return float("nan")
    rank = max(0, min(len(sorted_values) - 1, round(q / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


def latency_summary(seconds: list[float]) -> dict[str, float]:
    """p50/p95/p99/max in milliseconds."""
    values = sorted(seconds)
    return {
        "n": len(values),
        "p50_ms": round(percentile(values, 50) * 1000, 2),
        "p95_ms": round(percentile(values, 95) * 1000, 2),
        "p99_ms": round(percentile(values, 99) * 1000, 2),
        "max_ms": round(values[-1] * 1000, 2) if values else float("nan"),
        "mean_ms": round(sum(values) / len(values) * 1000, 2) if values else float("nan"),
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    revision = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "cpus": os.cpu_count(),
        "git_revision": revision + ("+uncommitted-src-changes" if dirty else ""),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "note": "client, server and database share the same cores",
    }
