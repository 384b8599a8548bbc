"""Jira Cloud REST API v3 over httpx: issues, transitions by name, ADF comments.

The incident's id is kept as an issue label ``incidents-<id>`` (the correlation a
retried create looks up with JQL). The version of an issue is the id of its latest
changelog history (ids only grow), so webhooks and polling agree on it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from incidents.integrations.jira.adf import from_adf, to_adf
from incidents.integrations.vendor_http import VendorError, check
from incidents.sync.ports import Comment, Ticket, TransitionUnavailable

LABEL_PREFIX = "incidents-"
_FIELDS = "summary,description,priority,status,assignee,labels,updated"


@dataclass(frozen=True, slots=True)
class JiraAuth:
    email: str
    api_token: str = field(repr=False)


def parse_jira_time(value: object) -> int:
    """``2024-05-01T10:00:00.000+0000`` -> microseconds."""
    if not isinstance(value, str) or not value:
        return 0
    text = value
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = f"{text[:-2]}:{text[-2:]}"
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return int(moment.timestamp() * 1_000_000)


def jql_time(micros: int) -> str:
    # JQL takes minutes, in the user's time zone (UTC for a service account).
    return datetime.fromtimestamp(micros / 1e6, UTC).strftime("%Y-%m-%d %H:%M")


def _explain(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase
    if isinstance(body, dict):
        messages = list(body.get("errorMessages") or [])
        errors = body.get("errors") or {}
        if isinstance(errors, dict):
            messages += [f"{k}: {v}" for k, v in errors.items()]
        if messages:
            return "; ".join(str(m) for m in messages)[:300]
    return response.reason_phrase


class JiraClient:
    """:class:`incidents.sync.ports.Ticketing` for one Jira Cloud site and project."""

    def __init__(
        self,
        base_url: str,
        auth: JiraAuth,
        project: str,
        *,
        issue_type: str = "Task",
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url,
            auth=(auth.email, auth.api_token),
            headers={"Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )
        self.base_url = base_url
        self.project = project
        self.issue_type = issue_type
        # Our own account (comments it wrote are ours, never taken back as notes).
        self._account: str | None = None
        self.calls: dict[str, int] = {}

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        self.calls[method] = self.calls.get(method, 0) + 1
        try:
            response = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise VendorError(f"Jira unreachable: {type(exc).__name__}") from None
        check(response, "Jira", _explain(response))
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def account_id(self) -> str | None:
        if self._account is None:
            me = self._call("GET", "/rest/api/3/myself")
            self._account = str(me.get("accountId")) if isinstance(me, dict) else None
        return self._account

    def _ticket(self, issue: Mapping[str, Any]) -> Ticket:
        fields = issue.get("fields") or {}
        histories = (issue.get("changelog") or {}).get("histories") or []
        version = max((int(h.get("id", 0)) for h in histories), default=0)
        labels = [str(label) for label in fields.get("labels") or []]
        correlation = next(
            (
                label.removeprefix(LABEL_PREFIX)
                for label in labels
                if label.startswith(LABEL_PREFIX)
            ),
            None,
        )
        priority = fields.get("priority") or {}
        status = fields.get("status") or {}
        assignee = fields.get("assignee") or {}
        flat = {
            "summary": fields.get("summary"),
            "description": from_adf(fields.get("description")) or None,
            "priority": priority.get("name") if isinstance(priority, dict) else None,
            "status": status.get("name") if isinstance(status, dict) else None,
            "assignee": assignee.get("accountId") if isinstance(assignee, dict) else None,
        }
        key = str(issue.get("key"))
        return Ticket(
            external_id=key,
            key=key,
            version=version,
            updated_us=parse_jira_time(fields.get("updated")),
            fields=flat,
            correlation=correlation,
            url=f"{self.base_url}/browse/{key}",
        )

    def _search(self, jql: str) -> list[Ticket]:
        tickets: list[Ticket] = []
        token: str | None = None
        while True:
            params: dict[str, str] = {
                "jql": jql,
                "fields": _FIELDS,
                "expand": "changelog",
                "maxResults": "100",
            }
            if token:
                params["nextPageToken"] = token
            page = self._call("GET", "/rest/api/3/search/jql", params=params)
            tickets.extend(self._ticket(issue) for issue in page.get("issues") or [])
            token = page.get("nextPageToken")
            if page.get("isLast", True) or not token:
                return tickets

    def find(self, correlation: str) -> Ticket | None:
        found = self._search(
            f'project = "{self.project}" AND labels = "{LABEL_PREFIX}{correlation}"'
        )
        return found[0] if found else None

    def _fields(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "status":
                continue
            if name == "description":
                out[name] = to_adf(value or "")
            elif name == "priority":
                out[name] = {"name": value}
            elif name == "assignee":
                out[name] = {"accountId": value} if value else None
            else:
                out[name] = value
        return out

    def create(self, fields: Mapping[str, Any], correlation: str) -> Ticket:
        body = self._fields(fields)
        body["project"] = {"key": self.project}
        body["issuetype"] = {"name": self.issue_type}
        body["labels"] = [f"{LABEL_PREFIX}{correlation}"]
        created = self._call("POST", "/rest/api/3/issue", json={"fields": body})
        key = str(created["key"])
        status = fields.get("status")
        if status:
            self._transition(key, str(status))
        return self.get(key)

    def get(self, external_id: str) -> Ticket:
        issue = self._call(
            "GET",
            f"/rest/api/3/issue/{external_id}",
            params={"fields": _FIELDS, "expand": "changelog"},
        )
        return self._ticket(issue)

    def _transition(self, key: str, target: str) -> None:
        if self.get(key).fields.get("status") == target:
            return
        options = self._call("GET", f"/rest/api/3/issue/{key}/transitions")
        transitions = options.get("transitions") or []
        for transition in transitions:
            to = (transition.get("to") or {}).get("name")
            if to == target or transition.get("name") == target:
                self._call(
                    "POST",
                    f"/rest/api/3/issue/{key}/transitions",
                    json={"transition": {"id": str(transition["id"])}},
                )
                return
        reachable = [str((t.get("to") or {}).get("name")) for t in transitions]
        raise TransitionUnavailable("status", target, reachable, self.get(key))

    def update(self, external_id: str, changes: Mapping[str, Any]) -> Ticket:
        body = self._fields(changes)
        if body:
            self._call("PUT", f"/rest/api/3/issue/{external_id}", json={"fields": body})
        if changes.get("status"):
            self._transition(external_id, str(changes["status"]))
        return self.get(external_id)

    def add_note(self, external_id: str, text: str) -> str:
        made = self._call(
            "POST", f"/rest/api/3/issue/{external_id}/comment", json={"body": to_adf(text)}
        )
        return str(made.get("id", "")) if isinstance(made, dict) else ""

    def changed_since(self, since_us: int | None) -> Sequence[Ticket]:
        jql = f'project = "{self.project}" AND labels is not EMPTY'
        if since_us is not None:
            jql += f' AND updated >= "{jql_time(max(0, since_us))}"'
        jql += " ORDER BY updated ASC"
        return [t for t in self._search(jql) if t.correlation]

    def comments(self, external_id: str) -> Sequence[Comment]:
        mine = self.account_id()
        found = self._call("GET", f"/rest/api/3/issue/{external_id}/comment")
        out = []
        for item in (found or {}).get("comments") or []:
            author = (item.get("author") or {}).get("accountId")
            if author == mine:
                continue  # our own notes: never taken back
            out.append(
                Comment(
                    str(item.get("id")),
                    author,
                    from_adf(item.get("body")),
                    parse_jira_time(item.get("created")),
                )
            )
        return out
