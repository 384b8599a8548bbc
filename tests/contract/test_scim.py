"""SCIM 2.0 provisioning of users and groups, on both backends, and its effect on access."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from incidents.app import Container, build_container, create_app
from incidents.policy.model import ATTRIBUTES, ROLES
from tests.conftest import Api, event, grant_access, make_settings

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ACCESS = "urn:incidents:params:scim:schemas:extension:access:2.0:User"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


@dataclass
class Scim:
    """A test client holding an admin's token."""

    client: TestClient
    token: str
    container: Container

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/scim+json"}

    def get(self, path: str, **params: Any) -> Any:
        return self.client.get(f"/api/v1{path}", params=params, headers=self.headers)

    def post(self, path: str, body: Any) -> Any:
        return self.client.post(f"/api/v1{path}", json=body, headers=self.headers)

    def put(self, path: str, body: Any) -> Any:
        return self.client.put(f"/api/v1{path}", json=body, headers=self.headers)

    def patch(self, path: str, *operations: dict[str, Any]) -> Any:
        body = {"schemas": [PATCH], "Operations": list(operations)}
        return self.client.patch(f"/api/v1{path}", json=body, headers=self.headers)

    def delete(self, path: str) -> Any:
        return self.client.delete(f"/api/v1{path}", headers=self.headers)

    def create_user(self, email: str, **fields: Any) -> dict[str, Any]:
        response = self.post("/users", {"schemas": [USER], "userName": email, **fields})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def create_group(self, name: str, **fields: Any) -> dict[str, Any]:
        response = self.post("/groups", {"schemas": [GROUP], "displayName": name, **fields})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body


def _admin(container: Container, client: TestClient) -> Scim:
    grant_access(container, "admin@example.com", roles=("admin",), attributes=())
    _, token = container.tokens.create("admin@example.com")
    return Scim(client, token, container)


@pytest.fixture
def scim(api: Api) -> Scim:
    return _admin(api.container, api.client)


@pytest.fixture
def live(database_url: str) -> Iterator[Scim]:
    """An admin client on a server that reuses no subject or decision, so grants given
    through SCIM apply to the very next request."""
    container = build_container(make_settings(database_url, policy_cache_seconds=0))
    grant_access(container, "alice@example.com")
    with TestClient(create_app(container)) as client:
        yield _admin(container, client)


def roles_of(resource: dict[str, Any]) -> list[str]:
    return [r["value"] for r in resource["roles"]]


