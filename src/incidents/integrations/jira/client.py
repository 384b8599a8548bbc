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
from incidents.integrations.vendor_http import VendorError, VendorHttp
from incidents.integrations.vendor_people import PersonUnmapped, VendorPeople
from incidents.sync.ports import Comment, FieldsUnwritable, Ticket, TransitionUnavailable

LABEL_PREFIX = "incidents-"
_FIELDS = "summary,description,priority,status,assignee,labels,updated,comment"


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
        self._http = VendorHttp(
            "Jira",
            httpx.Client(
                base_url=base_url,
                auth=(auth.email, auth.api_token),
                headers={"Accept": "application/json"},
                timeout=timeout,
                transport=transport,
            ),
            _explain,
        )
        self.base_url = base_url
        self.project = project
        self.issue_type = issue_type
        # Our own account (comments it wrote are ours, never taken back as notes).
        self._account: str | None = None
        self.people = VendorPeople(self._account_of, self._email_of)

    def close(self) -> None:
        self._http.close()

    @property
    def calls(self) -> dict[str, int]:
        """Vendor calls made, by method."""
        return self._http.calls

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        response = self._http.request(method, path, **kw)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    def account_id(self) -> str | None:
        if self._account is None:
            me = self._call("GET", "/rest/api/3/myself")
            self._account = str(me.get("accountId")) if isinstance(me, dict) else None
        return self._account

    def _account_of(self, email: str) -> str:
        """The accountId of the user whose (visible) email is ``email``."""
        found = self._call("GET", "/rest/api/3/user/search", params={"query": email})
        for user in found if isinstance(found, list) else []:
            address = user.get("emailAddress")
            if isinstance(address, str) and address.lower() == email.lower():
                return str(user["accountId"])
        raise PersonUnmapped(f"no Jira user shows the email {email!r}")

    def _email_of(self, account_id: str) -> str:
        try:
            user = self._call("GET", "/rest/api/3/user", params={"accountId": account_id})
        except VendorError as exc:
            if exc.status == 404:
                raise PersonUnmapped(f"no Jira user {account_id!r}") from None
            raise
        address = user.get("emailAddress") if isinstance(user, dict) else None
        if not address:
            # The user's profile visibility hides the email from other accounts.
            name = user.get("displayName") if isinstance(user, dict) else None
            raise PersonUnmapped(
                f"the Jira user {name or account_id!r} hides their email address, "
                "so they cannot be matched to a person here"
            )
        return str(address)

    def _assignee(self, user: object) -> tuple[str | None, str | None]:
        """(the value we compare, why it names nobody here) of an issue's assignee."""
        if not isinstance(user, dict) or not user.get("accountId"):
            return None, None
        account = str(user["accountId"])
        address = user.get("emailAddress")
        if isinstance(address, str) and address:
            self.people.remember(account, address)
        try:
            return self.people.email(account), None
        except PersonUnmapped as exc:
            return account, str(exc)

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
        assignee, unmapped = self._assignee(fields.get("assignee"))
        comments = (fields.get("comment") or {}).get("comments") or []
        flat = {
            "summary": fields.get("summary"),
            "description": from_adf(fields.get("description")) or None,
            "priority": priority.get("name") if isinstance(priority, dict) else None,
            "status": status.get("name") if isinstance(status, dict) else None,
            "assignee": assignee,
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
            unmapped={"assignee": unmapped} if unmapped else {},
            comments_us=self._comments_us(comments),
        )

    def _comments_us(self, comments: Sequence[Mapping[str, Any]]) -> int:
        """When someone other than us last added or edited a comment (0: never)."""
        if not comments:
            return 0
        mine = self.account_id()
        return max(
            (
                max(parse_jira_time(c.get("created")), parse_jira_time(c.get("updated")))
                for c in comments
                if (c.get("author") or {}).get("accountId") != mine
            ),
            default=0,
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

    def _fields(self, changes: Mapping[str, Any], refused: dict[str, str]) -> dict[str, Any]:
        """The edit body of ``changes``; what cannot be written goes to ``refused``."""
        out: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "status":
                continue
            if name == "description":
                out[name] = to_adf(value or "")
            elif name == "priority":
                out[name] = {"name": value}
            elif name == "assignee":
                if not value:
                    out[name] = None
                    continue
                try:
                    out[name] = {"accountId": self.people.vendor_id(str(value))}
                except PersonUnmapped as exc:
                    refused[name] = str(exc)
            else:
                out[name] = value
        return out

    def create(self, fields: Mapping[str, Any], correlation: str) -> Ticket:
        refused: dict[str, str] = {}
        body = self._fields(fields, refused)
        body["project"] = {"key": self.project}
        body["issuetype"] = {"name": self.issue_type}
        body["labels"] = [f"{LABEL_PREFIX}{correlation}"]
        created = self._call("POST", "/rest/api/3/issue", json={"fields": body})
        return self._finish(str(created["key"]), fields.get("status"), refused)

    def _finish(self, key: str, status: object, refused: dict[str, str]) -> Ticket:
        """Move the issue to ``status`` if asked, then read it back; raises
        :class:`FieldsUnwritable` for what could not be written."""
        reachable = self._transition(key, str(status)) if status else None
        ticket = self.get(key)
        if reachable is not None:
            raise TransitionUnavailable("status", str(status), reachable, ticket, refused)
        if refused:
            raise FieldsUnwritable(ticket, refused)
        return ticket

    def get(self, external_id: str) -> Ticket:
        issue = self._call(
            "GET",
            f"/rest/api/3/issue/{external_id}",
            params={"fields": _FIELDS, "expand": "changelog"},
        )
        return self._ticket(issue)

    def _transition(self, key: str, target: str) -> list[str] | None:
        """Move the issue to ``target`` by the workflow's transition leading there;
        when none does, the statuses that can be reached instead."""
        if self.get(key).fields.get("status") == target:
            return None
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
                return None
        return [str((t.get("to") or {}).get("name")) for t in transitions]

    def update(self, external_id: str, changes: Mapping[str, Any]) -> Ticket:
        refused: dict[str, str] = {}
        body = self._fields(changes, refused)
        if body:
            self._call("PUT", f"/rest/api/3/issue/{external_id}", json={"fields": body})
        return self._finish(external_id, changes.get("status"), refused)

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

    def person_email(self, person: str) -> str:
        return self.people.as_email(person)

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
                    parse_jira_time(item.get("updated")),
                )
            )
        return out
