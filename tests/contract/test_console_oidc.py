"""Console sign-in at an OIDC provider (authorization code flow with PKCE), against the
local provider of tests/fakes/oidc_provider.py; redirects are followed by hand."""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi.testclient import TestClient

from incidents.api.cookie_session import COOKIE
from incidents.app import Container, build_container, create_app
from incidents.config import ConfigError, load_settings
from incidents.identity.directory import GrantKind, PrincipalType
from incidents.identity.oidc import OidcUnavailable, OidcVerifier
from incidents.identity.oidc_login import OidcClient, OidcLogin
from incidents.sessions.console import InProcessConsoleSessions, SessionLifetime
from incidents.web.sign_in import ATTEMPT_COOKIE
from tests.conftest import make_settings
from tests.fakes.oidc_provider import Client, OidcProvider, running_provider, s256

BASE = "http://127.0.0.1"
REDIRECT = f"{BASE}/auth/oidc/callback"
CLIENT_ID = "incidents-console"
SECRET = "console-secret-0123456789"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@dataclass
class Site:
    provider: OidcProvider
    container: Container
    clock: Clock

    def browser(self) -> TestClient:
        client = TestClient(create_app(self.container), base_url=BASE, follow_redirects=False)
        client.__enter__()
        return client

    def start(self, browser: TestClient) -> str:
        """Begin signing in; the provider's authorization URL the browser is sent to."""
        resp = browser.get("/auth/oidc/start")
        assert resp.status_code == 303, resp.text
        assert browser.cookies.get(ATTEMPT_COOKIE)
        return resp.headers["location"]

    def at_provider(self, url: str) -> dict[str, str]:
        """The browser at the provider: the query it is sent back to the console with."""
        resp = httpx.get(url)
        assert resp.status_code == 302, resp.text
        back = resp.headers["location"]
        assert back.startswith(REDIRECT + "?")
        return {k: v[0] for k, v in parse_qs(urlsplit(back).query).items()}

    def sign_in(self, browser: TestClient) -> httpx.Response:
        answer = self.at_provider(self.start(browser))
        return browser.get("/auth/oidc/callback", params=answer)


def _site(sqlite_url: str, provider: OidcProvider, **overrides: Any) -> Iterator[Site]:
    provider.register(Client(CLIENT_ID, SECRET, (REDIRECT,)))
    settings = make_settings(
        sqlite_url,
        oidc_issuer=provider.issuer,
        oidc_audience="incidents-api",
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=SECRET,
        oidc_redirect_url=REDIRECT,
        **overrides,
    )
    container = build_container(settings)
    clock = Clock()
    container.console_sessions = InProcessConsoleSessions(SessionLifetime(3600, 900), clock)
    sre = container.directory.create_group("sre")
    container.directory.grant(PrincipalType.GROUP, sre.group_id, GrantKind.ROLE, "incident.reader")
    try:
        yield Site(provider, container, clock)
    finally:
        container.close()


@pytest.fixture
def site(sqlite_url: str) -> Iterator[Site]:
    with running_provider() as provider:
        yield from _site(sqlite_url, provider)


def test_the_sign_in_page_offers_the_provider(site: Site) -> None:
    page = site.browser().get("/sign-in")
    assert page.status_code == 200
    assert 'href="/auth/oidc/start"' in page.text and "Sign in with 127.0.0.1:" in page.text


def test_the_start_sends_the_browser_to_the_provider_with_pkce(site: Site) -> None:
    browser = site.browser()
    url = site.start(browser)
    parts = urlsplit(url)
    assert f"{parts.scheme}://{parts.netloc}{parts.path}" == f"{site.provider.issuer}/authorize"
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert query["response_type"] == "code" and query["client_id"] == CLIENT_ID
    assert query["redirect_uri"] == REDIRECT and query["scope"] == "openid email profile"
    assert query["code_challenge_method"] == "S256" and len(query["code_challenge"]) == 43
    assert len(query["state"]) >= 43 and len(query["nonce"]) >= 43
    cookie = next(c for c in browser.cookies.jar if c.name == ATTEMPT_COOKIE)
    assert cookie.path == "/auth/oidc" and cookie.has_nonstandard_attr("HttpOnly")
    # Another start is another state, nonce and challenge.
    again = {k: v[0] for k, v in parse_qs(urlsplit(site.start(site.browser())).query).items()}
    assert all(again[k] != query[k] for k in ("state", "nonce", "code_challenge"))


