"""OIDC bearer tokens, end to end through the HTTP API against a local identity provider.

The provider is a real HTTP server on 127.0.0.1 serving a discovery document and a
JWKS; tokens are signed here with freshly generated RSA and EC keys.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fastapi.testclient import TestClient
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from incidents.app import Container, build_container, create_app
from incidents.config import ConfigError, load_settings
from incidents.identity.directory import GrantKind, PrincipalType
from incidents.identity.oidc import OidcVerifier
from tests.conftest import grant_access, make_settings

AUDIENCE = "incidents-api"


def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


RSA_KEY = _rsa()
RSA_KEY_2 = _rsa()
OTHER_RSA_KEY = _rsa()  # never published: signs the forged tokens
EC_KEY = ec.generate_private_key(ec.SECP256R1())


def _jwk(key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        out = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    else:
        out = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
    return {**out, "kid": kid, "use": "sig"}


@dataclass
class Provider:
    """A minimal identity provider: discovery and JWKS, with request counts."""

    issuer: str = ""
    keys: list[dict[str, Any]] = field(default_factory=list)
    hits: dict[str, int] = field(default_factory=dict)
    jwks_status: int = 200

    def token(
        self,
        key: Any = RSA_KEY,
        *,
        kid: str | None = "rsa-1",
        alg: str = "RS256",
        **claims: Any,
    ) -> str:
        """A token signed by ``key``; claims override sensible defaults (None drops one)."""
        now = int(time.time())
        payload = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "user-1",
            "email": "Alice@Example.com",
            "email_verified": True,
            "iat": now,
            "exp": now + 300,
            **claims,
        }
        payload = {k: v for k, v in payload.items() if v is not None}
        headers = {"kid": kid} if kid is not None else None
        return jwt.encode(payload, key, algorithm=alg, headers=headers)


@pytest.fixture
def provider() -> Iterator[Provider]:
    state = Provider(keys=[_jwk(RSA_KEY, "rsa-1"), _jwk(EC_KEY, "ec-1")])

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits[self.path] = state.hits.get(self.path, 0) + 1
            if self.path == "/.well-known/openid-configuration":
                status = 200
                body: Any = {"issuer": state.issuer, "jwks_uri": state.issuer + "/jwks"}
            elif self.path == "/jwks":
                status, body = state.jwks_status, {"keys": state.keys}
            else:
                status, body = 404, {"error": "not found"}
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.issuer = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


class Clock:
    """A monotonic clock the test moves forward (for the key-refresh rate limit)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Env:
    client: TestClient
    container: Container
    provider: Provider
    clock: Clock

    def whoami(self, token: str) -> Any:
        return self.client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})


def _env(database_url: str, provider: Provider) -> Iterator[Env]:
    settings = make_settings(database_url, oidc_issuer=provider.issuer, oidc_audience=AUDIENCE)
    container = build_container(settings)
    assert isinstance(container.oidc, OidcVerifier)
    clock = Clock()
    # The same verifier the container built, on a clock the test controls.
    container.oidc = OidcVerifier.from_settings(settings, clock=clock)
    with TestClient(create_app(container)) as client:
        yield Env(client, container, provider, clock)


@pytest.fixture
def env(sqlite_url: str, provider: Provider) -> Iterator[Env]:
    yield from _env(sqlite_url, provider)


