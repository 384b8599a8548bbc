"""SCIM 2.0 provisioning (RFC 7643, RFC 7644): users, groups and their grants.

An identity provider (or ``incidents user``/``incidents group``) manages the directory
through ``/api/v1/users`` and ``/api/v1/groups``. Roles travel in the core ``roles``
attribute; attributes and clearance in the access extension
(:data:`ACCESS_SCHEMA`), on users and groups alike. Every endpoint needs the
``identity.admin`` action (role ``admin``), and every error, authentication included,
answers in the SCIM error format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from incidents.api.auth import decide, require
from incidents.api.body import BodyTooLarge, read_body
from incidents.api.nul import NUL, REFUSED, nul_path
from incidents.api.problems import Problem
from incidents.events.timeformat import format_micros
from incidents.identity.directory import (
    ConflictError,
    Directory,
    DirectoryError,
    GrantKind,
    Grants,
    Group,
    NotFoundError,
    PrincipalType,
    User,
    validate_grant,
)
from incidents.policy.model import Action, Decision

if TYPE_CHECKING:
    from incidents.app import Container

SCIM_JSON = "application/scim+json"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ACCESS_SCHEMA = "urn:incidents:params:scim:schemas:extension:access:2.0:User"
LIST_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:Error"

T = TypeVar("T")

# A directory request is small; this bounds what one request may make the server hold.
MAX_BODY_BYTES = 1024 * 1024
DEFAULT_COUNT = 100
MAX_COUNT = 1000
# Keys of a resource that a client may echo back but never sets.
READ_ONLY = frozenset({"schemas", "id", "meta", "groups"})


class ScimError(Exception):
    """An error answered in the SCIM format (RFC 7644 section 3.12)."""

    def __init__(
        self,
        status: int,
        detail: str,
        scim_type: str | None = None,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type
        self.headers = headers
        self.extra = extra or {}

    def response(self) -> Response:
        body: dict[str, Any] = {"schemas": [ERROR_SCHEMA], "status": str(self.status)}
        if self.scim_type:
            body["scimType"] = self.scim_type
        body["detail"] = self.detail
        body.update(self.extra)
        return Response(orjson.dumps(body), self.status, headers=self.headers, media_type=SCIM_JSON)


def _invalid(detail: str, scim_type: str = "invalidValue") -> ScimError:
    return ScimError(400, detail, scim_type)


class _ScimRoute(APIRoute):
    """A route whose every failure, the authentication dependency's included, is SCIM."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def scim_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except ScimError as exc:
                return exc.response()
            except Problem as exc:
                # 401/403/503 from authentication and policy, which speak problem+json
                # elsewhere; a provisioning client only understands SCIM errors.
                return ScimError(
                    exc.status, exc.detail, headers=exc.headers, extra=exc.extra
                ).response()
            except RequestValidationError as exc:
                detail = "; ".join(str(e.get("msg", "invalid")) for e in exc.errors())
                return _invalid(detail or "invalid request").response()

        return scim_handler


router = APIRouter(prefix="/api/v1", tags=["scim"], route_class=_ScimRoute)
Decided = Annotated[Decision, Depends(decide)]


# --- plumbing -----------------------------------------------------------------------


def _directory(request: Request) -> Directory:
    container: Container = request.app.state.container
    return container.directory


def _base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + router.prefix


def _scim(body: Any, status: int = 200, location: str | None = None) -> Response:
    headers = {"Location": location} if location else None
    return Response(orjson.dumps(body), status, headers=headers, media_type=SCIM_JSON)


async def _body(request: Request) -> dict[str, Any]:
    try:
        raw = await read_body(request, MAX_BODY_BYTES)
    except BodyTooLarge as exc:
        raise ScimError(413, str(exc)) from None
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _invalid(f"the body is not valid JSON: {exc}", "invalidSyntax") from None
    if not isinstance(body, dict):
        raise _invalid("the body must be a JSON object", "invalidSyntax")
    where = nul_path(body)
    if where is not None:
        # Refused here, not by the database: PostgreSQL would fail, SQLite would store it.
        raise _invalid(f"{where} {REFUSED}")
    return body


def _directory_error(exc: DirectoryError) -> ScimError:
    if isinstance(exc, NotFoundError):
        return ScimError(404, str(exc))
    if isinstance(exc, ConflictError):
        return ScimError(409, str(exc), "uniqueness")
    return _invalid(str(exc))


