"""``incidents user`` and ``incidents group``: the directory, through the server's SCIM API.

Every command needs a token of a user with the ``admin`` role (IM_TOKEN or
``incidents login``). Users are named by email and groups by name; the commands look
their SCIM ids up first.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from incidents.cli.client import ApiClient, CliError
from incidents.cli.credentials import load_credentials
from incidents.policy.model import ATTRIBUTES, CLEARANCE_LEVELS, ROLES

USERS = "/api/v1/users"
GROUPS = "/api/v1/groups"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Group"
ACCESS = "urn:incidents:params:scim:schemas:extension:access:2.0:User"
PATCH_SCHEMA = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SCIM_HEADERS = {"Content-Type": "application/scim+json", "Accept": "application/scim+json"}

user_app = typer.Typer(
    help="Manage users and their roles, attributes and clearance (needs the admin role).",
    no_args_is_help=True,
)
group_app = typer.Typer(
    help="Manage groups, their members and the grants members inherit (needs the admin role).",
    no_args_is_help=True,
)
user_roles = typer.Typer(help="List, grant and revoke a user's roles.", no_args_is_help=True)
user_attrs = typer.Typer(help="List, grant and revoke a user's attributes.", no_args_is_help=True)
user_clearance = typer.Typer(help="Set a user's clearance.", no_args_is_help=True)
group_members = typer.Typer(help="Add and remove a group's members.", no_args_is_help=True)
group_roles = typer.Typer(help="Grant and revoke a group's roles.", no_args_is_help=True)
group_attrs = typer.Typer(help="Grant and revoke a group's attributes.", no_args_is_help=True)
user_app.add_typer(user_roles, name="roles")
user_app.add_typer(user_attrs, name="attrs")
user_app.add_typer(user_clearance, name="clearance")
group_app.add_typer(group_members, name="members")
group_app.add_typer(group_roles, name="roles")
group_app.add_typer(group_attrs, name="attrs")

Email = Annotated[str, typer.Option("--email", "-e", help="The user's email")]
Role = Annotated[str, typer.Option("--role", "-r", help=f"One of: {', '.join(ROLES)}")]
Attr = Annotated[str, typer.Option("--attr", "-a", help=f"One of: {', '.join(ATTRIBUTES)}")]
GroupName = Annotated[str, typer.Argument(help="The group's name")]


# --- plumbing -----------------------------------------------------------------------


@contextmanager
def _client() -> Iterator[ApiClient]:
    with ApiClient(load_credentials()) as client:
        yield client


def _filter(attribute: str, value: str) -> str:
    # A JSON string is a valid SCIM string literal, quotes and backslashes escaped.
    return f"{attribute} eq {json.dumps(value)}"


def _find(client: ApiClient, path: str, attribute: str, value: str, what: str) -> dict[str, Any]:
    found = client.get_json(path, params={"filter": _filter(attribute, value)})
    if not found.get("Resources"):
        raise CliError(f"no {what} {value!r}")
    resource: dict[str, Any] = found["Resources"][0]
    return resource


def _user(client: ApiClient, email: str) -> dict[str, Any]:
    return _find(client, USERS, "userName", email, "user with email")


def _group(client: ApiClient, name: str) -> dict[str, Any]:
    return _find(client, GROUPS, "displayName", name, "group named")


def _all(client: ApiClient, path: str) -> list[dict[str, Any]]:
    """Every resource, page after page."""
    resources: list[dict[str, Any]] = []
    while True:
        page = client.get_json(path, params={"startIndex": len(resources) + 1, "count": 200})
        resources.extend(page["Resources"])
        if not page["Resources"] or len(resources) >= page["totalResults"]:
            return resources


def _patch(client: ApiClient, path: str, *operations: dict[str, Any]) -> dict[str, Any]:
    body = {"schemas": [PATCH_SCHEMA], "Operations": list(operations)}
    resource: dict[str, Any] = client.request(
        "PATCH", path, content=json.dumps(body), headers=SCIM_HEADERS
    ).json()
    return resource


def _post(client: ApiClient, path: str, body: dict[str, Any]) -> dict[str, Any]:
    resource: dict[str, Any] = client.request(
        "POST", path, ok=(201,), content=json.dumps(body), headers=SCIM_HEADERS
    ).json()
    return resource


def _roles(resource: dict[str, Any]) -> list[str]:
    return [r["value"] for r in resource.get("roles", [])]


def _attrs(resource: dict[str, Any]) -> list[str]:
    return list(resource.get(ACCESS, {}).get("attributes", []))


def _clearance(resource: dict[str, Any]) -> str | None:
    value: str | None = resource.get(ACCESS, {}).get("clearance")
    return value


def _user_groups(client: ApiClient, user: dict[str, Any]) -> list[dict[str, Any]]:
    return [client.get_json(f"{GROUPS}/{g['value']}") for g in user.get("groups", [])]


def _joined(values: list[str]) -> str:
    return ", ".join(values) if values else "-"


# --- users ----------------------------------------------------------------------------


@user_app.command("list")
def user_list() -> None:
    """List users with their own roles, attributes, clearance and groups."""
    with _client() as client:
        users = _all(client, USERS)
    table = Table()
    for column in ("Email", "Name", "Active", "Roles", "Attributes", "Clearance", "Groups"):
        table.add_column(column)
    for user in users:
        table.add_row(
            user["userName"],
            user.get("displayName", ""),
            "yes" if user["active"] else "no",
            _joined(_roles(user)),
            _joined(_attrs(user)),
            _clearance(user) or "-",
            _joined([g["display"] for g in user.get("groups", [])]),
        )
    Console().print(table)


@user_app.command("create")
def user_create(
    email: Email,
    name: Annotated[str | None, typer.Option("--name", "-n", help="Display name")] = None,
) -> None:
    """Add a user with no grants (grant roles with: incidents user roles add)."""
    body: dict[str, Any] = {"schemas": [USER_SCHEMA], "userName": email}
    if name is not None:
        body["displayName"] = name
    with _client() as client:
        user = _post(client, USERS, body)
    typer.echo(f"created user {user['userName']} ({user['id']})")


@user_app.command("deactivate")
def user_deactivate(email: Email) -> None:
    """Deactivate a user: their tokens are refused, their grants are kept."""
    with _client() as client:
        user = _user(client, email)
        _patch(client, f"{USERS}/{user['id']}", {"op": "replace", "path": "active", "value": False})
    typer.echo(f"deactivated {user['userName']}")


def _list_grants(email: str, kind: str) -> None:
    """Print a user's own ``roles`` or ``attributes``, then those inherited from groups."""
    getter = _roles if kind == "roles" else _attrs
    with _client() as client:
        user = _user(client, email)
        lines = list(getter(user))
        for group in _user_groups(client, user):
            lines += [f"{value} (from group {group['displayName']})" for value in getter(group)]
    if not lines:
        typer.echo(f"{user['userName']} has no {kind}", err=True)
    for line in lines:
        typer.echo(line)