def assert_error(response: Any, status: int, scim_type: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    body: dict[str, Any] = response.json()
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type
    assert body["detail"]
    return body


# --- users -------------------------------------------------------------------------------


def test_create_and_get_user(scim: Scim) -> None:
    response = scim.post(
        "/users",
        {
            "schemas": [USER, ACCESS],
            "userName": "Bob@Example.com",
            "displayName": "Bob",
            "externalId": "idp-42",
            "active": True,
            "emails": [{"value": "bob@example.com", "primary": True}],
            "roles": [{"value": "timeline.reader"}, {"value": "timeline.writer"}],
            ACCESS: {"attributes": ["pii_access"], "clearance": "internal"},
        },
    )
    assert response.status_code == 201, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    user = response.json()
    assert user["schemas"] == [USER, ACCESS]
    assert user["id"].startswith("usr_")
    assert user["userName"] == "bob@example.com"
    assert user["displayName"] == "Bob"
    assert user["externalId"] == "idp-42"
    assert user["active"] is True
    assert user["emails"][0]["value"] == "bob@example.com"
    assert roles_of(user) == ["timeline.reader", "timeline.writer"]
    assert user[ACCESS] == {"attributes": ["pii_access"], "clearance": "internal"}
    meta = user["meta"]
    assert meta["resourceType"] == "User"
    assert meta["location"].endswith(f"/api/v1/users/{user['id']}")
    assert response.headers["location"] == meta["location"]
    assert meta["created"].endswith("Z") and meta["lastModified"].endswith("Z")

    fetched = scim.get(f"/users/{user['id']}")
    assert fetched.status_code == 200
    assert fetched.headers["content-type"].startswith("application/scim+json")
    assert fetched.json() == user


def test_create_user_errors(scim: Scim) -> None:
    scim.create_user("bob@example.com")
    body = assert_error(scim.post("/users", {"userName": "BOB@example.com"}), 409, "uniqueness")
    assert "bob@example.com" in body["detail"]

    body = assert_error(
        scim.post("/users", {"userName": "carol@example.com", "roles": [{"value": "root"}]}),
        400,
        "invalidValue",
    )
    assert "root" in body["detail"] and all(role in body["detail"] for role in ROLES)
    body = assert_error(
        scim.post("/users", {"userName": "carol@example.com", ACCESS: {"attributes": ["x"]}}),
        400,
        "invalidValue",
    )
    assert all(attribute in body["detail"] for attribute in ATTRIBUTES)
    assert_error(
        scim.post("/users", {"userName": "carol@example.com", ACCESS: {"clearance": "top"}}),
        400,
        "invalidValue",
    )
    # Nothing was half-created by the refused requests.
    assert scim.get("/users", filter='userName eq "carol@example.com"').json()["totalResults"] == 0

    assert_error(scim.post("/users", {"displayName": "No Name"}), 400, "invalidValue")
    assert_error(scim.post("/users", {"userName": "not-an-email"}), 400, "invalidValue")
    assert_error(
        scim.post("/users", {"userName": "d@example.com", "active": 3}), 400, "invalidValue"
    )
    bad_json = scim.client.post("/api/v1/users", content=b"{nope", headers=scim.headers)
    assert_error(bad_json, 400, "invalidSyntax")
    assert_error(scim.post("/users", ["a list"]), 400, "invalidSyntax")


def test_user_name_falls_back_to_primary_email(scim: Scim) -> None:
    response = scim.post(
        "/users",
        {"emails": [{"value": "x@example.com"}, {"value": "dave@example.com", "primary": True}]},
    )
    assert response.status_code == 201
    assert response.json()["userName"] == "dave@example.com"


def test_filter_and_paging(scim: Scim) -> None:
    for n in range(5):
        scim.create_user(f"user{n}@example.com")
    # alice (from the api fixture) and the admin are there too.
    everyone = scim.get("/users").json()
    assert everyone["schemas"] == [LIST]
    assert everyone["totalResults"] == 7
    assert everyone["startIndex"] == 1
    assert everyone["itemsPerPage"] == 7
    emails = [u["userName"] for u in everyone["Resources"]]
    assert emails == sorted(emails)

    page = scim.get("/users", startIndex=2, count=3).json()
    assert (page["totalResults"], page["startIndex"], page["itemsPerPage"]) == (7, 2, 3)
    assert [u["userName"] for u in page["Resources"]] == emails[1:4]
    assert scim.get("/users", startIndex=7, count=5).json()["itemsPerPage"] == 1
    empty = scim.get("/users", count=0).json()
    assert (empty["totalResults"], empty["itemsPerPage"], empty["Resources"]) == (7, 0, [])
    assert scim.get("/users", startIndex=0).json()["startIndex"] == 1
    assert_error(scim.get("/users", startIndex="two"), 400, "invalidValue")

    found = scim.get("/users", filter='userName eq "USER3@example.com"').json()
    assert found["totalResults"] == 1
    assert found["Resources"][0]["userName"] == "user3@example.com"
    assert scim.get("/users", filter='username EQ "user3@example.com"').json()["totalResults"] == 1
    assert scim.get("/users", filter='userName eq "nobody@example.com"').json() == {
        "schemas": [LIST],
        "totalResults": 0,
        "startIndex": 1,
        "itemsPerPage": 0,
        "Resources": [],
    }


@pytest.mark.parametrize(
    "expression",
    [
        'userName co "user"',
        'emails eq "user1@example.com"',
        "userName eq user1@example.com",
        'userName eq "a" and active eq true',
        'displayName eq "x"',
    ],
)
def test_unsupported_user_filters(scim: Scim, expression: str) -> None:
    assert_error(scim.get("/users", filter=expression), 400, "invalidFilter")


def test_patch_user_scalars(scim: Scim) -> None:
    uid = scim.create_user("bob@example.com", displayName="Bob")["id"]
    path = f"/users/{uid}"

    user = scim.patch(path, {"op": "replace", "path": "active", "value": False}).json()
    assert user["active"] is False
    # Without a path, and with the string booleans some identity providers send.
    user = scim.patch(
        path, {"op": "Replace", "value": {"active": "True", "displayName": "Robert"}}
    ).json()
    assert (user["active"], user["displayName"]) == (True, "Robert")
    user = scim.patch(path, {"op": "remove", "path": "displayName"}).json()
    assert "displayName" not in user
    user = scim.patch(path, {"op": "add", "path": "externalId", "value": "ext-1"}).json()
    assert user["externalId"] == "ext-1"
    user = scim.patch(
        path, {"op": "replace", "path": f"{USER}:userName", "value": "robert@example.com"}
    ).json()
    assert user["userName"] == "robert@example.com"
    assert user["meta"]["lastModified"] >= user["meta"]["created"]


def test_patch_user_roles(scim: Scim) -> None:
    uid = scim.create_user("bob@example.com")["id"]
    path = f"/users/{uid}"

    def patch(*ops: dict[str, Any]) -> list[str]:
        response = scim.patch(path, *ops)
        assert response.status_code == 200, response.text
        return roles_of(response.json())

    assert patch({"op": "add", "path": "roles", "value": [{"value": "timeline.reader"}]}) == [
        "timeline.reader"
    ]
    assert patch({"op": "add", "path": 'roles[value eq "timeline.writer"]'}) == [
        "timeline.reader",
        "timeline.writer",
    ]
    assert patch({"op": "add", "value": {"roles": [{"value": "admin"}]}}) == [
        "admin",
        "timeline.reader",
        "timeline.writer",
    ]
    assert patch({"op": "remove", "path": 'roles[value eq "admin"]'}) == [
        "timeline.reader",
        "timeline.writer",
    ]
    assert patch(
        {"op": "replace", "path": 'roles[value eq "timeline.writer"]', "value": "timeline.exporter"}
    ) == ["timeline.exporter", "timeline.reader"]
    assert patch({"op": "remove", "path": "roles", "value": [{"value": "timeline.reader"}]}) == [
        "timeline.exporter"
    ]
    assert patch({"op": "replace", "path": "roles", "value": ["incident.responder"]}) == [
        "incident.responder"
    ]
    assert patch({"op": "remove", "path": "roles"}) == []


def test_patch_user_access_extension(scim: Scim) -> None:
    uid = scim.create_user("bob@example.com")["id"]
    path = f"/users/{uid}"

    def patch(*ops: dict[str, Any]) -> dict[str, Any]:
        response = scim.patch(path, *ops)
        assert response.status_code == 200, response.text
        access: dict[str, Any] = response.json()[ACCESS]
        return access

    assert patch({"op": "add", "path": f"{ACCESS}:attributes", "value": ["pii_access"]}) == {
        "attributes": ["pii_access"],
        "clearance": None,
    }
    assert patch({"op": "replace", "path": f"{ACCESS}:clearance", "value": "confidential"}) == {
        "attributes": ["pii_access"],
        "clearance": "confidential",
    }
    # The extension as a whole, with a path and without.
    assert patch(
        {
            "op": "add",
            "path": ACCESS,
            "value": {"attributes": ["phi_access"], "clearance": "secret"},
        }
    ) == {"attributes": ["phi_access", "pii_access"], "clearance": "secret"}
    assert patch({"op": "replace", "value": {ACCESS: {"attributes": ["financial_access"]}}}) == {
        "attributes": ["financial_access"],
        "clearance": "secret",
    }
    assert patch(
        {"op": "remove", "path": f"{ACCESS}:attributes", "value": ["financial_access"]},
        {"op": "remove", "path": f"{ACCESS}:clearance"},
    ) == {"attributes": [], "clearance": None}
    assert patch({"op": "add", "value": {f"{ACCESS}:clearance": "internal"}}) == {
        "attributes": [],
        "clearance": "internal",
    }


def test_patch_user_errors(scim: Scim) -> None:
    uid = scim.create_user("bob@example.com", roles=[{"value": "timeline.reader"}])["id"]
    scim.create_user("carol@example.com")
    path = f"/users/{uid}"
    url = f"/api/v1{path}"

    no_schema = scim.client.patch(
        url,
        json={"Operations": [{"op": "add", "path": "active", "value": True}]},
        headers=scim.headers,
    )
    assert_error(no_schema, 400, "invalidSyntax")
    no_ops = scim.client.patch(url, json={"schemas": [PATCH]}, headers=scim.headers)
    assert_error(no_ops, 400, "invalidSyntax")
    assert_error(
        scim.patch(path, {"op": "merge", "path": "active", "value": True}), 400, "invalidSyntax"
    )
    assert_error(scim.patch(path, {"op": "add", "path": "active"}), 400, "invalidSyntax")
    assert_error(scim.patch(path, {"op": "remove"}), 400, "noTarget")
    assert_error(
        scim.patch(path, {"op": "replace", "path": "nickName", "value": "b"}), 400, "invalidPath"
    )
    assert_error(
        scim.patch(path, {"op": "replace", "path": "name.givenName", "value": "b"}),
        400,
        "invalidPath",
    )
    assert_error(
        scim.patch(path, {"op": "remove", "path": 'emails[value eq "bob@example.com"]'}),
        400,
        "invalidPath",
    )
    assert_error(
        scim.patch(path, {"op": "remove", "path": 'roles[value eq "admin"]'}), 400, "noTarget"
    )
    assert_error(scim.patch(path, {"op": "remove", "path": "userName"}), 400, "invalidValue")
    assert_error(
        scim.patch(path, {"op": "replace", "path": "active", "value": "yes"}), 400, "invalidValue"
    )
    body = assert_error(
        scim.patch(path, {"op": "add", "path": "roles", "value": [{"value": "superuser"}]}),
        400,
        "invalidValue",
    )
    assert "superuser" in body["detail"] and "timeline.reader" in body["detail"]
    assert_error(
        scim.patch(path, {"op": "add", "path": f"{ACCESS}:attributes", "value": ["x_access"]}),
        400,
        "invalidValue",
    )
    assert_error(scim.patch("/users/usr_missing", {"op": "remove", "path": "roles"}), 404)

    # A refused request changes nothing, not even the operations before the bad one.
    clash = scim.patch(
        path,
        {"op": "add", "path": "roles", "value": [{"value": "admin"}]},
        {"op": "replace", "path": "userName", "value": "carol@example.com"},
    )
    assert_error(clash, 409, "uniqueness")
    refused = scim.patch(
        path,
        {"op": "add", "path": "roles", "value": [{"value": "admin"}]},
        {"op": "replace", "path": "bogus", "value": 1},
    )
    assert_error(refused, 400, "invalidPath")
    user = scim.get(path).json()
    assert (user["userName"], roles_of(user)) == ("bob@example.com", ["timeline.reader"])


def test_put_user_replaces_everything(scim: Scim) -> None:
    created = scim.create_user(
        "bob@example.com",
        displayName="Bob",
        roles=[{"value": "timeline.reader"}],
        **{ACCESS: {"attributes": ["pii_access"], "clearance": "internal"}},
    )
    response = scim.put(
        f"/users/{created['id']}",
        {"schemas": [USER], "userName": "bob@example.com", "roles": [{"value": "admin"}]},
    )
    assert response.status_code == 200, response.text
    user = response.json()
    assert "displayName" not in user
    assert roles_of(user) == ["admin"]
    assert user[ACCESS] == {"attributes": [], "clearance": None}
    assert user["meta"]["created"] == created["meta"]["created"]

    scim.create_user("carol@example.com")
    clash = scim.put(f"/users/{created['id']}", {"userName": "carol@example.com"})
    assert_error(clash, 409, "uniqueness")
    assert_error(scim.put("/users/usr_missing", {"userName": "x@example.com"}), 404)


def test_delete_user(scim: Scim) -> None:
    uid = scim.create_user("bob@example.com")["id"]
    gid = scim.create_group("ops", members=[{"value": uid}])["id"]
    response = scim.delete(f"/users/{uid}")
    assert response.status_code == 204
    assert response.content == b""
    body = assert_error(scim.get(f"/users/{uid}"), 404)
    assert uid in body["detail"]
    assert_error(scim.delete(f"/users/{uid}"), 404)
    assert scim.get(f"/groups/{gid}").json()["members"] == []


# --- groups ------------------------------------------------------------------------------


def test_group_crud(scim: Scim) -> None:
    bob = scim.create_user("bob@example.com")["id"]
    carol = scim.create_user("carol@example.com")["id"]
    response = scim.post(
        "/groups",
        {
            "schemas": [GROUP, ACCESS],
            "displayName": "responders",
            "externalId": "okta-7",
            "members": [{"value": bob}],
            "roles": [{"value": "incident.responder"}],
            ACCESS: {"attributes": ["restricted_access"], "clearance": "confidential"},
        },
    )
    assert response.status_code == 201, response.text
    group = response.json()
    gid = group["id"]
    assert gid.startswith("grp_")
    assert group["schemas"] == [GROUP, ACCESS]
    assert group["displayName"] == "responders"
    assert group["externalId"] == "okta-7"
    assert [(m["value"], m["display"]) for m in group["members"]] == [(bob, "bob@example.com")]
    assert roles_of(group) == ["incident.responder"]
    assert group[ACCESS] == {"attributes": ["restricted_access"], "clearance": "confidential"}
    assert group["meta"]["resourceType"] == "Group"
    assert response.headers["location"] == group["meta"]["location"]
    assert group["meta"]["location"].endswith(f"/api/v1/groups/{gid}")
    assert scim.get(f"/groups/{gid}").json() == group
    # The user shows its membership.
    member_of = scim.get(f"/users/{bob}").json()["groups"]
    assert [(g["value"], g["display"]) for g in member_of] == [(gid, "responders")]

    assert_error(scim.post("/groups", {"displayName": "responders"}), 409, "uniqueness")
    assert_error(scim.post("/groups", {"externalId": "x"}), 400, "invalidValue")
    assert_error(
        scim.post("/groups", {"displayName": "g2", "members": [{"value": "usr_nobody"}]}),
        400,
        "invalidValue",
    )
    assert_error(
        scim.post("/groups", {"displayName": "g3", "roles": [{"value": "boss"}]}),
        400,
        "invalidValue",
    )
    assert scim.get("/groups", filter='displayName eq "g2"').json()["totalResults"] == 0

    replaced = scim.put(
        f"/groups/{gid}",
        {
            "displayName": "on-call",
            "members": [{"value": carol}],
            "roles": [{"value": "timeline.reader"}],
        },
    )
    assert replaced.status_code == 200, replaced.text
    group = replaced.json()
    assert group["displayName"] == "on-call"
    assert "externalId" not in group
    assert [m["value"] for m in group["members"]] == [carol]
    assert roles_of(group) == ["timeline.reader"]
    assert group[ACCESS] == {"attributes": [], "clearance": None}

    assert scim.delete(f"/groups/{gid}").status_code == 204
    assert_error(scim.get(f"/groups/{gid}"), 404)
    assert_error(scim.delete(f"/groups/{gid}"), 404)
    assert scim.get(f"/users/{carol}").json()["groups"] == []


def test_group_list_filter_and_paging(scim: Scim) -> None:
    for name in ("c-team", "a-team", "b-team"):
        scim.create_group(name)
    listed = scim.get("/groups").json()
    assert listed["schemas"] == [LIST]
    assert [g["displayName"] for g in listed["Resources"]] == ["a-team", "b-team", "c-team"]
    page = scim.get("/groups", startIndex=3, count=10).json()
    assert (page["totalResults"], page["startIndex"], page["itemsPerPage"]) == (3, 3, 1)
    assert page["Resources"][0]["displayName"] == "c-team"
    found = scim.get("/groups", filter='displayName eq "b-team"').json()
    assert [g["displayName"] for g in found["Resources"]] == ["b-team"]
    assert_error(scim.get("/groups", filter='displayName sw "b"'), 400, "invalidFilter")
    assert_error(scim.get("/groups", filter='userName eq "b-team"'), 400, "invalidFilter")


def test_patch_group(scim: Scim) -> None:
    bob = scim.create_user("bob@example.com")["id"]
    carol = scim.create_user("carol@example.com")["id"]
    gid = scim.create_group("ops")["id"]
    path = f"/groups/{gid}"

    def patch(*ops: dict[str, Any]) -> dict[str, Any]:
        response = scim.patch(path, *ops)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def members(group: dict[str, Any]) -> list[str]:
        return [m["value"] for m in group["members"]]

    assert members(patch({"op": "add", "path": "members", "value": [{"value": bob}]})) == [bob]
    assert members(patch({"op": "add", "value": {"members": [{"value": carol}]}})) == [bob, carol]
    assert members(patch({"op": "remove", "path": f'members[value eq "{bob}"]'})) == [carol]
    assert members(patch({"op": "add", "path": "members", "value": [{"value": bob}]})) == [
        bob,
        carol,
    ]
    assert members(patch({"op": "remove", "path": "members", "value": [{"value": carol}]})) == [bob]
    assert members(patch({"op": "replace", "path": "members", "value": [{"value": carol}]})) == [
        carol
    ]
    assert members(patch({"op": "remove", "path": "members"})) == []

    group = patch(
        {"op": "replace", "path": "displayName", "value": "operations"},
        {"op": "add", "path": "roles", "value": [{"value": "timeline.reader"}]},
        {"op": "add", "path": f"{ACCESS}:attributes", "value": ["pii_access"]},
        {"op": "replace", "value": {ACCESS: {"clearance": "restricted"}}},
    )
    assert group["displayName"] == "operations"
    assert roles_of(group) == ["timeline.reader"]
    assert group[ACCESS] == {"attributes": ["pii_access"], "clearance": "restricted"}
    group = patch(
        {"op": "remove", "path": 'roles[value eq "timeline.reader"]'},
        {"op": "remove", "path": ACCESS},
    )
    assert roles_of(group) == []
    assert group[ACCESS] == {"attributes": [], "clearance": None}

    assert_error(
        scim.patch(path, {"op": "add", "path": "members", "value": [{"value": "usr_nobody"}]}),
        400,
        "invalidValue",
    )
    assert_error(
        scim.patch(path, {"op": "remove", "path": f'members[value eq "{bob}"]'}), 400, "noTarget"
    )
    assert_error(scim.patch(path, {"op": "remove", "path": "displayName"}), 400, "invalidValue")
    assert_error(
        scim.patch(path, {"op": "replace", "path": "userName", "value": "x"}), 400, "invalidPath"
    )
    other = scim.create_group("other")["id"]
    assert_error(
        scim.patch(
            f"/groups/{other}", {"op": "replace", "path": "displayName", "value": "operations"}
        ),
        409,
        "uniqueness",
    )
    assert_error(scim.patch("/groups/grp_missing", {"op": "remove", "path": "members"}), 404)


# --- who may provision -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/users"),
        ("GET", "/api/v1/users/usr_x"),
        ("PUT", "/api/v1/users/usr_x"),
        ("PATCH", "/api/v1/users/usr_x"),
        ("DELETE", "/api/v1/users/usr_x"),
        ("GET", "/api/v1/groups"),
        ("POST", "/api/v1/groups"),
        ("GET", "/api/v1/groups/grp_x"),
        ("PUT", "/api/v1/groups/grp_x"),
        ("PATCH", "/api/v1/groups/grp_x"),
        ("DELETE", "/api/v1/groups/grp_x"),
    ],
)
def test_only_admins_provision(api: Api, method: str, path: str) -> None:
    body = {"userName": "eve@example.com", "displayName": "eve"}
    anonymous = api.client.request(method, path, json=body)
    error = assert_error(anonymous, 401)
    assert anonymous.headers["www-authenticate"].startswith("Bearer")
    assert "Authorization" in error["detail"]

    # alice can read and write timelines, but is no admin.
    refused = api.client.request(method, path, json=body, headers=api.auth)
    error = assert_error(refused, 403)
    assert "admin role" in error["detail"]
    # She cannot grant it to herself: she is told whom to ask, not a command.
    assert "ask an administrator of this server to grant you the admin role" in error["detail"]
    assert "--role admin" not in error["detail"]