async def _run(func: Callable[..., T], *args: Any) -> T:
    """Run blocking directory work off the event loop, in SCIM error terms."""
    try:
        return await run_in_threadpool(func, *args)
    except DirectoryError as exc:
        raise _directory_error(exc) from None


def _lower(obj: dict[str, Any]) -> dict[str, Any]:
    # SCIM attribute names and schema URNs are case-insensitive (RFC 7643 section 2.1).
    return {str(k).lower(): v for k, v in obj.items()}


def _paging(request: Request) -> tuple[int, int]:
    def integer(name: str, default: int) -> int:
        raw = request.query_params.get(name)
        if raw is None or raw == "":
            return default
        try:
            return int(raw)
        except ValueError:
            raise _invalid(f"{name} must be an integer, not {raw!r}") from None

    # RFC 7644 section 3.4.2.4: below 1 means 1, a negative count means 0.
    # Past any real directory, and still inside a 64-bit OFFSET on both backends.
    start = min(max(integer("startIndex", 1), 1), 2**31)
    count = min(max(integer("count", DEFAULT_COUNT), 0), MAX_COUNT)
    return start, count


def _eq_filter(request: Request, attribute: str) -> str | None:
    """The value of the one supported filter, ``ATTRIBUTE eq "value"``, if given."""
    raw = request.query_params.get("filter")
    if raw is None or not raw.strip():
        return None
    match = re.fullmatch(rf'\s*{attribute}\s+eq\s+"((?:[^"\\]|\\.)*)"\s*', raw, flags=re.IGNORECASE)
    if match is None:
        raise _invalid(
            f'unsupported filter {raw!r}; the only filter supported is {attribute} eq "value"',
            "invalidFilter",
        )
    try:
        value: str = json.loads(f'"{match.group(1)}"')
    except json.JSONDecodeError:
        raise _invalid(f"bad escape in filter {raw!r}", "invalidFilter") from None
    if NUL in value:
        raise _invalid(f"the filter value {REFUSED}", "invalidFilter")
    return value


def _list_response(total: int, start: int, resources: list[dict[str, Any]]) -> Response:
    return _scim(
        {
            "schemas": [LIST_SCHEMA],
            "totalResults": total,
            "startIndex": start,
            "itemsPerPage": len(resources),
            "Resources": resources,
        }
    )


# --- values -------------------------------------------------------------------------


def _string(value: Any, name: str, *, nullable: bool) -> str | None:
    if value is None and nullable:
        return None
    if not isinstance(value, str) or (not nullable and not value.strip()):
        raise _invalid(f"{name} must be a {'string' if nullable else 'non-empty string'}")
    return value