def test_the_full_flow_signs_in_with_the_directorys_roles(site: Site) -> None:
    browser = site.browser()
    landing = site.sign_in(browser)
    assert landing.status_code == 200, landing.text
    assert 'http-equiv="refresh" content="0;url=/"' in landing.text
    session_id = browser.cookies.get(COOKIE)
    assert session_id and "." not in session_id  # an opaque id, not the ID token
    assert browser.get("/").status_code == 200
    who = browser.get("/api/v1/whoami").json()
    assert who["subject"] == "ada@example.com"
    # The sre group's grant reached the reader through the provider's groups claim.
    assert "incident.reader" in who["roles"]
    # The attempt cookie is spent.
    assert not browser.cookies.get(ATTEMPT_COOKIE)


def test_signing_in_at_the_provider_ends_the_browsers_previous_session(site: Site) -> None:
    browser = site.browser()
    assert site.sign_in(browser).status_code == 200
    first = browser.cookies[COOKIE]
    answer = site.at_provider(site.start(browser))
    # The provider's redirect back is a cross-site navigation: the browser withholds
    # the SameSite=Strict session cookie from it.
    browser.cookies.delete(COOKIE)
    assert browser.get("/auth/oidc/callback", params=answer).status_code == 200
    assert browser.cookies[COOKIE] != first
    assert asyncio.run(site.container.console_sessions.get(first)) is None
    stale = site.browser()
    stale.cookies.set(COOKIE, first)
    assert stale.get("/api/v1/whoami").status_code == 401


def test_extra_scopes_are_asked_for(sqlite_url: str) -> None:
    with running_provider() as provider:
        for site in _site(sqlite_url, provider, oidc_extra_scopes="groups offline_access"):
            url = site.start(site.browser())
            scope = parse_qs(urlsplit(url).query)["scope"][0]
            assert scope == "openid email profile groups offline_access"


def test_a_replayed_answer_is_refused(site: Site) -> None:
    browser = site.browser()
    answer = site.at_provider(site.start(browser))
    attempt = browser.cookies[ATTEMPT_COOKIE]
    assert browser.get("/auth/oidc/callback", params=answer).status_code == 200
    replay = site.browser()
    replay.cookies.set(ATTEMPT_COOKIE, attempt, path="/auth/oidc")
    refused = replay.get("/auth/oidc/callback", params=answer)
    assert refused.status_code == 400 and "expired or was already finished" in refused.text
    assert not replay.cookies.get(COOKIE)


def test_an_answer_for_another_browsers_attempt_is_refused(site: Site) -> None:
    victim, attacker = site.browser(), site.browser()
    site.start(victim)
    # The attacker's own answer, delivered to the victim's browser (login CSRF).
    answer = site.at_provider(site.start(attacker))
    refused = victim.get("/auth/oidc/callback", params=answer)
    assert refused.status_code == 400 and "does not belong" in refused.text
    assert not victim.cookies.get(COOKIE)
    # Without any attempt cookie at all.
    bare = site.browser().get("/auth/oidc/callback", params=answer)
    assert bare.status_code == 400


def test_an_id_token_with_another_nonce_is_refused(site: Site) -> None:
    site.provider.nonce_override = "not-the-nonce-we-sent"
    browser = site.browser()
    refused = site.sign_in(browser)
    assert refused.status_code == 401 and "nonce" in refused.text
    assert "Sign-in refused" in refused.text and not browser.cookies.get(COOKIE)


def test_a_non_ascii_state_is_refused_not_a_server_error(site: Site) -> None:
    browser = site.browser()
    site.start(browser)
    refused = browser.get("/auth/oidc/callback?state=%C3%A9&code=x")
    assert refused.status_code == 400 and "does not belong" in refused.text
    assert not browser.cookies.get(COOKIE)


def test_an_id_token_with_a_non_ascii_nonce_is_refused(site: Site) -> None:
    site.provider.nonce_override = "nonce-\u00e9"
    browser = site.browser()
    refused = site.sign_in(browser)
    assert refused.status_code == 401 and "nonce" in refused.text
    assert not browser.cookies.get(COOKIE)


def test_a_refusal_at_the_provider_shows_a_message(site: Site) -> None:
    site.provider.deny = True
    refused = site.sign_in(site.browser())
    assert refused.status_code == 400 and "did not sign you in" in refused.text


def test_a_code_exchange_the_provider_refuses_shows_a_message(sqlite_url: str) -> None:
    with running_provider() as provider:
        for site in _site(sqlite_url, provider):
            site.provider.clients[CLIENT_ID].secret = "rotated-at-the-provider"
            refused = site.sign_in(site.browser())
            assert refused.status_code == 401
            assert "IM_OIDC_CLIENT_SECRET" in refused.text
            assert SECRET not in refused.text


def test_an_attempt_older_than_ten_minutes_is_refused(site: Site) -> None:
    browser = site.browser()
    answer = site.at_provider(site.start(browser))
    site.clock.now += 601
    refused = browser.get("/auth/oidc/callback", params=answer)
    assert refused.status_code == 400 and "expired" in refused.text