# --- effect on access --------------------------------------------------------------------


def _token(scim: Scim, email: str) -> dict[str, str]:
    _, token = scim.container.tokens.create(email)
    return {"Authorization": f"Bearer {token}"}


def _timeline(scim: Scim, headers: dict[str, str]) -> Any:
    return scim.client.get("/api/v1/incidents/INC-1/timeline", headers=headers)


def _seed(scim: Scim) -> None:
    """INC-1 holds one public, one restricted and one confidential event."""
    alice = _token(scim, "alice@example.com")
    for n, visibility in ((1, "public"), (2, "restricted"), (3, "confidential")):
        response = scim.client.post(
            "/api/v1/timeline/events",
            json=event(n, imvisibility=visibility),
            headers={**alice, "Content-Type": "application/cloudevents+json"},
        )
        assert response.status_code == 201, response.text


def _visible(scim: Scim, headers: dict[str, str]) -> list[str]:
    response = _timeline(scim, headers)
    assert response.status_code == 200, response.text
    return sorted(e["id"] for e in response.json()["events"])


def test_user_grants_given_through_scim_apply(live: Scim) -> None:
    _seed(live)
    uid = live.create_user("bob@example.com")["id"]
    bob = _token(live, "bob@example.com")

    refused = _timeline(live, bob)
    assert refused.status_code == 403
    assert refused.json()["missing_role"] == "timeline.reader"

    live.patch(f"/users/{uid}", {"op": "add", "path": 'roles[value eq "timeline.reader"]'})
    assert _visible(live, bob) == ["evt-1"]

    live.patch(
        f"/users/{uid}",
        {"op": "add", "path": f"{ACCESS}:attributes", "value": ["restricted_access"]},
    )
    assert _visible(live, bob) == ["evt-1", "evt-2"]

    live.patch(
        f"/users/{uid}", {"op": "replace", "path": f"{ACCESS}:clearance", "value": "confidential"}
    )
    assert _visible(live, bob) == ["evt-1", "evt-2", "evt-3"]

    live.patch(f"/users/{uid}", {"op": "remove", "path": "roles"})
    assert _timeline(live, bob).status_code == 403

    live.patch(f"/users/{uid}", {"op": "replace", "path": "roles", "value": [{"value": "admin"}]})
    assert live.client.get("/api/v1/users", headers=bob).status_code == 200

    # A deactivated user is no longer let in at all.
    live.patch(f"/users/{uid}", {"op": "replace", "path": "active", "value": False})
    assert_error(live.client.get("/api/v1/users", headers=bob), 401)
    assert _timeline(live, bob).status_code == 401