def _bool(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    # Some identity providers send booleans as strings ("False").
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise _invalid(f"{name} must be a boolean")


def _values(value: Any, name: str) -> list[str]:
    """The values of a multi-valued attribute: ``[{"value": v}, ...]`` or plain strings."""
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if isinstance(item, dict):
            item = _lower(item).get("value")
        if not isinstance(item, str) or not item:
            raise _invalid(f'{name} takes values like [{{"value": "..."}}] or ["..."]')
        out.append(item)
    return out


def _checked(kind: GrantKind, values: Iterable[str]) -> list[str]:
    try:
        return [validate_grant(kind, v) for v in values]
    except DirectoryError as exc:
        raise _invalid(str(exc)) from None


def _clearance(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise _invalid("clearance must be a string")
    return _checked(GrantKind.CLEARANCE, [value])[0]


# --- state ----------------------------------------------------------------------------


@dataclass
class Access:
    """The grants a resource carries, as edited by a request."""

    roles: dict[str, None] = field(default_factory=dict)  # ordered sets
    attributes: dict[str, None] = field(default_factory=dict)
    clearance: str | None = None

    @classmethod
    def of(cls, grants: Grants) -> Access:
        return cls(
            dict.fromkeys(sorted(grants.roles)),
            dict.fromkeys(sorted(grants.attributes)),
            grants.clearance,
        )

    def differs(self, grants: Grants) -> list[tuple[GrantKind, list[str]]]:
        """The kinds whose grants must be rewritten to reach this state."""
        changes: list[tuple[GrantKind, list[str]]] = []
        if set(self.roles) != grants.roles:
            changes.append((GrantKind.ROLE, list(self.roles)))
        if set(self.attributes) != grants.attributes:
            changes.append((GrantKind.ATTRIBUTE, list(self.attributes)))
        if self.clearance != grants.clearance:
            changes.append((GrantKind.CLEARANCE, [self.clearance] if self.clearance else []))
        return changes


@dataclass
class UserState:
    email: str
    display_name: str | None = None
    external_id: str | None = None
    active: bool = True
    access: Access = field(default_factory=Access)

    @classmethod
    def of(cls, user: User) -> UserState:
        return cls(
            user.email, user.display_name, user.external_id, user.active, Access.of(user.grants)
        )


@dataclass
class GroupState:
    name: str
    external_id: str | None = None
    members: dict[str, None] = field(default_factory=dict)
    access: Access = field(default_factory=Access)

    @classmethod
    def of(cls, group: Group) -> GroupState:
        return cls(
            group.name,
            group.external_id,
            dict.fromkeys(uid for uid, _ in group.members),
            Access.of(group.grants),
        )


def _access_from(body: dict[str, Any]) -> Access:
    """Roles and the access extension of a full resource (POST, PUT)."""
    access = Access()
    if body.get("roles") is not None:
        access.roles = dict.fromkeys(_checked(GrantKind.ROLE, _values(body["roles"], "roles")))
    ext = body.get(ACCESS_SCHEMA.lower())
    if ext is None:
        return access
    if not isinstance(ext, dict):
        raise _invalid(f"{ACCESS_SCHEMA} must be an object")
    for key, value in _lower(ext).items():
        if key == "attributes":
            if value is not None:
                checked = _checked(GrantKind.ATTRIBUTE, _values(value, "attributes"))
                access.attributes = dict.fromkeys(checked)
        elif key == "clearance":
            access.clearance = _clearance(value)
        else:
            raise _invalid(f"{ACCESS_SCHEMA} has no attribute {key!r}", "invalidPath")
    return access


def _user_from(raw: dict[str, Any]) -> UserState:
    body = _lower(raw)
    email = body.get("username")
    if email is None and isinstance(body.get("emails"), list):
        # userName is the email; fall back to the primary (or first) email given.
        emails = [_lower(e) for e in body["emails"] if isinstance(e, dict)]
        chosen = next((e for e in emails if e.get("primary") is True), emails[0] if emails else {})
        email = chosen.get("value")
    if email is None:
        raise _invalid("userName (the user's email) is required")
    return UserState(
        email=str(_string(email, "userName", nullable=False)),
        display_name=_string(body.get("displayname"), "displayName", nullable=True),
        external_id=_string(body.get("externalid"), "externalId", nullable=True),
        active=_bool(body["active"], "active") if body.get("active") is not None else True,
        access=_access_from(body),
    )


def _member_ids(value: Any) -> list[str]:
    return _values(value, "members")


def _group_from(raw: dict[str, Any]) -> GroupState:
    body = _lower(raw)
    if body.get("displayname") is None:
        raise _invalid("displayName (the group's name) is required")
    members = body.get("members")
    return GroupState(
        name=str(_string(body["displayname"], "displayName", nullable=False)),
        external_id=_string(body.get("externalid"), "externalId", nullable=True),
        members=dict.fromkeys(_member_ids(members)) if members is not None else {},
        access=_access_from(body),
    )


# --- PATCH ----------------------------------------------------------------------------

_VALUE_FILTER = re.compile(r'(\w+)\[\s*value\s+eq\s+"((?:[^"\\]|\\.)*)"\s*\]', re.IGNORECASE)
EXTENSION = "<extension>"


@dataclass(frozen=True, slots=True)
class PatchOp:
    op: str  # add, replace or remove
    path: str | None
    value: Any


def _patch_ops(raw: dict[str, Any]) -> list[PatchOp]:
    body = _lower(raw)
    schemas = body.get("schemas")
    if not isinstance(schemas, list) or PATCH_SCHEMA.lower() not in (
        str(s).lower() for s in schemas
    ):
        raise _invalid(f"a PATCH body needs schemas [{PATCH_SCHEMA!r}]", "invalidSyntax")
    operations = body.get("operations")
    if not isinstance(operations, list) or not operations:
        raise _invalid("a PATCH body needs a non-empty Operations list", "invalidSyntax")
    ops: list[PatchOp] = []
    for item in operations:
        if not isinstance(item, dict):
            raise _invalid("each operation must be an object", "invalidSyntax")
        entry = _lower(item)
        op = str(entry.get("op", "")).lower()
        if op not in ("add", "replace", "remove"):
            raise _invalid(
                f"op must be add, replace or remove, not {entry.get('op')!r}", "invalidSyntax"
            )
        path = entry.get("path")
        if path is not None and (not isinstance(path, str) or not path.strip()):
            raise _invalid("path must be a non-empty string", "invalidPath")
        if op == "remove" and path is None:
            raise _invalid("a remove operation needs a path", "noTarget")
        # A value filter names the value itself: add roles[value eq "x"] needs no more.
        if op != "remove" and "value" not in entry and "[" not in (path or ""):
            raise _invalid(f"an {op} operation needs a value", "invalidSyntax")
        ops.append(PatchOp(op, path, entry.get("value")))
    return ops


def _parse_path(path: str, core_schema: str) -> tuple[str, str | None]:
    """(attribute, value filter) of a PATCH path; the attribute is lower case."""
    text = path.strip()
    low = text.lower()
    ext = ACCESS_SCHEMA.lower()
    if low == ext:
        return EXTENSION, None
    if low.startswith(ext + ":"):
        text = text[len(ext) + 1 :]
    elif low.startswith(core_schema.lower() + ":"):
        text = text[len(core_schema) + 1 :]
    match = _VALUE_FILTER.fullmatch(text)
    if match is not None:
        try:
            wanted: str = json.loads(f'"{match.group(2)}"')
        except json.JSONDecodeError:
            raise _invalid(f"bad escape in path {path!r}", "invalidPath") from None
        return match.group(1).lower(), wanted
    if not re.fullmatch(r"\w+", text):
        raise _invalid(f"unsupported path {path!r}", "invalidPath")
    return text.lower(), None


def _edit_set(
    current: dict[str, None],
    op: str,
    value: Any,
    wanted: str | None,
    parse: Callable[[Any], list[str]],
) -> dict[str, None]:
    """A multi-valued attribute after one operation (RFC 7644 section 3.5.2)."""
    if wanted is not None:
        if op == "remove":
            if wanted not in current:
                raise _invalid(f"no value {wanted!r} to remove", "noTarget")
            return {v: None for v in current if v != wanted}
        if op == "add":
            return {**current, wanted: None}
        # replace: the matched value gives way to the new one(s).
        replacement = parse(value) if value is not None else [wanted]
        return {**{v: None for v in current if v != wanted}, **dict.fromkeys(replacement)}
    if op == "remove":
        if value is None:
            return {}
        gone = set(parse(value))
        return {v: None for v in current if v not in gone}
    new = dict.fromkeys(parse(value))
    return {**current, **new} if op == "add" else new


def _patch_access(access: Access, attribute: str, op: str, value: Any, wanted: str | None) -> bool:
    """Apply one operation to the grants; False if ``attribute`` is not a grant."""
    if attribute == "roles":
        if wanted is not None:
            _checked(GrantKind.ROLE, [wanted])

        def roles(v: Any) -> list[str]:
            return _checked(GrantKind.ROLE, _values(v, "roles"))

        access.roles = _edit_set(access.roles, op, value, wanted, roles)
    elif attribute == "attributes":

        def attributes(v: Any) -> list[str]:
            return _checked(GrantKind.ATTRIBUTE, _values(v, "attributes"))

        access.attributes = _edit_set(access.attributes, op, value, wanted, attributes)
    elif attribute == "clearance" and wanted is None:
        access.clearance = None if op == "remove" else _clearance(value)
    elif attribute == EXTENSION:
        if op == "remove" and value is None:
            access.attributes, access.clearance = {}, None
            return True
        if not isinstance(value, dict):
            raise _invalid(f"the value for {ACCESS_SCHEMA} must be an object")
        for key, inner in _lower(value).items():
            if key not in ("attributes", "clearance"):
                raise _invalid(f"{ACCESS_SCHEMA} has no attribute {key!r}", "invalidPath")
            _patch_access(access, key, op, inner, None)
    else:
        return False
    return True


def _expand(op: PatchOp, core_schema: str) -> list[tuple[str, str | None, Any]]:
    """(attribute, filter, value) targets of one operation; no path means every key."""
    if op.path is not None:
        attribute, wanted = _parse_path(op.path, core_schema)
        return [(attribute, wanted, op.value)]
    if not isinstance(op.value, dict):
        raise _invalid(f"an {op.op} without a path needs an object value", "invalidSyntax")
    targets: list[tuple[str, str | None, Any]] = []
    for key, value in op.value.items():
        if str(key).lower() in READ_ONLY:
            continue
        attribute, wanted = _parse_path(str(key), core_schema)
        targets.append((attribute, wanted, value))
    return targets


def _unknown_path(attribute: str, wanted: str | None) -> ScimError:
    shown = f'{attribute}[value eq "{wanted}"]' if wanted is not None else attribute
    return _invalid(f"cannot patch {shown!r}", "invalidPath")


def _patch_user(state: UserState, ops: list[PatchOp]) -> UserState:
    state = replace(state, access=replace(state.access))
    for op in ops:
        for attribute, wanted, value in _expand(op, USER_SCHEMA):
            if _patch_access(state.access, attribute, op.op, value, wanted):
                continue
            if wanted is not None:
                raise _unknown_path(attribute, wanted)
            if attribute == "active":
                if op.op == "remove":
                    raise _invalid("active cannot be removed; replace it with false")
                state.active = _bool(value, "active")
            elif attribute == "displayname":
                state.display_name = (
                    None if op.op == "remove" else _string(value, "displayName", nullable=True)
                )
            elif attribute == "externalid":
                state.external_id = (
                    None if op.op == "remove" else _string(value, "externalId", nullable=True)
                )
            elif attribute == "username":
                if op.op == "remove":
                    raise _invalid("userName is required and cannot be removed")
                state.email = str(_string(value, "userName", nullable=False))
            else:
                raise _unknown_path(attribute, wanted)
    return state


def _patch_group(state: GroupState, ops: list[PatchOp]) -> GroupState:
    state = replace(state, access=replace(state.access))
    for op in ops:
        for attribute, wanted, value in _expand(op, GROUP_SCHEMA):
            if _patch_access(state.access, attribute, op.op, value, wanted):
                continue
            if attribute == "members":
                state.members = _edit_set(state.members, op.op, value, wanted, _member_ids)
            elif wanted is not None:
                raise _unknown_path(attribute, wanted)
            elif attribute == "displayname":
                if op.op == "remove":
                    raise _invalid("displayName is required and cannot be removed")
                state.name = str(_string(value, "displayName", nullable=False))
            elif attribute == "externalid":
                state.external_id = (
                    None if op.op == "remove" else _string(value, "externalId", nullable=True)
                )
            else:
                raise _unknown_path(attribute, wanted)
    return state


# --- writes (blocking; every request is validated in full before the first write) ----


def _write_grants(
    directory: Directory, ptype: PrincipalType, pid: str, access: Access, old: Grants
) -> None:
    for kind, values in access.differs(old):
        directory.set_grants(ptype, pid, kind, values)


def _create_user(directory: Directory, state: UserState) -> User:
    user = directory.create_user(state.email, state.display_name, state.external_id, state.active)
    try:
        _write_grants(directory, PrincipalType.USER, user.user_id, state.access, Grants())
    except DirectoryError:
        directory.delete_user(user.user_id)
        raise
    return directory.get_user(user.user_id)


def _save_user(directory: Directory, user: User, state: UserState) -> User:
    if state == UserState.of(user):
        return user
    # The columns first: a clash on userName then leaves the grants untouched.
    directory.replace_user(
        user.user_id,
        email=state.email,
        display_name=state.display_name,
        external_id=state.external_id,
        active=state.active,
    )
    _write_grants(directory, PrincipalType.USER, user.user_id, state.access, user.grants)
    return directory.get_user(user.user_id)


def _patch_user_in(directory: Directory, user_id: str, ops: list[PatchOp]) -> User:
    user = directory.get_user(user_id)
    return _save_user(directory, user, _patch_user(UserState.of(user), ops))


def _put_user(directory: Directory, user_id: str, state: UserState) -> User:
    return _save_user(directory, directory.get_user(user_id), state)


def _check_members(directory: Directory, user_ids: Iterable[str]) -> None:
    for uid in user_ids:
        try:
            directory.get_user(uid)
        except NotFoundError:
            raise _invalid(f"members: no user with id {uid!r}") from None


def _create_group(directory: Directory, state: GroupState) -> Group:
    _check_members(directory, state.members)
    group = directory.create_group(state.name, state.external_id)
    try:
        if state.members:
            directory.set_members(group.group_id, list(state.members), replace=True)
        _write_grants(directory, PrincipalType.GROUP, group.group_id, state.access, Grants())
    except DirectoryError:
        directory.delete_group(group.group_id)
        raise
    return directory.get_group(group.group_id)


def _save_group(directory: Directory, group: Group, state: GroupState) -> Group:
    before = GroupState.of(group)
    if state == before:
        return group
    _check_members(directory, (m for m in state.members if m not in before.members))
    directory.replace_group(group.group_id, name=state.name, external_id=state.external_id)
    if state.members != before.members:
        directory.set_members(group.group_id, list(state.members), replace=True)
    _write_grants(directory, PrincipalType.GROUP, group.group_id, state.access, group.grants)
    return directory.get_group(group.group_id)


def _patch_group_in(directory: Directory, group_id: str, ops: list[PatchOp]) -> Group:
    group = directory.get_group(group_id)
    return _save_group(directory, group, _patch_group(GroupState.of(group), ops))


def _put_group(directory: Directory, group_id: str, state: GroupState) -> Group:
    return _save_group(directory, directory.get_group(group_id), state)


# --- rendering ------------------------------------------------------------------------


def _meta(kind: str, location: str, created_us: int, updated_us: int) -> dict[str, str]:
    return {
        "resourceType": kind,
        "created": format_micros(created_us),
        "lastModified": format_micros(updated_us),
        "location": location,
    }


def _extension(grants: Grants) -> dict[str, Any]:
    return {"attributes": sorted(grants.attributes), "clearance": grants.clearance}


def user_resource(user: User, base: str) -> dict[str, Any]:
    """The SCIM representation of a user."""
    location = f"{base}/users/{user.user_id}"
    body: dict[str, Any] = {
        "schemas": [USER_SCHEMA, ACCESS_SCHEMA],
        "id": user.user_id,
        "userName": user.email,
        "active": user.active,
        "emails": [{"value": user.email, "type": "work", "primary": True}],
        "roles": [{"value": role} for role in sorted(user.grants.roles)],
        "groups": [
            {"value": gid, "display": name, "$ref": f"{base}/groups/{gid}"}
            for gid, name in user.groups
        ],
        ACCESS_SCHEMA: _extension(user.grants),
        "meta": _meta("User", location, user.created_us, user.updated_us),
    }
    if user.display_name is not None:
        body["displayName"] = user.display_name
    if user.external_id is not None:
        body["externalId"] = user.external_id
    return body


def group_resource(group: Group, base: str) -> dict[str, Any]:
    """The SCIM representation of a group."""
    location = f"{base}/groups/{group.group_id}"
    body: dict[str, Any] = {
        "schemas": [GROUP_SCHEMA, ACCESS_SCHEMA],
        "id": group.group_id,
        "displayName": group.name,
        "members": [
            {"value": uid, "display": email, "type": "User", "$ref": f"{base}/users/{uid}"}
            for uid, email in group.members
        ],
        "roles": [{"value": role} for role in sorted(group.grants.roles)],
        ACCESS_SCHEMA: _extension(group.grants),
        "meta": _meta("Group", location, group.created_us, group.updated_us),
    }
    if group.external_id is not None:
        body["externalId"] = group.external_id
    return body


# --- users ----------------------------------------------------------------------------


@router.post("/users", status_code=201, summary="Create a user (SCIM)")
async def create_user(request: Request, decision: Decided) -> Response:
    """Create a user with its roles, attributes and clearance; 409 if the userName exists."""
    require(request, decision, Action.ADMIN, "users")
    state = _user_from(await _body(request))
    user = await _run(_create_user, _directory(request), state)
    resource = user_resource(user, _base(request))
    return _scim(resource, 201, resource["meta"]["location"])


@router.get("/users", summary="List users (SCIM)")
async def list_users(request: Request, decision: Decided) -> Response:
    """Users by email, paged with startIndex and count; filter ``userName eq "EMAIL"``."""
    require(request, decision, Action.ADMIN, "users")
    email = _eq_filter(request, "userName")
    start, count = _paging(request)
    total, page = await _run(_directory(request).list_users, email, start, count)
    base = _base(request)
    return _list_response(total, start, [user_resource(u, base) for u in page])


@router.get("/users/{user_id}", summary="Fetch a user (SCIM)")
async def get_user(request: Request, decision: Decided, user_id: str) -> Response:
    """One user, with its own grants and its groups."""
    require(request, decision, Action.ADMIN, f"user/{user_id}")
    user = await _run(_directory(request).get_user, user_id)
    return _scim(user_resource(user, _base(request)))


@router.put("/users/{user_id}", summary="Replace a user (SCIM)")
async def put_user(request: Request, decision: Decided, user_id: str) -> Response:
    """Replace a user's attributes and grants; whatever the body leaves out is cleared."""
    require(request, decision, Action.ADMIN, f"user/{user_id}")
    state = _user_from(await _body(request))
    user = await _run(_put_user, _directory(request), user_id, state)
    return _scim(user_resource(user, _base(request)))


@router.patch("/users/{user_id}", summary="Modify a user (SCIM PatchOp)")
async def patch_user(request: Request, decision: Decided, user_id: str) -> Response:
    """Apply add, replace and remove operations to a user, all or none."""
    require(request, decision, Action.ADMIN, f"user/{user_id}")
    ops = _patch_ops(await _body(request))
    user = await _run(_patch_user_in, _directory(request), user_id, ops)
    return _scim(user_resource(user, _base(request)))


@router.delete("/users/{user_id}", status_code=204, summary="Delete a user (SCIM)")
async def delete_user(request: Request, decision: Decided, user_id: str) -> Response:
    """Delete a user, its grants and memberships (its tokens stop working)."""
    require(request, decision, Action.ADMIN, f"user/{user_id}")
    await _run(_directory(request).delete_user, user_id)
    return Response(status_code=204)


# --- groups ---------------------------------------------------------------------------


@router.post("/groups", status_code=201, summary="Create a group (SCIM)")
async def create_group(request: Request, decision: Decided) -> Response:
    """Create a group with members and grants; 409 if the displayName exists."""
    require(request, decision, Action.ADMIN, "groups")
    state = _group_from(await _body(request))
    group = await _run(_create_group, _directory(request), state)
    resource = group_resource(group, _base(request))
    return _scim(resource, 201, resource["meta"]["location"])


@router.get("/groups", summary="List groups (SCIM)")
async def list_groups(request: Request, decision: Decided) -> Response:
    """Groups by name, paged with startIndex and count; filter ``displayName eq "NAME"``."""
    require(request, decision, Action.ADMIN, "groups")
    name = _eq_filter(request, "displayName")
    start, count = _paging(request)
    total, page = await _run(_directory(request).list_groups, name, start, count)
    base = _base(request)
    return _list_response(total, start, [group_resource(g, base) for g in page])


@router.get("/groups/{group_id}", summary="Fetch a group (SCIM)")
async def get_group(request: Request, decision: Decided, group_id: str) -> Response:
    """One group, with its members and grants."""
    require(request, decision, Action.ADMIN, f"group/{group_id}")
    group = await _run(_directory(request).get_group, group_id)
    return _scim(group_resource(group, _base(request)))


@router.put("/groups/{group_id}", summary="Replace a group (SCIM)")
async def put_group(request: Request, decision: Decided, group_id: str) -> Response:
    """Replace a group's name, members and grants; whatever the body leaves out is cleared."""
    require(request, decision, Action.ADMIN, f"group/{group_id}")
    state = _group_from(await _body(request))
    group = await _run(_put_group, _directory(request), group_id, state)
    return _scim(group_resource(group, _base(request)))


@router.patch("/groups/{group_id}", summary="Modify a group (SCIM PatchOp)")
async def patch_group(request: Request, decision: Decided, group_id: str) -> Response:
    """Apply add, replace and remove operations (members included) to a group."""
    require(request, decision, Action.ADMIN, f"group/{group_id}")
    ops = _patch_ops(await _body(request))
    group = await _run(_patch_group_in, _directory(request), group_id, ops)
    return _scim(group_resource(group, _base(request)))


@router.delete("/groups/{group_id}", status_code=204, summary="Delete a group (SCIM)")
async def delete_group(request: Request, decision: Decided, group_id: str) -> Response:
    """Delete a group; its members lose the grants they had through it."""
    require(request, decision, Action.ADMIN, f"group/{group_id}")
    await _run(_directory(request).delete_group, group_id)
    return Response(status_code=204)