def test_an_expired_console_session_is_sent_to_sign_in(site: Site) -> None:
    browser = site.browser()
    assert site.sign_in(browser).status_code == 200
    assert browser.get("/").status_code == 200
    site.clock.now += 901  # idle past IM_CONSOLE_SESSION_IDLE_SECONDS
    resp = browser.get("/")
    assert resp.status_code == 303 and resp.headers["location"] == "/sign-in"
    assert browser.get("/api/v1/whoami").status_code == 401


def test_a_pasted_provider_token_signs_in_only_until_it_expires(site: Site) -> None:
    browser = site.browser()
    token = site.provider.mint("incidents-api", seconds=60)
    site.clock.now = time.time()  # the console's clock starts no earlier than the token
    signed_in = browser.post(
        "/sign-in",
        content=f"token={token}",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert signed_in.status_code == 303, signed_in.text
    assert browser.get("/api/v1/whoami").json()["subject"] == "ada@example.com"
    site.clock.now += 50  # used within the idle time, but the token runs out at 60 s
    assert browser.get("/").status_code == 200
    site.clock.now += 15
    resp = browser.get("/")
    assert resp.status_code == 303 and resp.headers["location"] == "/sign-in"
    assert browser.get("/api/v1/whoami").status_code == 401


def test_a_code_flow_session_lasts_the_configured_lifetime(site: Site) -> None:
    browser = site.browser()
    assert site.sign_in(browser).status_code == 200
    # The provider's ID token expired after 300 s; the session goes on until idle.
    for _ in range(3):
        site.clock.now += 600
        assert browser.get("/").status_code == 200


def _driven_provider_clock(site: Site) -> Clock:
    """The verifier's monotonic clock (discovery and key refreshes), moved by the test."""
    clock = Clock()
    settings = site.container.settings
    verifier = OidcVerifier.from_settings(settings, clock=clock)
    site.container.oidc_login = OidcLogin(verifier, OidcClient.from_settings(settings))
    return clock


def test_an_unreachable_provider_is_asked_once_per_refresh_interval(site: Site) -> None:
    clock = _driven_provider_clock(site)
    site.provider.down = True
    for _ in range(5):
        refused = site.browser().get("/auth/oidc/start")
        assert refused.status_code == 503 and "cannot be reached" in refused.text
    discovery = "/.well-known/openid-configuration"
    assert site.provider.requests.count(discovery) == 1
    site.provider.down = False
    clock.now += 31  # the verifier's refresh interval is 30 s
    assert site.sign_in(site.browser()).status_code == 200
    assert site.provider.requests.count(discovery) == 2


@pytest.mark.parametrize("name", ["authorization_endpoint", "token_endpoint", "jwks_uri"])
def test_a_discovered_endpoint_off_https_is_refused(site: Site, name: str) -> None:
    # The issuer is http on 127.0.0.1 (a local provider); the endpoint is plain http on a
    # host the loopback rule does not accept, though it reaches the same provider: only
    # the rule can refuse it.
    path = {"authorization_endpoint": "/authorize", "token_endpoint": "/token"}.get(name, "/jwks")
    port = urlsplit(site.provider.issuer).port
    site.provider.published[name] = f"http://[::ffff:127.0.0.1]:{port}{path}"
    browser = site.browser()
    if name == "authorization_endpoint":
        refused = browser.get("/auth/oidc/start")
    else:
        refused = site.sign_in(browser)
    assert refused.status_code == 503 and "cannot be reached" in refused.text
    assert not browser.cookies.get(COOKIE)


def test_an_https_issuer_may_not_name_plain_http_endpoints(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    verifier = OidcVerifier("https://login.example.com", "incidents")
    published = {
        "authorization_endpoint": "http://127.0.0.1/authorize",
        "token_endpoint": "https://login.example.com/token",
    }
    monkeypatch.setattr(verifier, "discovery", lambda: published)
    with pytest.raises(OidcUnavailable, match="not an https:// URL"):
        verifier.endpoint("authorization_endpoint")
    assert verifier.endpoint("token_endpoint") == "https://login.example.com/token"


def test_client_secret_post_is_used_when_configured(sqlite_url: str) -> None:
    with running_provider() as provider:
        for site in _site(sqlite_url, provider, oidc_client_auth="client_secret_post"):
            site.provider.clients[CLIENT_ID].auth_method = "client_secret_post"
            assert site.sign_in(site.browser()).status_code == 200


def test_without_a_client_id_there_is_no_provider_sign_in(sqlite_url: str) -> None:
    container = build_container(make_settings(sqlite_url))
    try:
        client = TestClient(create_app(container), base_url=BASE, follow_redirects=False)
        assert "/auth/oidc/start" not in client.get("/sign-in").text
        assert client.get("/auth/oidc/start").status_code == 404
        assert client.get("/auth/oidc/callback", params={"code": "x"}).status_code == 404
    finally:
        container.close()


# --- the provider refuses what a provider refuses ---------------------------------------


def _code(provider: OidcProvider, verifier: str, redirect: str = REDIRECT) -> str:
    resp = httpx.get(
        f"{provider.issuer}/authorize",
        params={
            "response_type": "code",
            "client_id": CLIENT_ID,
            "redirect_uri": redirect,
            "scope": "openid email",
            "state": "s",
            "nonce": "n",
            "code_challenge": s256(verifier),
            "code_challenge_method": "S256",
        },
    )
    assert resp.status_code == 302
    return parse_qs(urlsplit(resp.headers["location"]).query)["code"][0]


def _exchange(provider: OidcProvider, code: str, verifier: str, **changes: Any) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        **changes.pop("form", {}),
    }
    secret = changes.pop("secret", SECRET)
    basic = base64.b64encode(f"{CLIENT_ID}:{secret}".encode()).decode()
    return httpx.post(
        f"{provider.issuer}/token", data=form, headers={"Authorization": f"Basic {basic}"}
    )


def test_the_fake_provider_refuses_what_the_specifications_refuse() -> None:
    with running_provider() as provider:
        other = f"{BASE}/elsewhere/callback"
        provider.register(Client(CLIENT_ID, SECRET, (REDIRECT, other)))
        verifier = "v" * 43
        assert _exchange(provider, _code(provider, verifier), verifier).status_code == 200
        # A wrong PKCE verifier.
        wrong = _exchange(provider, _code(provider, verifier), "w" * 43)
        assert (wrong.status_code, wrong.json()["error"]) == (400, "invalid_grant")
        # A code used twice.
        code = _code(provider, verifier)
        assert _exchange(provider, code, verifier).status_code == 200
        assert _exchange(provider, code, verifier).json()["error"] == "invalid_grant"
        # Another redirect_uri than the authorization request's.
        moved = _exchange(provider, _code(provider, verifier, other), verifier)
        assert moved.json()["error"] == "invalid_grant"
        # A wrong client secret.
        bad = _exchange(provider, _code(provider, verifier), verifier, secret="guess")
        assert (bad.status_code, bad.json()["error"]) == (401, "invalid_client")
        # An unregistered redirect URI is never redirected to.
        resp = httpx.get(
            f"{provider.issuer}/authorize",
            params={"client_id": CLIENT_ID, "redirect_uri": "https://evil.example/cb"},
        )
        assert resp.status_code == 400 and "location" not in resp.headers


# --- settings ---------------------------------------------------------------------------

ISSUER = {"IM_OIDC_ISSUER": "https://login.example.com", "IM_OIDC_AUDIENCE": "incidents"}


@pytest.mark.parametrize(
    ("variables", "named"),
    [
        ({"IM_OIDC_CLIENT_SECRET": "s"}, "IM_OIDC_CLIENT_ID"),
        ({"IM_OIDC_CLIENT_ID": "c"}, "IM_OIDC_REDIRECT_URL"),
        (
            {
                "IM_OIDC_CLIENT_ID": "c",
                "IM_OIDC_REDIRECT_URL": "http://example.com/auth/oidc/callback",
            },
            "IM_OIDC_REDIRECT_URL",
        ),
        (
            {"IM_OIDC_CLIENT_ID": "c", "IM_OIDC_REDIRECT_URL": "https://example.com/callback"},
            "IM_OIDC_REDIRECT_URL",
        ),
        (
            {
                "IM_OIDC_CLIENT_ID": "c",
                "IM_OIDC_REDIRECT_URL": "https://example.com/auth/oidc/callback",
                "IM_OIDC_CLIENT_AUTH": "private_key_jwt",
            },
            "IM_OIDC_CLIENT_AUTH",
        ),
    ],
)
def test_bad_sign_in_settings_are_refused_naming_the_variable(
    variables: dict[str, str], named: str
) -> None:
    with pytest.raises(ConfigError, match=named):
        load_settings({**ISSUER, **variables})


def test_a_client_id_without_an_issuer_is_refused() -> None:
    with pytest.raises(ConfigError, match="IM_OIDC_ISSUER"):
        load_settings(
            {
                "IM_OIDC_CLIENT_ID": "c",
                "IM_OIDC_REDIRECT_URL": "https://example.com/auth/oidc/callback",
            }
        )


def test_the_client_secret_is_masked() -> None:
    settings = load_settings(
        {
            **ISSUER,
            "IM_OIDC_CLIENT_ID": "c",
            "IM_OIDC_CLIENT_SECRET": "very-secret-value",
            "IM_OIDC_REDIRECT_URL": "https://incidents.example.com/auth/oidc/callback",
        }
    )
    shown = settings.masked()
    assert shown["oidc_client_secret"] == "***" and "very-secret-value" not in str(shown)