def test_group_grants_are_inherited_by_members(live: Scim) -> None:
    _seed(live)
    uid = live.create_user("carol@example.com")["id"]
    carol = _token(live, "carol@example.com")
    gid = live.create_group(
        "readers",
        roles=[{"value": "timeline.reader"}],
        **{ACCESS: {"attributes": ["restricted_access"]}},
    )["id"]
    assert _timeline(live, carol).status_code == 403

    live.patch(f"/groups/{gid}", {"op": "add", "path": "members", "value": [{"value": uid}]})
    assert _visible(live, carol) == ["evt-1", "evt-2"]

    live.patch(
        f"/groups/{gid}",
        {"op": "replace", "path": f"{ACCESS}:clearance", "value": "confidential"},
    )
    assert _visible(live, carol) == ["evt-1", "evt-2", "evt-3"]

    live.patch(f"/groups/{gid}", {"op": "remove", "path": f'members[value eq "{uid}"]'})
    assert _timeline(live, carol).status_code == 403

    live.patch(f"/groups/{gid}", {"op": "add", "path": "members", "value": [{"value": uid}]})
    assert _timeline(live, carol).status_code == 200
    assert live.delete(f"/groups/{gid}").status_code == 204
    assert _timeline(live, carol).status_code == 403


def test_a_start_index_past_any_directory_is_an_empty_page(api: Api) -> None:
    grant_access(api.container, "root@example.com", roles=("admin",))
    _, token = api.container.tokens.create("root@example.com")
    resp = api.client.get(
        "/api/v1/users",
        params={"startIndex": "10000000000000000000"},
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 200
    assert resp.json()["Resources"] == []
