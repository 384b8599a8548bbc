"""The ServiceNow Table API (``/api/now/table/incident``) over httpx.

Records carry ``sys_id`` (the external id), ``number`` (the key shown to people),
``sys_mod_count`` (the version: every write adds one) and ``sys_updated_on``
(``YYYY-MM-DD HH:MM:SS``, UTC for an integration user). The incident's id goes in
``correlation_id``, which is how a retried create finds the ticket made by an
attempt whose answer was lost.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from incidents.integrations.vendor_http import VendorError, VendorHttp
from incidents.integrations.vendor_people import PersonUnmapped, VendorPeople, is_plain_email
from incidents.sync.ports import Comment, FieldsUnwritable, Ticket

_TIME = "%Y-%m-%d %H:%M:%S"
# Fields the client reads besides the mapped ones.
_PAGE = 200
_RESOLVED = ("6", "7")
_USERS = "/api/now/table/sys_user"
_USER_FIELDS = "sys_id,email,user_name"
# The incident's reference to sys_user: sys_ids on the wire, emails here.
_ASSIGNED = "assigned_to"


@dataclass(frozen=True, slots=True)
class ServiceNowAuth:
    """Basic auth (an integration user) or an OAuth bearer token."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)


def sn_time(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, UTC).strftime(_TIME)


def parse_sn_time(value: object) -> int:
    if not isinstance(value, str) or not value:
        return 0
    moment = datetime.strptime(value, _TIME).replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def _explain(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200] or response.reason_phrase
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        parts = [str(error.get("message") or ""), str(error.get("detail") or "")]
        return ": ".join(p for p in parts if p)[:300] or response.reason_phrase
    return response.reason_phrase


