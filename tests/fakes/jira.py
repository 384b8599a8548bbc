"""A local Jira Cloud REST v3 for tests: it refuses what Jira refuses.

Basic auth with an email and API token (401 otherwise); issues with ADF descriptions
(a plain string is refused with 400, as v3 does); ``status`` cannot be set by an edit
(400: it is not on the screen); transitions per workflow (To Do -> In Progress ->
Done, Done -> In Progress), a transition not available from the current status is
refused (400), and a test may give the project another ``workflow``; a changelog
history (with a growing id) per edit; ADF comments; JQL
search at ``/rest/api/3/search/jql`` for ``project``, ``labels = "x"``, ``labels is
not EMPTY`` and ``updated >= "yyyy-MM-dd HH:mm"``, with ``nextPageToken`` paging;
comments carry ``created`` and ``updated`` (an edit moves the comment's and the
issue's ``updated``, not the changelog), also as the issue's ``comment`` field;
users (``/rest/api/3/user/search?query=`` matching the start of the display name or
email, ``/rest/api/3/user?accountId=``; ``emailAddress`` left out when the profile
hides it), an assignee given by ``accountId`` that must name a user (400 otherwise);
429 with Retry-After when told to rate-limit.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

WORKFLOW = {
    "To Do": [("11", "Start work", "In Progress"), ("31", "Finish", "Done")],
    "In Progress": [("21", "Back to do", "To Do"), ("31", "Finish", "Done")],
    "Done": [("41", "Reopen", "In Progress")],
}
PRIORITIES = {"Highest", "High", "Medium", "Low", "Lowest"}
BOT = "5b10ac8d82e05b22cc7d4ef5"
NO_USER = "Specified user does not exist or you do not have required permissions"


def _stamp(seconds: float) -> str:
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def adf(text: str) -> dict[str, Any]:
    return {
        "type": "doc",
        "version": 1,
        "content": [{"type": "paragraph", "content": [{"type": "text", "text": text}]}],
    }


def _is_adf(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "doc" and value.get("version") == 1


class FakeJira:
    def __init__(self, email: str = "bot@acme.com", token: str = "jira-api-token-1") -> None:
        self.email = email
        self.token = token
        self.issues: dict[str, dict[str, Any]] = {}
        self.comments: dict[str, list[dict[str, Any]]] = {}
        # accountId -> (email, display name, whether the profile hides the email).
        self.users: dict[str, tuple[str, str, bool]] = {BOT: (email, "Incidents bot", False)}
        self.lock = threading.Lock()
        self.counter = 0
        self.history_id = 10000
        self.comment_id = 20000
        self.requests: list[tuple[str, str]] = []
        self.rate_limited = 0
        self.retry_after = "1"
        self.clock: Callable[[], float] = time.time
        # The project's workflow: status -> (transition id, name, target status).
        self.workflow: dict[str, list[tuple[str, str, str]]] = {
            status: list(moves) for status, moves in WORKFLOW.items()
        }
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> FakeJira:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def writes(self) -> int:
        with self.lock:
            return sum(1 for m, _ in self.requests if m in ("POST", "PUT"))

    def by_label(self, label: str) -> list[dict[str, Any]]:
        with self.lock:
            return [i for i in self.issues.values() if label in i["fields"]["labels"]]

    def add_user(self, email: str, name: str, *, hidden: bool = False) -> str:
        """A Jira account; ``hidden`` as when the profile shows the email to nobody."""
        with self.lock:
            account = f"557058:{len(self.users):08x}-0000-4000-8000-{len(self.users):012x}"
            self.users[account] = (email, name, hidden)
            return account

    def user(self, account: str) -> dict[str, Any]:
        """A user as the REST API shows it to another account."""
        email, name, hidden = self.users[account]
        out: dict[str, Any] = {
            "accountId": account,
            "accountType": "atlassian",
            "displayName": name,
            "active": True,
        }
        if not hidden:
            out["emailAddress"] = email
        return out

    # --- a person working in Jira -------------------------------------------------

    def edit(self, key: str, account: str = "operator-557058", **fields: Any) -> int:
        with self.lock:
            return self._edit(self.issues[key], fields, account)

    def move(self, key: str, target: str, account: str = "operator-557058") -> int:
        with self.lock:
            issue = self.issues[key]
            return self._set_status(issue, target, account)

    def comment(self, key: str, text: str, account: str = "operator-557058") -> str:
        with self.lock:
            return self._comment(key, adf(text), account)

    # --- the rules ------------------------------------------------------------------

    def _history(self, issue: dict[str, Any], items: list[dict[str, Any]], account: str) -> int:
        self.history_id += 1
        issue["changelog"].append(
            {
                "id": str(self.history_id),
                "author": {"accountId": account},
                "items": items,
                "created": _stamp(self.clock()),
            }
        )
        issue["fields"]["updated"] = _stamp(self.clock())
        return self.history_id

    def _edit(self, issue: dict[str, Any], fields: dict[str, Any], account: str) -> int:
        items = []
        for name, value in fields.items():
            if name == "description" and isinstance(value, str):
                value = adf(value)
            if name == "priority" and isinstance(value, str):
                value = {"name": value}
            if name == "assignee" and value is not None:
                account = value if isinstance(value, str) else value["accountId"]
                value = self.user(account)
            if issue["fields"].get(name) != value:
                issue["fields"][name] = value
                items.append({"field": name})
        return self._history(issue, items, account) if items else 0

    def _set_status(self, issue: dict[str, Any], target: str, account: str) -> int:
        issue["fields"]["status"] = {"name": target}
        return self._history(issue, [{"field": "status", "toString": target}], account)

    def _comment(self, key: str, body: Any, account: str) -> str:
        self.comment_id += 1
        now = _stamp(self.clock())
        self.comments.setdefault(key, []).append(
            {
                "id": str(self.comment_id),
                "author": {"accountId": account},
                "updateAuthor": {"accountId": account},
                "body": body,
                "created": now,
                "updated": now,
            }
        )
        self.issues[key]["fields"]["updated"] = now
        return str(self.comment_id)

    def edit_comment(
        self, key: str, comment_id: str, text: str, account: str = "operator-557058"
    ) -> None:
        """Edit a comment as a person does in Jira (its author or an admin): the
        comment's ``updated`` and the issue's ``updated`` move, the version does not."""
        with self.lock:
            comment = next(c for c in self.comments[key] if c["id"] == comment_id)
            now = _stamp(self.clock())
            comment.update(body=adf(text), updated=now, updateAuthor={"accountId": account})
            self.issues[key]["fields"]["updated"] = now

    def _check_fields(self, fields: dict[str, Any]) -> dict[str, str]:
        errors = {}
        if "status" in fields:
            errors["status"] = (
                "Field 'status' cannot be set. It is not on the appropriate screen, or unknown."
            )
        if (
            "description" in fields
            and fields["description"] is not None
            and not _is_adf(fields["description"])
        ):
            errors["description"] = "Operation value must be an Atlassian Document (see ADF)."
        priority = fields.get("priority")
        if priority is not None and (
            not isinstance(priority, dict) or priority.get("name") not in PRIORITIES
        ):
            errors["priority"] = "Specify the Priority (name) in the string format"
        if "assignee" in fields and fields["assignee"] is not None:
            assignee = fields["assignee"]
            account = assignee.get("accountId") if isinstance(assignee, dict) else None
            if account not in self.users:
                errors["assignee"] = f"User '{account}' cannot be assigned issues."
        if "summary" in fields and not fields["summary"]:
            errors["summary"] = "You must specify a summary of the issue."
        return errors

    def _public(self, issue: dict[str, Any], query: dict[str, str]) -> dict[str, Any]:
        expand = "changelog" in query.get("expand", "")
        out = {"id": issue["id"], "key": issue["key"], "fields": dict(issue["fields"])}
        if "comment" in query.get("fields", "comment").split(","):
            comments = list(self.comments.get(issue["key"], []))
            out["fields"]["comment"] = {
                "comments": comments,
                "maxResults": len(comments),
                "total": len(comments),
                "startAt": 0,
            }
        if expand:
            out["changelog"] = {
                "histories": list(issue["changelog"]),
                "total": len(issue["changelog"]),
            }
        return out

    def _search(self, jql: str) -> list[dict[str, Any]]:
        rows = list(self.issues.values())
        where, _, order = jql.partition(" ORDER BY ")
        for clause in where.split(" AND "):
            clause = clause.strip()
            if m := re.fullmatch(r'project = "?([A-Z0-9_]+)"?', clause):
                rows = [r for r in rows if r["fields"]["project"]["key"] == m[1]]
            elif m := re.fullmatch(r'labels = "([^"]+)"', clause):
                rows = [r for r in rows if m[1] in r["fields"]["labels"]]
            elif clause == "labels is not EMPTY":
                rows = [r for r in rows if r["fields"]["labels"]]
            elif m := re.fullmatch(r'updated >= "(\d{4}-\d\d-\d\d \d\d:\d\d)"', clause):
                floor = m[1].replace(" ", "T")
                rows = [r for r in rows if r["fields"]["updated"][:16] >= floor]
            else:
                raise ValueError(f"unsupported JQL: {clause}")
        if order.strip() == "updated ASC":
            rows.sort(key=lambda r: r["fields"]["updated"])
        return rows

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _send(self, status: int, body: Any = None, **headers: str) -> None:
                raw = b"" if body is None else json.dumps(body).encode()
                self.send_response(status)
                if body is not None:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def _error(
                self, status: int, messages: list[str], errors: dict[str, str] | None = None
            ) -> None:
                self._send(status, {"errorMessages": messages, "errors": errors or {}})

            def _authorized(self) -> bool:
                header = self.headers.get("Authorization", "")
                if not header.startswith("Basic "):
                    return False
                user, _, secret = base64.b64decode(header[6:]).decode().partition(":")
                return (user, secret) == (fake.email, fake.token)

            def _body(self) -> Any:
                length = int(self.headers.get("Content-Length") or 0)
                try:
                    return json.loads(self.rfile.read(length) or b"null")
                except ValueError:
                    return None

            def _handle(self, method: str) -> None:
                parts = urlsplit(self.path)
                path = parts.path
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                with fake.lock:
                    fake.requests.append((method, path))
                    limited = fake.rate_limited > 0
                    if limited:
                        fake.rate_limited -= 1
                if limited:
                    self._send(
                        429,
                        {"errorMessages": ["Rate limit exceeded"]},
                        **{"Retry-After": fake.retry_after},
                    )
                    return
                if not self._authorized():
                    self._error(401, ["Client must be authenticated to access this resource."])
                    return
                body = self._body() if method in ("POST", "PUT") else None
                with fake.lock:
                    self._route(method, path, query, body)

            def _route(self, method: str, path: str, query: dict[str, str], body: Any) -> None:
                if path == "/rest/api/3/myself" and method == "GET":
                    self._send(200, {"accountId": BOT, "emailAddress": fake.email})
                    return
                if path == "/rest/api/3/user/search" and method == "GET":
                    needle = query.get("query", "").lower()
                    if not needle:
                        self._error(400, ["The query parameter is required."])
                        return
                    found = [
                        fake.user(account)
                        for account, (email, name, _hidden) in fake.users.items()
                        if email.lower().startswith(needle) or name.lower().startswith(needle)
                    ]
                    self._send(200, found)
                    return
                if path == "/rest/api/3/user" and method == "GET":
                    account = query.get("accountId", "")
                    if account not in fake.users:
                        self._error(
                            404,
                            [NO_USER],
                        )
                        return
                    self._send(200, fake.user(account))
                    return
                if path == "/rest/api/3/search/jql" and method == "GET":
                    try:
                        rows = fake._search(query.get("jql", ""))
                    except ValueError as exc:
                        self._error(400, [str(exc)])
                        return
                    start = int(query.get("nextPageToken") or 0)
                    size = int(query.get("maxResults") or 50)
                    page = rows[start : start + size]
                    more = start + size < len(rows)
                    answer: dict[str, Any] = {
                        "issues": [fake._public(r, query) for r in page],
                        "isLast": not more,
                    }
                    if more:
                        answer["nextPageToken"] = str(start + size)
                    self._send(200, answer)
                    return
                if path == "/rest/api/3/issue" and method == "POST":
                    fields = (body or {}).get("fields") if isinstance(body, dict) else None
                    if not isinstance(fields, dict):
                        self._error(400, ["fields is required"])
                        return
                    errors = fake._check_fields(fields)
                    if not isinstance(fields.get("project"), dict):
                        errors["project"] = "Specify a valid project ID or key"
                    if not fields.get("summary"):
                        errors["summary"] = "You must specify a summary of the issue."
                    if errors:
                        self._error(400, [], errors)
                        return
                    fake.counter += 1
                    key = f"{fields['project']['key']}-{fake.counter}"
                    issue = {
                        "id": str(10000 + fake.counter),
                        "key": key,
                        "fields": {
                            "summary": fields["summary"],
                            "description": fields.get("description"),
                            "priority": fields.get("priority") or {"name": "Medium"},
                            "status": {"name": "To Do"},
                            "assignee": (
                                fake.user(fields["assignee"]["accountId"])
                                if fields.get("assignee")
                                else None
                            ),
                            "labels": list(fields.get("labels") or []),
                            "project": fields["project"],
                            "updated": _stamp(fake.clock()),
                        },
                        "changelog": [],
                    }
                    fake.issues[key] = issue
                    self._send(
                        201,
                        {
                            "id": issue["id"],
                            "key": key,
                            "self": f"{fake.url}/rest/api/3/issue/{issue['id']}",
                        },
                    )
                    return
                m = re.fullmatch(
                    r"/rest/api/3/issue/([A-Z0-9_]+-\d+)(/transitions|/comment)?", path
                )
                if not m or m[1] not in fake.issues:
                    self._error(
                        404, ["Issue does not exist or you do not have permission to see it."]
                    )
                    return
                issue = fake.issues[m[1]]
                sub = m[2]
                if sub is None and method == "GET":
                    self._send(200, fake._public(issue, query))
                elif sub is None and method == "PUT":
                    fields = body.get("fields") if isinstance(body, dict) else None
                    if not isinstance(fields, dict):
                        self._error(400, ["fields is required"])
                        return
                    errors = fake._check_fields(fields)
                    if errors:
                        self._error(400, [], errors)
                        return
                    fake._edit(issue, fields, BOT)
                    self._send(204)
                elif sub == "/transitions" and method == "GET":
                    current = issue["fields"]["status"]["name"]
                    self._send(
                        200,
                        {
                            "transitions": [
                                {"id": tid, "name": name, "to": {"name": to}}
                                for tid, name, to in fake.workflow.get(current, [])
                            ]
                        },
                    )
                elif sub == "/transitions" and method == "POST":
                    wanted = ((body or {}).get("transition") or {}).get("id")
                    current = issue["fields"]["status"]["name"]
                    match = [to for tid, _n, to in fake.workflow.get(current, []) if tid == wanted]
                    if not match:
                        self._error(400, [f"Transition id '{wanted}' is not valid for this issue."])
                        return
                    fake._set_status(issue, match[0], BOT)
                    self._send(204)
                elif sub == "/comment" and method == "GET":
                    self._send(
                        200,
                        {
                            "comments": list(fake.comments.get(m[1], [])),
                            "total": len(fake.comments.get(m[1], [])),
                        },
                    )
                elif sub == "/comment" and method == "POST":
                    if not _is_adf((body or {}).get("body")):
                        self._error(400, [], {"comment": "Comment body must be ADF"})
                        return
                    cid = fake._comment(m[1], body["body"], BOT)
                    self._send(201, {"id": cid, "body": body["body"]})
                else:
                    self._error(405, [f"{method} not allowed"])

            def do_GET(self) -> None:
                self._handle("GET")

            def do_POST(self) -> None:
                self._handle("POST")

            def do_PUT(self) -> None:
                self._handle("PUT")

        return Handler