@pytest.fixture
def env_both(database_url: str, provider: Provider) -> Iterator[Env]:
    yield from _env(database_url, provider)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _handmade(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None) -> str:
    """A token PyJWT refuses to make: alg none, or HS256 keyed with a public key."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _claims(provider: Provider) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": provider.issuer,
        "aud": AUDIENCE,
        "email": "alice@example.com",
        "iat": now,
        "exp": now + 300,
    }


# --- success --------------------------------------------------------------------------


def test_valid_token_authenticates_and_creates_the_user(env_both: Env) -> None:
    env = env_both
    resp = env.whoami(env.provider.token(groups=["no-such-group"]))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["subject"] == "alice@example.com"  # lowercased
    assert body["roles"] == [] and body["groups"] == []
    # Just in time, with no grants of its own.
    user = env.container.directory.find_user("alice@example.com")
    assert user.active and not user.grants.roles and not user.groups
    # The discovery document and the keys were fetched once, then cached.
    for _ in range(3):
        assert env.whoami(env.provider.token()).status_code == 200
    assert env.provider.hits == {"/.well-known/openid-configuration": 1, "/jwks": 1}


def test_group_claim_gives_the_directory_groups_roles(env_both: Env) -> None:
    env = env_both
    directory = env.container.directory
    sre = directory.create_group("sre")
    directory.grant(PrincipalType.GROUP, sre.group_id, GrantKind.ROLE, "timeline.reader")
    directory.grant(PrincipalType.GROUP, sre.group_id, GrantKind.ATTRIBUTE, "pii_access")

    resp = env.whoami(env.provider.token(groups=["sre", "ignored-unknown"]))
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["groups"] == ["sre"]
    assert body["roles"] == ["timeline.reader"]
    assert body["attributes"] == ["pii_access"]
    assert "timeline.read" in body["actions"]

    # The claim is what counts: the same user without it has no roles.
    body = env.whoami(env.provider.token()).json()
    assert body["roles"] == [] and body["groups"] == []
    # Membership is claimed per token, never stored.
    assert directory.find_group("sre").members == ()


def test_ec_signed_token(env: Env) -> None:
    resp = env.whoami(env.provider.token(EC_KEY, kid="ec-1", alg="ES256"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["subject"] == "alice@example.com"


def test_leeway_tolerates_small_clock_skew(env: Env) -> None:
    now = int(time.time())
    token = env.provider.token(exp=now - 10, iat=now - 400, nbf=now + 10)
    assert env.whoami(token).status_code == 200


def test_custom_claims(sqlite_url: str, provider: Provider) -> None:
    settings = make_settings(
        sqlite_url,
        oidc_issuer=provider.issuer,
        oidc_audience=AUDIENCE,
        oidc_email_claim="upn",
        oidc_groups_claim="roles",
        oidc_jwks_url=provider.issuer + "/jwks",
    )
    container = build_container(settings)
    container.directory.create_group("oncall")
    with TestClient(create_app(container)) as client:
        token = provider.token(email=None, upn="bob@example.com", roles=["oncall"])
        resp = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["subject"] == "bob@example.com"
    assert resp.json()["groups"] == ["oncall"]
    # With an explicit JWKS URL, discovery is skipped.
    assert provider.hits == {"/jwks": 1}


# --- refusals -------------------------------------------------------------------------

REFUSALS: dict[str, tuple[Any, str]] = {
    "expired": (
        lambda p: p.token(exp=int(time.time()) - 120, iat=int(time.time()) - 600),
        "token expired",
    ),
    "not yet valid": (lambda p: p.token(nbf=int(time.time()) + 600), "not yet valid"),
    "wrong audience": (lambda p: p.token(aud="someone-else"), "audience mismatch: expected"),
    "audience list without ours": (
        lambda p: p.token(aud=["a", "b"]),
        "audience mismatch: expected 'incidents-api'",
    ),
    "wrong issuer": (
        lambda p: p.token(iss="https://evil.example.com"),
        "issuer mismatch: expected",
    ),
    "bad signature": (lambda p: p.token(OTHER_RSA_KEY), "bad signature"),
    "unknown kid": (lambda p: p.token(OTHER_RSA_KEY, kid="rsa-9"), "unknown signing key"),
    "no exp": (lambda p: p.token(exp=None), "lacks the required 'exp' claim"),
    "no email": (lambda p: p.token(email=None), "lacks the 'email' claim"),
    "not an email": (lambda p: p.token(email="system:scheduler"), "not an email address"),
    "unverified email": (lambda p: p.token(email_verified=False), "not verified"),
    "no email_verified claim": (lambda p: p.token(email_verified=None), "not verified"),
    "groups not a list": (lambda p: p.token(groups="sre"), "must be a list of strings"),
    "alg none": (
        lambda p: _handmade({"alg": "none", "typ": "JWT"}, _claims(p), None),
        "alg none",
    ),
    "alg none with kid": (
        lambda p: _handmade({"alg": "none", "kid": "rsa-1"}, _claims(p), None),
        "alg none",
    ),
    "HS256 with the public key": (
        lambda p: _handmade(
            {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"},
            _claims(p),
            RSA_KEY.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        ),
        "algorithm 'HS256' is not accepted",
    ),
    "RSA alg on the EC key": (
        lambda p: p.token(RSA_KEY, kid="ec-1", alg="RS256"),
        "does not fit the signing key",
    ),
    "garbage header": (lambda p: "bm90LWpzb24.e30.c2ln", "malformed token"),
}


@pytest.mark.parametrize("case", list(REFUSALS))
def test_bad_tokens_are_refused_with_a_reason(env: Env, case: str) -> None:
    make, reason = REFUSALS[case]
    token = make(env.provider)
    resp = env.whoami(token)
    assert resp.status_code == 401, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    assert resp.headers["www-authenticate"].startswith("Bearer")
    detail = resp.json()["detail"]
    assert detail.startswith("the OIDC token was rejected: ")
    assert reason in detail
    assert token not in resp.text
    # A refused token creates no user.
    _, users = env.container.directory.list_users()
    assert users == []


def test_refusal_messages_and_logs_never_contain_the_token(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    good = env.provider.token()
    bad = env.provider.token(aud="other")
    assert env.whoami(good).status_code == 200
    assert env.whoami(bad).status_code == 401
    for token in (good, bad):
        assert token not in caplog.text
        assert token.split(".")[2] not in caplog.text


# --- keys -----------------------------------------------------------------------------


def test_key_rotation_without_restart(env: Env) -> None:
    assert env.whoami(env.provider.token()).status_code == 200
    env.provider.keys.append(_jwk(RSA_KEY_2, "rsa-2"))
    new = env.provider.token(RSA_KEY_2, kid="rsa-2")

    # The keys were fetched a moment ago: the refresh waits for the rate limit ...
    resp = env.whoami(new)
    assert resp.status_code == 401
    assert "unknown signing key" in resp.json()["detail"]
    assert env.provider.hits["/jwks"] == 1

    # ... and then the unknown kid fetches the new key set.
    env.clock.now += 31
    resp = env.whoami(new)
    assert resp.status_code == 200, resp.text
    assert env.provider.hits["/jwks"] == 2
    # The old key still works while the provider publishes it, and is then dropped.
    assert env.whoami(env.provider.token()).status_code == 200
    env.provider.keys = [_jwk(RSA_KEY_2, "rsa-2")]
    env.clock.now += 3601  # cached keys age out
    assert env.whoami(new).status_code == 200
    assert env.whoami(env.provider.token()).status_code == 401


def test_cached_keys_verify_without_io(env: Env) -> None:
    """The event loop's path: with the keys cached, no fetch and no thread hop."""
    verifier = env.container.oidc
    assert verifier is not None
    assert verifier.verify_cached(env.provider.token()) is None  # no keys yet
    assert env.whoami(env.provider.token()).status_code == 200
    identity = verifier.verify_cached(env.provider.token(groups=["b", "a", "a"]))
    assert identity is not None
    assert (identity.email, identity.groups) == ("alice@example.com", ("a", "b"))
    # An unknown kid needs a fetch once the rate limit allows one: not on the loop.
    unknown = env.provider.token(OTHER_RSA_KEY, kid="rsa-9")
    env.clock.now += 31
    assert verifier.verify_cached(unknown) is None
    assert env.provider.hits["/jwks"] == 1


