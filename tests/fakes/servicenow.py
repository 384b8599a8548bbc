"""A local ServiceNow Table API for tests: it refuses what the vendor refuses.

Follows the documented ``/api/now/table/incident`` behaviour: basic auth (401 with
the ``{"error": {...}, "status": "failure"}`` envelope), ``{"result": ...}`` answers,
``sys_id``/``number``/``sys_mod_count``/``sys_updated_on`` (seconds, UTC), encoded
queries (``a=b^cISNOTEMPTY^ORd=e^sys_updated_on>=...^ORDERBYx``), paging by
``sysparm_offset``, ``sys_user`` records (``GET /api/now/table/sys_user`` by encoded
query with ``sysparm_fields``, ``GET .../sys_user/{sys_id}``) with ``assigned_to`` a
reference answered as ``{"link": ..., "value": sys_id}``, a data policy that refuses a
resolve (state 6 or 7) without ``close_code`` and ``close_notes`` (403), 404 for an
unknown record, work notes as a journal, and 429 with Retry-After when told to
rate-limit.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

TABLE = "/api/now/table/incident"
USERS = "/api/now/table/sys_user"
JOURNAL = "/api/now/table/sys_journal_field"
FORMAT = "%Y-%m-%d %H:%M:%S"
STATES = {"1", "2", "3", "6", "7", "8"}
CHOICES = {"impact": {"1", "2", "3"}, "urgency": {"1", "2", "3"}}


def _fmt(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime(FORMAT)


class FakeServiceNow:
    """The instance's state, shared with the request handler threads."""

    def __init__(self, username: str = "svc-incidents", password: str = "s3cret-pass") -> None:
        self.username = username
        self.password = password
        self.records: dict[str, dict[str, Any]] = {}
        self.journal: dict[str, list[dict[str, str]]] = {}
        self.users: dict[str, dict[str, str]] = {}
        self.lock = threading.Lock()
        self.counter = 10000
        self.requests: list[tuple[str, str]] = []
        # (monotonic time, sys_id) of every accepted update (the benchmark's lag).
        self.update_log: list[tuple[float, str]] = []
        self.rate_limited = 0
        self.retry_after = "2"
        # Answer the next N creates with a 502 *after* storing the record (lost answer).
        self.lose_create_answers = 0
        self.clock: Callable[[], float] = time.time
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeServiceNow:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def writes(self, method: str | None = None) -> int:
        with self.lock:
            return sum(
                1 for m, _p in self.requests if m != "GET" and (method is None or m == method)
            )

    # --- operator actions (what a person does in the ServiceNow UI) ------------------

    def edit(self, sys_id: str, user: str = "operator.jane", **fields: Any) -> dict[str, Any]:
        with self.lock:
            record = self.records[sys_id]
            error = self._apply(record, fields, user)
            if error:
                raise AssertionError(error)
            return dict(record)

    def add_user(self, user_name: str, email: str = "") -> str:
        """A sys_user record (an empty email as for accounts without one); its sys_id."""
        with self.lock:
            sys_id = uuid.uuid4().hex
            self.users[sys_id] = {
                "sys_id": sys_id,
                "user_name": user_name,
                "email": email,
                "name": user_name.replace(".", " ").title(),
            }
            return sys_id

    def by_correlation(self, correlation: str) -> list[dict[str, Any]]:
        with self.lock:
            return [
                dict(r) for r in self.records.values() if r.get("correlation_id") == correlation
            ]

    # --- the table's rules -------------------------------------------------------------

    def _apply(self, record: dict[str, Any], fields: dict[str, Any], user: str) -> str | None:
        changed = False
        merged = {**record, **{k: str(v) if v is not None else "" for k, v in fields.items()}}
        if merged.get("state") not in STATES:
            return f"Invalid state {merged.get('state')!r}"
        for name, allowed in CHOICES.items():
            if merged.get(name, "3") not in allowed:
                return f"Invalid {name} {merged.get(name)!r}"
        if merged["state"] in ("6", "7") and (
            not merged.get("close_code") or not merged.get("close_notes")
        ):
            return (
                "Data Policy Exception: \n The following fields are mandatory: "
                "Resolution code, Resolution notes"
            )
        for key, value in fields.items():
            if key.startswith("sys_") or key == "number":
                continue  # read-only system fields are ignored, as by the vendor
            if key == "work_notes":
                if value:
                    self.journal.setdefault(record["sys_id"], []).append(
                        {
                            "sys_id": uuid.uuid4().hex,
                            "element": "work_notes",
                            "element_id": record["sys_id"],
                            "value": str(value),
                            "sys_created_by": user,
                            "sys_created_on": _fmt(self.clock()),
                        }
                    )
                    changed = True
                continue
            text = "" if value is None else str(value)
            if record.get(key) != text:
                record[key] = text
                changed = True
        if changed:
            record["sys_mod_count"] = str(int(record["sys_mod_count"]) + 1)
            record["sys_updated_on"] = _fmt(self.clock())
            record["sys_updated_by"] = user
        return None

    def _create(self, fields: dict[str, Any], user: str) -> tuple[int, dict[str, Any]]:
        self.counter += 1
        now = _fmt(self.clock())
        record: dict[str, Any] = {
            "sys_id": uuid.uuid4().hex,
            "number": f"INC{self.counter:07d}",
            "state": "1",
            "impact": "3",
            "urgency": "3",
            "short_description": "",
            "description": "",
            "assigned_to": "",
            "correlation_id": "",
            "correlation_display": "",
            "close_code": "",
            "close_notes": "",
            "sys_mod_count": "0",
            "sys_created_on": now,
            "sys_updated_on": now,
            "sys_created_by": user,
            "sys_updated_by": user,
        }
        error = self._apply(record, fields, user)
        if error:
            return 403, {"error": {"message": "Operation Failed", "detail": error}}
        record["sys_mod_count"] = "0"
        self.records[record["sys_id"]] = record
        return 201, {"result": self._public(record)}

    def _public(self, record: dict[str, Any]) -> dict[str, Any]:
        """A record as the Table API answers it: references as link and value."""
        out = dict(record)
        if out.get("assigned_to"):
            out["assigned_to"] = {
                "link": f"{self.url}{USERS}/{out['assigned_to']}",
                "value": out["assigned_to"],
            }
        return out

    def _query(
        self, query: str, table: dict[str, dict[str, Any]] | None = None
    ) -> list[dict[str, Any]]:
        """Rows matching an encoded query: ``^`` joins conditions with AND, a condition
        opened by ``^OR`` is an alternative of the one before it (OR binds tighter than
        AND, as on the instance)."""
        rows = list((self.records if table is None else table).values())
        order: str | None = None
        groups: list[list[str]] = []  # AND of groups, each an OR of conditions
        for term in filter(None, query.split("^")):
            if term.startswith("ORDERBY"):
                order = term.removeprefix("ORDERBY")
            elif term.startswith("OR") and groups:
                groups[-1].append(term.removeprefix("OR"))
            else:
                groups.append([term])
        for group in groups:
            rows = [r for r in rows if any(self._matches(r, term) for term in group)]
        if order:
            rows.sort(key=lambda r: (str(r.get(order, "")), r.get("number", "")))
        return rows

    @staticmethod
    def _matches(row: dict[str, Any], term: str) -> bool:
        if term.endswith("ISNOTEMPTY"):
            return bool(row.get(term.removesuffix("ISNOTEMPTY")))
        if ">=" in term:
            name, value = term.split(">=", 1)
            return str(row.get(name, "")) >= value
        if "=" in term:
            name, value = term.split("=", 1)
            # String matches ignore case, as on the instance's database.
            return str(row.get(name, "")).lower() == value.lower()
        raise ValueError(term)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any], **headers: str) -> None:
                if "error" in body:
                    body["status"] = "failure"
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(raw)

            def _user(self) -> str | None:
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return None
                try:
                    user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                except ValueError:
                    return None
                if (user, password) != (fake.username, fake.password):
                    return None
                return user

            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                with fake.lock:
                    fake.requests.append((method, parts.path))
                    limited = fake.rate_limited > 0
                    if limited:
                        fake.rate_limited -= 1
                if limited:
                    self._send(
                        429,
                        {
                            "error": {
                                "message": "Rate limit exceeded",
                                "detail": "too many requests",
                            }
                        },
                        **{"Retry-After": fake.retry_after},
                    )
                    return
                user = self._user()
                if user is None:
                    self._send(
                        401,
                        {
                            "error": {
                                "message": "User Not Authenticated",
                                "detail": "Required to provide Auth information",
                            }
                        },
                    )
                    return
                if parts.path == JOURNAL and method == "GET":
                    query = parse_qs(parts.query).get("sysparm_query", [""])[0]
                    terms = dict(t.split("=", 1) for t in query.split("^") if "=" in t)
                    with fake.lock:
                        entries = [
                            dict(e)
                            for e in fake.journal.get(terms.get("element_id", ""), [])
                            if e["element"] == terms.get("element", e["element"])
                        ]
                    self._send(200, {"result": entries})
                    return
                if parts.path.startswith(USERS) and method == "GET":
                    self._users(parts.path[len(USERS) :].strip("/"), parse_qs(parts.query))
                    return
                if not parts.path.startswith(TABLE):
                    self._send(400, {"error": {"message": "Invalid table", "detail": parts.path}})
                    return
                sys_id = parts.path[len(TABLE) :].strip("/")
                body: Any = None
                if method in ("POST", "PATCH", "PUT"):
                    length = int(self.headers.get("Content-Length") or 0)
                    try:
                        body = json.loads(self.rfile.read(length) or b"{}")
                    except ValueError:
                        body = None
                    if not isinstance(body, dict):
                        self._send(
                            400,
                            {
                                "error": {
                                    "message": "Exception while reading request",
                                    "detail": "The payload is not valid JSON.",
                                }
                            },
                        )
                        return
                with fake.lock:
                    if method == "GET" and not sys_id:
                        query = parse_qs(parts.query)
                        rows = fake._query(query.get("sysparm_query", [""])[0])
                        offset = int(query.get("sysparm_offset", ["0"])[0])
                        limit = int(query.get("sysparm_limit", ["10000"])[0])
                        self._send(
                            200,
                            {"result": [fake._public(r) for r in rows[offset : offset + limit]]},
                        )
                        return
                    if method == "POST" and not sys_id:
                        status, answer = fake._create(body, user)
                        if status == 201 and fake.lose_create_answers > 0:
                            fake.lose_create_answers -= 1
                            self._send(502, {"error": {"message": "Bad Gateway", "detail": ""}})
                            return
                        self._send(status, answer)
                        return
                    record = fake.records.get(sys_id)
                    if record is None:
                        self._send(
                            404,
                            {
                                "error": {
                                    "message": "No Record found",
                                    "detail": "Record doesn't exist or ACL restricts the "
                                    "record retrieval",
                                }
                            },
                        )
                        return
                    if method == "GET":
                        self._send(200, {"result": fake._public(record)})
                        return
                    if method in ("PATCH", "PUT"):
                        error = fake._apply(record, body, user)
                        fake.update_log.append((time.monotonic(), sys_id))
                        if error:
                            self._send(
                                403, {"error": {"message": "Operation Failed", "detail": error}}
                            )
                            return
                        self._send(200, {"result": fake._public(record)})
                        return
                self._send(405, {"error": {"message": "Method not allowed", "detail": method}})

            def _users(self, sys_id: str, query: dict[str, list[str]]) -> None:
                wanted = query.get("sysparm_fields", [""])[0]
                fields = [f for f in wanted.split(",") if f]

                def shown(user: dict[str, str]) -> dict[str, str]:
                    return {k: v for k, v in user.items() if not fields or k in fields}

                with fake.lock:
                    if sys_id:
                        user = fake.users.get(sys_id)
                        if user is None:
                            self._send(
                                404,
                                {
                                    "error": {
                                        "message": "No Record found",
                                        "detail": "Record doesn't exist or ACL restricts the "
                                        "record retrieval",
                                    }
                                },
                            )
                            return
                        self._send(200, {"result": shown(user)})
                        return
                    try:
                        rows = fake._query(query.get("sysparm_query", [""])[0], fake.users)
                    except ValueError as exc:
                        self._send(400, {"error": {"message": "Invalid query", "detail": str(exc)}})
                        return
                    limit = int(query.get("sysparm_limit", ["10000"])[0])
                    self._send(200, {"result": [shown(u) for u in rows[:limit]]})

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PATCH(self) -> None:
                self._handle("PATCH")

            def do_PUT(self) -> None:
                self._handle("PUT")

        return Handler