def _revoke_check(
    client: ApiClient, user: dict[str, Any], value: str, kind: str, own: list[str]
) -> None:
    if value in own:
        return
    getter = _roles if kind == "role" else _attrs
    via = [g["displayName"] for g in _user_groups(client, user) if value in getter(g)]
    hint = f"; it comes from group {', '.join(via)}" if via else ""
    raise CliError(f"{user['userName']} has no {kind} {value} of their own{hint}")


@user_roles.command("list")
def user_roles_list(email: Email) -> None:
    """List a user's roles, those inherited from groups marked as such."""
    _list_grants(email, "roles")


@user_roles.command("add")
def user_roles_add(email: Email, role: Role) -> None:
    """Grant a role to a user."""
    with _client() as client:
        user = _user(client, email)
        _patch(
            client,
            f"{USERS}/{user['id']}",
            {"op": "add", "path": f"roles[value eq {json.dumps(role)}]"},
        )
    typer.echo(f"granted role {role} to {user['userName']}")


@user_roles.command("remove")
def user_roles_remove(email: Email, role: Role) -> None:
    """Revoke a role from a user (roles from groups are changed on the group)."""
    with _client() as client:
        user = _user(client, email)
        _revoke_check(client, user, role, "role", _roles(user))
        _patch(
            client,
            f"{USERS}/{user['id']}",
            {"op": "remove", "path": f"roles[value eq {json.dumps(role)}]"},
        )
    typer.echo(f"revoked role {role} from {user['userName']}")


@user_attrs.command("list")
def user_attrs_list(email: Email) -> None:
    """List a user's attributes, those inherited from groups marked as such."""
    _list_grants(email, "attributes")


@user_attrs.command("add")
def user_attrs_add(email: Email, attr: Attr) -> None:
    """Grant an attribute (e.g. pii_access) to a user."""
    with _client() as client:
        user = _user(client, email)
        _patch(
            client,
            f"{USERS}/{user['id']}",
            {"op": "add", "path": f"{ACCESS}:attributes", "value": [attr]},
        )
    typer.echo(f"granted attribute {attr} to {user['userName']}")


@user_attrs.command("remove")
def user_attrs_remove(email: Email, attr: Attr) -> None:
    """Revoke an attribute from a user (attributes from groups are changed on the group)."""
    with _client() as client:
        user = _user(client, email)
        _revoke_check(client, user, attr, "attribute", _attrs(user))
        _patch(
            client,
            f"{USERS}/{user['id']}",
            {"op": "remove", "path": f"{ACCESS}:attributes", "value": [attr]},
        )
    typer.echo(f"revoked attribute {attr} from {user['userName']}")