class ServiceNowClient:
    """:class:`incidents.sync.ports.Ticketing` for one ServiceNow instance."""

    def __init__(
        self,
        base_url: str,
        auth: ServiceNowAuth,
        *,
        table: str = "incident",
        close_code: str = "Solved (Permanently)",
        close_notes: str = "Resolved in Incidents",
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        basic: tuple[str, str] | None = None
        if auth.token:
            headers["Authorization"] = f"Bearer {auth.token}"
        elif auth.username and auth.password:
            basic = (auth.username, auth.password)
        self.username = auth.username
        self._http = VendorHttp(
            "ServiceNow",
            httpx.Client(
                base_url=base_url, headers=headers, auth=basic, timeout=timeout, transport=transport
            ),
            _explain,
        )
        self._path = f"/api/now/table/{table}"
        self._close_code = close_code
        self._close_notes = close_notes
        self.base_url = base_url
        self.people = VendorPeople(self._user_of, self._email_of)

    def close(self) -> None:
        self._http.close()

    @property
    def calls(self) -> dict[str, int]:
        """Vendor calls made, by method: the benchmark's calls per change."""
        return self._http.calls

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        body = self._http.request(method, path, **kw).json()
        if not isinstance(body, dict) or "result" not in body:
            raise VendorError("ServiceNow answered without a result")
        return body["result"]

    def _user_of(self, email: str) -> str:
        """The sys_id of the user whose email is ``email``."""
        if not is_plain_email(email):  # it goes into an encoded query
            raise PersonUnmapped(f"{email!r} is not a plain email address")
        params = {
            "sysparm_query": f"email={email}",
            "sysparm_fields": _USER_FIELDS,
            "sysparm_limit": "1",
        }
        found = self._call("GET", _USERS, params=params)
        user = found[0] if isinstance(found, list) and found else None
        # Only a row that shows the very email asked for names that person.
        if not isinstance(user, dict) or str(user.get("email") or "").lower() != email.lower():
            raise PersonUnmapped(f"no ServiceNow user (sys_user) has the email {email!r}")
        return str(user["sys_id"])

    def _email_of(self, sys_id: str) -> str:
        try:
            user = self._call("GET", f"{_USERS}/{sys_id}", params={"sysparm_fields": _USER_FIELDS})
        except VendorError as exc:
            if exc.status == 404:
                raise PersonUnmapped(f"no ServiceNow user (sys_user) {sys_id!r}") from None
            raise
        if not isinstance(user, dict) or not user.get("email"):
            name = user.get("user_name") if isinstance(user, dict) else None
            raise PersonUnmapped(
                f"the ServiceNow user {name or sys_id!r} has no email, "
                "so they cannot be matched to a person here"
            )
        return str(user["email"])

    def _ticket(self, record: Mapping[str, Any]) -> Ticket:
        sys_id = str(record.get("sys_id") or "")
        if not sys_id:
            raise VendorError("ServiceNow returned a record without sys_id")
        assigned = record.get(_ASSIGNED)
        if isinstance(assigned, dict):  # a reference: {"link": ..., "value": sys_id}
            assigned = assigned.get("value")
        fields = dict(record)
        unmapped: dict[str, str] = {}
        fields[_ASSIGNED] = None
        if assigned:
            try:
                fields[_ASSIGNED] = self.people.email(str(assigned))
            except PersonUnmapped as exc:
                fields[_ASSIGNED] = str(assigned)
                unmapped[_ASSIGNED] = str(exc)
        return Ticket(
            external_id=sys_id,
            key=str(record.get("number") or sys_id),
            version=int(record.get("sys_mod_count") or 0),
            updated_us=parse_sn_time(record.get("sys_updated_on")),
            fields=fields,
            updated_by=record.get("sys_updated_by") or None,
            correlation=record.get("correlation_id") or None,
            url=f"{self.base_url}/nav_to.do?uri=incident.do?sys_id={sys_id}",
            unmapped=unmapped,
        )

    def find(self, correlation: str) -> Ticket | None:
        result = self._call(
            "GET",
            self._path,
            params={"sysparm_query": f"correlation_id={correlation}", "sysparm_limit": "1"},
        )
        return self._ticket(result[0]) if result else None

    def _body(self, changes: Mapping[str, Any], refused: dict[str, str]) -> dict[str, Any]:
        """The record body of ``changes``; what cannot be written goes to ``refused``."""
        body = dict(changes)
        if _ASSIGNED in body:
            email = body.pop(_ASSIGNED)
            try:
                body[_ASSIGNED] = self.people.vendor_id(str(email)) if email else ""
            except PersonUnmapped as exc:
                refused[_ASSIGNED] = str(exc)
        if str(body.get("state")) in _RESOLVED:
            # The vendor's business rule refuses a resolve without a close code.
            body.setdefault("close_code", self._close_code)
            body.setdefault("close_notes", self._close_notes)
        return body

    def create(self, fields: Mapping[str, Any], correlation: str) -> Ticket:
        refused: dict[str, str] = {}
        body = self._body(fields, refused)
        body["correlation_id"] = correlation
        body["correlation_display"] = "Incidents"
        ticket = self._ticket(self._call("POST", self._path, json=body))
        if refused:
            raise FieldsUnwritable(ticket, refused)
        return ticket

    def get(self, external_id: str) -> Ticket:
        return self._ticket(self._call("GET", f"{self._path}/{external_id}"))

    def update(self, external_id: str, changes: Mapping[str, Any]) -> Ticket:
        refused: dict[str, str] = {}
        body = self._body(changes, refused)
        if body:
            ticket = self._ticket(self._call("PATCH", f"{self._path}/{external_id}", json=body))
        else:
            ticket = self.get(external_id)
        if refused:
            raise FieldsUnwritable(ticket, refused)
        return ticket

    def add_note(self, external_id: str, text: str) -> str:
        # Work notes are a journal: writing the field appends an entry.
        self._call("PATCH", f"{self._path}/{external_id}", json={"work_notes": text})
        return ""

    def changed_since(self, since_us: int | None) -> Sequence[Ticket]:
        query = "correlation_idISNOTEMPTY"
        if since_us is not None:
            query += f"^sys_updated_on>={sn_time(max(0, since_us))}"
        query += "^ORDERBYsys_updated_on"
        tickets: list[Ticket] = []
        offset = 0
        while True:
            params = {
                "sysparm_query": query,
                "sysparm_limit": str(_PAGE),
                "sysparm_offset": str(offset),
            }
            page = self._call("GET", self._path, params=params)
            tickets.extend(self._ticket(r) for r in page)
            if len(page) < _PAGE:
                return tickets
            offset += _PAGE

    def person_email(self, person: str) -> str:
        return self.people.as_email(person)

    def comments(self, external_id: str) -> Sequence[Comment]:
        """The ticket's work notes (journal entries), oldest first, less our own."""
        params = {
            "sysparm_query": f"element_id={external_id}^element=work_notes^ORDERBYsys_created_on",
            "sysparm_fields": "sys_id,value,sys_created_by,sys_created_on",
        }
        entries = self._call("GET", "/api/now/table/sys_journal_field", params=params)
        return [
            Comment(
                str(entry.get("sys_id")),
                entry.get("sys_created_by"),
                str(entry.get("value") or ""),
                parse_sn_time(entry.get("sys_created_on")),
            )
            for entry in entries
            # Our own notes come back as journal entries written by our user: never
            # taken back.
            if entry.get("sys_created_by") != self.username and entry.get("value")
        ]
