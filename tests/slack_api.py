"""A local HTTP server that behaves like Slack's Web API, for tests and benchmarks.

It follows the documented shapes: every method answers HTTP 200 with ``{"ok": true,
...}`` or ``{"ok": false, "error": "<code>"}``; a rate limit answers HTTP 429 with
``Retry-After``; the bot token is checked on every call (``not_authed``,
``invalid_auth``). Channels, members, pins, messages and users are kept in memory so
tests can assert what the platform did. ``fail(method, error, times, retry_after)``
injects errors. ``response_url`` posts (``/response/<id>``) are recorded too.
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

BOT_USER = "UBOT00001"
_NAME = re.compile(r"^[a-z0-9_-]{1,80}$")


@dataclass
class FakeChannel:
    id: str
    name: str
    is_private: bool
    topic: str = ""
    members: set[str] = field(default_factory=set)
    pins: list[str] = field(default_factory=list)
    archived: bool = False


@dataclass
class Posted:
    channel: str
    ts: str
    text: str
    thread_ts: str | None


class FakeSlack:
    """The server's state, its error injection, and the server itself."""

    def __init__(self, token: str = "xoxb-test-token-0001") -> None:
        self.token = token
        self.channels: dict[str, FakeChannel] = {}
        self.messages: list[Posted] = []
        self.users: dict[str, str] = {}  # user id -> email
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.responses: list[dict[str, Any]] = []
        self._faults: dict[str, list[tuple[str, float | None]]] = {}
        self._ids = itertools.count(1)
        self._ts = itertools.count(1)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/api/"

    @property
    def response_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/response/1"

    def start(self) -> FakeSlack:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- test helpers -----------------------------------------------------------------

    def add_user(self, user_id: str, email: str | None) -> None:
        self.users[user_id] = email or ""

    def add_channel(self, name: str, *, private: bool = False, archived: bool = False) -> str:
        cid = f"C{next(self._ids):08d}"
        self.channels[cid] = FakeChannel(cid, name, private, archived=archived)
        return cid

    def fail(
        self, method: str, error: str, times: int = 1, retry_after: float | None = None
    ) -> None:
        self._faults.setdefault(method, []).extend([(error, retry_after)] * times)

    def by_name(self, name: str) -> FakeChannel | None:
        return next((c for c in self.channels.values() if c.name == name), None)

    def count(self, method: str) -> int:
        return sum(1 for m, _ in self.calls if m == method)

    def texts(self, channel: str) -> list[str]:
        return [m.text for m in self.messages if m.channel == channel]

    # --- the Web API ------------------------------------------------------------------

    def call(
        self, method: str, params: dict[str, Any], auth: str | None
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        with self.lock:
            self.calls.append((method, params))
            token = (auth or "").removeprefix("Bearer ").strip() or params.get("token")
            if not token:
                return 200, {"ok": False, "error": "not_authed"}, {}
            if token != self.token:
                return 200, {"ok": False, "error": "invalid_auth"}, {}
            faults = self._faults.get(method)
            if faults:
                error, retry_after = faults.pop(0)
                if error == "ratelimited":
                    headers = {"Retry-After": str(int(retry_after or 1))}
                    return 429, {"ok": False, "error": "ratelimited"}, headers
                return 200, {"ok": False, "error": error}, {}
            handler = getattr(self, "_" + method.replace(".", "_"), None)
            if handler is None:
                return 200, {"ok": False, "error": "unknown_method"}, {}
            return 200, handler(params), {}

    def _channel(self, params: dict[str, Any]) -> FakeChannel | None:
        return self.channels.get(str(params.get("channel", "")))

    def _conversations_create(self, p: dict[str, Any]) -> dict[str, Any]:
        name = str(p.get("name", ""))
        if not _NAME.fullmatch(name):
            return {"ok": False, "error": "invalid_name_specials"}
        if self.by_name(name) is not None:
            return {"ok": False, "error": "name_taken"}
        private = str(p.get("is_private", "false")).lower() == "true"
        cid = self.add_channel(name, private=private)
        self.channels[cid].members.add(BOT_USER)
        return {"ok": True, "channel": {"id": cid, "name": name, "is_private": private}}

    def _conversations_list(self, p: dict[str, Any]) -> dict[str, Any]:
        limit = int(p.get("limit", 100))
        start = int(p.get("cursor") or 0)
        exclude = str(p.get("exclude_archived", "false")).lower() == "true"
        listed = [c for c in self.channels.values() if not (exclude and c.archived)]
        page = listed[start : start + limit]
        more = start + limit < len(listed)
        return {
            "ok": True,
            "channels": [
                {"id": c.id, "name": c.name, "is_private": c.is_private, "is_archived": c.archived}
                for c in page
            ],
            "response_metadata": {"next_cursor": str(start + limit) if more else ""},
        }

    def _member_check(self, channel: FakeChannel | None) -> dict[str, Any] | None:
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        if BOT_USER not in channel.members:
            return {"ok": False, "error": "not_in_channel"}
        return None

    def _conversations_setTopic(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(p)
        refused = self._member_check(channel)
        if refused:
            return refused
        assert channel is not None
        channel.topic = str(p.get("topic", ""))[:250]
        return {"ok": True, "channel": {"id": channel.id, "topic": {"value": channel.topic}}}

    def _conversations_join(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(p)
        if channel is None:
            return {"ok": False, "error": "channel_not_found"}
        channel.members.add(BOT_USER)
        return {"ok": True, "channel": {"id": channel.id}}

    def _conversations_invite(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(p)
        refused = self._member_check(channel)
        if refused:
            return refused
        assert channel is not None
        users = [u for u in str(p.get("users", "")).split(",") if u]
        if any(u not in self.users for u in users):
            return {"ok": False, "error": "user_not_found"}
        if users and all(u in channel.members for u in users):
            return {"ok": False, "error": "already_in_channel"}
        channel.members.update(users)
        return {"ok": True, "channel": {"id": channel.id}}

    def _chat_postMessage(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(p)
        refused = self._member_check(channel)
        if refused:
            return refused
        assert channel is not None
        ts = f"{1_700_000_000 + next(self._ts)}.000100"
        thread = p.get("thread_ts") or None
        self.messages.append(Posted(channel.id, ts, str(p.get("text", "")), thread))
        return {"ok": True, "channel": channel.id, "ts": ts}

    def _pins_add(self, p: dict[str, Any]) -> dict[str, Any]:
        channel = self._channel(p)
        refused = self._member_check(channel)
        if refused:
            return refused
        assert channel is not None
        ts = str(p.get("timestamp", ""))
        if not any(m.ts == ts and m.channel == channel.id for m in self.messages):
            return {"ok": False, "error": "message_not_found"}
        if ts in channel.pins:
            return {"ok": False, "error": "already_pinned"}
        channel.pins.append(ts)
        return {"ok": True}

    def _users_lookupByEmail(self, p: dict[str, Any]) -> dict[str, Any]:
        email = str(p.get("email", "")).lower()
        for uid, known in self.users.items():
            if known and known.lower() == email:
                return {"ok": True, "user": {"id": uid, "profile": {"email": known}}}
        return {"ok": False, "error": "users_not_found"}

    def _users_info(self, p: dict[str, Any]) -> dict[str, Any]:
        uid = str(p.get("user", ""))
        if uid not in self.users:
            return {"ok": False, "error": "user_not_found"}
        profile = {"email": self.users[uid]} if self.users[uid] else {}
        return {"ok": True, "user": {"id": uid, "profile": profile}}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                parts = urlsplit(self.path)
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                if parts.path.startswith("/response/"):
                    with fake.lock:
                        fake.responses.append(json.loads(raw or b"{}"))
                    self._send(200, b"ok", "text/plain", {})
                    return
                method = parts.path.removeprefix("/api/")
                ctype = self.headers.get("content-type", "")
                if "json" in ctype:
                    params: dict[str, Any] = json.loads(raw or b"{}")
                else:
                    params = {k: v[0] for k, v in parse_qs(raw.decode()).items()}
                params.update({k: v[0] for k, v in parse_qs(parts.query).items()})
                status, body, headers = fake.call(method, params, self.headers.get("authorization"))
                self._send(status, json.dumps(body).encode(), "application/json", headers)

            do_GET = do_POST

            def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

        return Handler


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Slack's v0 request signature headers for ``body``."""
    ts = str(int(time.time()) if timestamp is None else timestamp)
    base = b"v0:" + ts.encode() + b":" + body
    digest = hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()
    return {
        "X-Slack-Request-Timestamp": ts,
        "X-Slack-Signature": f"v0={digest}",
        "Content-Type": "application/x-www-form-urlencoded",
    }