def test_a_flood_of_unknown_kids_does_not_hammer_the_provider(env: Env) -> None:
    assert env.whoami(env.provider.token()).status_code == 200
    for _ in range(50):
        token = env.provider.token(OTHER_RSA_KEY, kid=uuid.uuid4().hex)
        assert env.whoami(token).status_code == 401
    env.clock.now += 31
    for _ in range(50):
        token = env.provider.token(OTHER_RSA_KEY, kid=uuid.uuid4().hex)
        assert env.whoami(token).status_code == 401
    assert env.provider.hits["/jwks"] == 2  # the first fetch, and one per interval


def test_provider_down_is_503_and_cached_keys_keep_working(env: Env) -> None:
    env.provider.jwks_status = 500
    resp = env.whoami(env.provider.token())
    assert resp.status_code == 503, resp.text
    assert resp.json()["type"].endswith("identity-provider-unavailable")
    assert "HTTP 500" in resp.json()["detail"]
    assert resp.headers["retry-after"] == "5"

    env.provider.jwks_status = 200
    env.clock.now += 31
    assert env.whoami(env.provider.token()).status_code == 200
    # Down again: the cached keys still verify, even when a refresh is due.
    env.provider.jwks_status = 500
    env.clock.now += 3601
    assert env.whoami(env.provider.token()).status_code == 200


