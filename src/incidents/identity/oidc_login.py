"""Console sign-in at the OIDC provider: the authorization code flow with PKCE.

The browser is sent to the provider's ``authorization_endpoint`` with a fresh
``state`` (ties the answer to this browser's attempt), ``nonce`` (ties the ID token to
it) and an S256 code challenge (RFC 7636: a stolen code is useless without the
verifier). On its way back, the code is exchanged at the ``token_endpoint`` and the ID
token checked by the same verifier as bearer JWTs, for this server's client id and
the attempt's nonce. Both endpoints come from the issuer's discovery document.

Error messages say what went wrong in words a user can act on; they never repeat a
code, a token or the client secret.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import httpx

from incidents.config import Settings
from incidents.identity.oidc import OidcError, OidcIdentity, OidcUnavailable, OidcVerifier

BASE_SCOPES = ("openid", "email", "profile")
MAX_RESPONSE_BYTES = 1024 * 1024


@dataclass(frozen=True, slots=True)
class OidcClient:
    """This server as a client of the provider."""

    client_id: str
    client_secret: str
    redirect_url: str
    auth_method: str = "client_secret_basic"
    extra_scopes: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> OidcClient:
        return cls(
            settings.oidc_client_id,
            settings.oidc_client_secret,
            settings.oidc_redirect_url,
            settings.oidc_client_auth,
            tuple(settings.oidc_extra_scopes.split()),
        )

    @property
    def scope(self) -> str:
        return " ".join(dict.fromkeys((*BASE_SCOPES, *self.extra_scopes)))


@dataclass(frozen=True, slots=True)
class Pkce:
    """A PKCE code verifier and its S256 challenge (RFC 7636 §4.1-4.2)."""

    verifier: str
    challenge: str

    @classmethod
    def new(cls) -> Pkce:
        verifier = secrets.token_urlsafe(48)  # 64 characters of the unreserved set
        return cls(verifier, s256(verifier))


def s256(verifier: str) -> str:
    """The S256 code challenge of a verifier: BASE64URL(SHA256(verifier)), unpadded."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OidcLogin:
    """Sends browsers to the provider and turns the code they bring back into an identity."""

    def __init__(
        self, verifier: OidcVerifier, client: OidcClient, *, timeout_seconds: float = 5.0
    ) -> None:
        self.verifier = verifier
        self.client = client
        self._timeout = timeout_seconds

    @property
    def provider_name(self) -> str:
        """How the sign-in page names the provider: its issuer's host."""
        return urlsplit(self.verifier.issuer).netloc or self.verifier.issuer

    def authorization_url(self, state: str, nonce: str, pkce: Pkce) -> str:
        """Where to send the browser to sign in (blocking on first use: discovery)."""
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.client.client_id,
                "redirect_uri": self.client.redirect_url,
                "scope": self.client.scope,
                "state": state,
                "nonce": nonce,
                "code_challenge": pkce.challenge,
                "code_challenge_method": "S256",
            },
            quote_via=quote,
        )
        endpoint = self.verifier.endpoint("authorization_endpoint")
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    def sign_in(self, code: str, code_verifier: str, nonce: str) -> OidcIdentity:
        """The identity behind an authorization code: exchanged, then its ID token
        verified. Raises :class:`OidcError` (refused) or :class:`OidcUnavailable`.
        Blocking I/O: call it off the event loop."""
        id_token = self._exchange(code, code_verifier)
        return self.verifier.verify_id_token(id_token, audience=self.client.client_id, nonce=nonce)

    def _exchange(self, code: str, code_verifier: str) -> str:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": self.client.redirect_url,
            "code_verifier": code_verifier,
        }
        headers = {"Accept": "application/json"}
        secret = self.client.client_secret
        if secret and self.client.auth_method == "client_secret_basic":
            # RFC 6749 §2.3.1: both parts form-encoded before Basic's base64.
            pair = f"{_form(self.client.client_id)}:{_form(secret)}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        else:
            form["client_id"] = self.client.client_id
            if secret:
                form["client_secret"] = secret
        url = self.verifier.endpoint("token_endpoint")
        try:
            with httpx.Client(timeout=self._timeout, follow_redirects=False) as http:
                response = http.post(url, data=form, headers=headers)
        except httpx.HTTPError as exc:
            raise OidcUnavailable(
                f"cannot reach the identity provider's token endpoint: {type(exc).__name__}"
            ) from None
        body = _json(response)
        if response.status_code != 200:
            error = body.get("error") if isinstance(body.get("error"), str) else None
            if error is None:
                raise OidcUnavailable(
                    f"the identity provider's token endpoint answered HTTP {response.status_code}"
                )
            raise OidcError(_refusal(error))
        id_token = body.get("id_token")
        if not isinstance(id_token, str) or not id_token:
            raise OidcError("the identity provider answered without an ID token (scope openid)")
        return id_token


def _form(value: str) -> str:
    return quote(value, safe="")


def _json(response: httpx.Response) -> dict[str, Any]:
    if len(response.content) > MAX_RESPONSE_BYTES:
        return {}
    try:
        document = response.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


_REFUSALS = {
    "invalid_grant": "the sign-in code was refused (expired, already used, or issued for "
    "another redirect URL)",
    "invalid_client": "the identity provider does not accept this server's client "
    "credentials (check IM_OIDC_CLIENT_ID, IM_OIDC_CLIENT_SECRET and IM_OIDC_CLIENT_AUTH)",
    "unauthorized_client": "this server's client may not use the authorization code flow "
    "at the identity provider",
}


def _refusal(error: str) -> str:
    # Only the provider's error code is shown: its description may echo what was sent.
    return _REFUSALS.get(error, f"the identity provider refused the sign-in ({error[:40]})")