@user_clearance.command("set")
def user_clearance_set(
    email: Email,
    level: Annotated[
        str, typer.Argument(help=f"One of: {', '.join(CLEARANCE_LEVELS)}, or none to clear it")
    ],
) -> None:
    """Set a user's own clearance (the highest of theirs and their groups' applies)."""
    op: dict[str, Any] = (
        {"op": "remove", "path": f"{ACCESS}:clearance"}
        if level == "none"
        else {"op": "replace", "path": f"{ACCESS}:clearance", "value": level}
    )
    with _client() as client:
        user = _user(client, email)
        _patch(client, f"{USERS}/{user['id']}", op)
    typer.echo(f"set clearance of {user['userName']} to {level}")


# --- groups ---------------------------------------------------------------------------


@group_app.command("create")
def group_create(name: GroupName) -> None:
    """Create an empty group with no grants."""
    with _client() as client:
        group = _post(client, GROUPS, {"schemas": [GROUP_SCHEMA], "displayName": name})
    typer.echo(f"created group {group['displayName']} ({group['id']})")


@group_app.command("list")
def group_list() -> None:
    """List groups with their member count and grants."""
    with _client() as client:
        groups = _all(client, GROUPS)
    table = Table()
    for column in ("Name", "Members", "Roles", "Attributes", "Clearance"):
        table.add_column(column)
    for group in groups:
        table.add_row(
            group["displayName"],
            str(len(group.get("members", []))),
            _joined(_roles(group)),
            _joined(_attrs(group)),
            _clearance(group) or "-",
        )
    Console().print(table)


@group_app.command("show")
def group_show(name: GroupName) -> None:
    """Show a group's grants and members."""
    with _client() as client:
        group = _group(client, name)
    typer.echo(f"group:      {group['displayName']} ({group['id']})")
    typer.echo(f"roles:      {_joined(_roles(group))}")
    typer.echo(f"attributes: {_joined(_attrs(group))}")
    typer.echo(f"clearance:  {_clearance(group) or '-'}")
    typer.echo(f"members:    {_joined([m['display'] for m in group.get('members', [])])}")


@group_app.command("delete")
def group_delete(name: GroupName) -> None:
    """Delete a group; its members lose the grants they had through it."""
    with _client() as client:
        group = _group(client, name)
        client.request("DELETE", f"{GROUPS}/{group['id']}", ok=(204,))
    typer.echo(f"deleted group {group['displayName']}")


@group_members.command("add")
def group_members_add(name: GroupName, email: Email) -> None:
    """Add a user to a group."""
    with _client() as client:
        group = _group(client, name)
        user = _user(client, email)
        _patch(
            client,
            f"{GROUPS}/{group['id']}",
            {"op": "add", "path": "members", "value": [{"value": user["id"]}]},
        )
    typer.echo(f"added {user['userName']} to group {group['displayName']}")


@group_members.command("remove")
def group_members_remove(name: GroupName, email: Email) -> None:
    """Take a user out of a group."""
    with _client() as client:
        group = _group(client, name)
        user = _user(client, email)
        if user["id"] not in {m["value"] for m in group.get("members", [])}:
            raise CliError(f"{user['userName']} is not a member of group {group['displayName']}")
        _patch(
            client,
            f"{GROUPS}/{group['id']}",
            {"op": "remove", "path": f"members[value eq {json.dumps(user['id'])}]"},
        )
    typer.echo(f"removed {user['userName']} from group {group['displayName']}")


def _group_grant(name: str, op: str, kind: str, value: str) -> None:
    with _client() as client:
        group = _group(client, name)
        current = _roles(group) if kind == "role" else _attrs(group)
        if op == "remove" and value not in current:
            raise CliError(f"group {group['displayName']} has no {kind} {value}")
        operation: dict[str, Any] = (
            {"op": op, "path": f"roles[value eq {json.dumps(value)}]"}
            if kind == "role"
            else {"op": op, "path": f"{ACCESS}:attributes", "value": [value]}
        )
        _patch(client, f"{GROUPS}/{group['id']}", operation)
    done = "granted" if op == "add" else "revoked"
    where = "to" if op == "add" else "from"
    typer.echo(f"{done} {kind} {value} {where} group {group['displayName']}")


@group_roles.command("add")
def group_roles_add(name: GroupName, role: Role) -> None:
    """Grant a role to a group; its members inherit it."""
    _group_grant(name, "add", "role", role)


@group_roles.command("remove")
def group_roles_remove(name: GroupName, role: Role) -> None:
    """Revoke a role from a group."""
    _group_grant(name, "remove", "role", role)


@group_attrs.command("add")
def group_attrs_add(name: GroupName, attr: Attr) -> None:
    """Grant an attribute to a group; its members inherit it."""
    _group_grant(name, "add", "attribute", attr)


@group_attrs.command("remove")
def group_attrs_remove(name: GroupName, attr: Attr) -> None:
    """Revoke an attribute from a group."""
    _group_grant(name, "remove", "attribute", attr)