def test_discovery_naming_another_issuer_is_refused(sqlite_url: str, provider: Provider) -> None:
    settings = make_settings(sqlite_url, oidc_issuer=provider.issuer + "/", oidc_audience=AUDIENCE)
    with TestClient(create_app(build_container(settings))) as client:
        token = provider.token(iss=provider.issuer + "/")
        resp = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 503
    assert "check IM_OIDC_ISSUER" in resp.json()["detail"]


# --- beside API tokens ----------------------------------------------------------------


def test_api_tokens_keep_working_beside_oidc(env_both: Env) -> None:
    env = env_both
    grant_access(env.container, "ci@example.com")
    _, api_token = env.container.tokens.create("ci@example.com")
    resp = env.whoami(api_token)
    assert resp.status_code == 200
    assert resp.json()["subject"] == "ci@example.com"
    assert env.provider.hits == {}  # API tokens never touch the provider
    resp = env.whoami("im_not-a-real-token")
    assert resp.status_code == 401
    assert "unknown or revoked" in resp.json()["detail"]
    assert env.whoami(env.provider.token()).status_code == 200


def test_deactivated_user_is_refused(env: Env) -> None:
    assert env.whoami(env.provider.token()).status_code == 200
    directory = env.container.directory
    user = directory.find_user("alice@example.com")
    directory.update_user(user.user_id, active=False)
    env.container.policy._recent.clear()  # skip the few seconds' decision reuse
    resp = env.whoami(env.provider.token())
    assert resp.status_code == 401
    assert "not an active user" in resp.json()["detail"]


def test_without_oidc_a_jwt_is_an_unknown_token(sqlite_url: str, provider: Provider) -> None:
    container = build_container(make_settings(sqlite_url))
    assert container.oidc is None
    with TestClient(create_app(container)) as client:
        token = provider.token()
        resp = client.get("/api/v1/whoami", headers={"Authorization": f"Bearer {token}"})
    assert resp.status_code == 401
    assert "unknown or revoked" in resp.json()["detail"]
    assert provider.hits == {}


# --- settings -------------------------------------------------------------------------


def test_oidc_settings_from_the_environment() -> None:
    settings = load_settings(
        {
            "IM_OIDC_ISSUER": "https://login.example.com",
            "IM_OIDC_AUDIENCE": "incidents",
            "IM_OIDC_GROUPS_CLAIM": "teams",
            "IM_OIDC_LEEWAY_SECONDS": "10",
        }
    )
    assert settings.oidc_issuer == "https://login.example.com"
    assert settings.oidc_email_claim == "email"
    assert settings.oidc_groups_claim == "teams"
    assert settings.oidc_leeway_seconds == 10
    assert load_settings({}).oidc_issuer == ""


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"IM_OIDC_ISSUER": "https://login.example.com"}, "IM_OIDC_AUDIENCE: IM_OIDC_ISSUER"),
        ({"IM_OIDC_AUDIENCE": "incidents"}, "IM_OIDC_ISSUER: IM_OIDC_ISSUER and"),
        (
            {"IM_OIDC_ISSUER": "http://login.example.com", "IM_OIDC_AUDIENCE": "x"},
            "IM_OIDC_ISSUER: expected an https:// URL",
        ),
        (
            {
                "IM_OIDC_ISSUER": "https://login.example.com",
                "IM_OIDC_AUDIENCE": "x",
                "IM_OIDC_JWKS_URL": "ftp://keys",
            },
            "IM_OIDC_JWKS_URL: expected an https:// URL",
        ),
        (
            {
                "IM_OIDC_ISSUER": "https://login.example.com",
                "IM_OIDC_AUDIENCE": "x",
                "IM_OIDC_LEEWAY_SECONDS": "-1",
            },
            "IM_OIDC_LEEWAY_SECONDS: must be between 0 and 300",
        ),
        (
            {
                "IM_OIDC_ISSUER": "https://login.example.com",
                "IM_OIDC_AUDIENCE": "x",
                "IM_OIDC_EMAIL_CLAIM": " ",
            },
            "IM_OIDC_EMAIL_CLAIM: must name a claim",
        ),
    ],
)
def test_bad_oidc_settings_are_refused(variables: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_settings(variables)


def test_build_container_refuses_half_configured_oidc(sqlite_url: str) -> None:
    with pytest.raises(ConfigError, match="go together"):
        build_container(make_settings(sqlite_url, oidc_issuer="https://login.example.com"))
