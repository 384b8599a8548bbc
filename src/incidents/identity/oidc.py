"""OIDC: bearer JWTs issued by an identity provider, checked against its published keys.

The verifier accepts only tokens signed with an asymmetric algorithm by a key in the
issuer's JWKS, for the configured audience and issuer, within their validity window.
It yields the caller's email and the groups the provider asserts; the directory
decides what those are allowed to do.

Keys are cached. An unknown ``kid`` triggers a refresh (a provider rotating its keys
needs no restart), but at most one per ``refresh_interval_seconds``, so a flood of
tokens naming made-up keys cannot turn this server into a load generator against the
provider. Error messages say what is wrong with a token, never repeat the token.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from incidents.config import Settings, secure_oidc_url, validate_oidc
from incidents.identity.secret_comparison import same_secret

log = logging.getLogger(__name__)

DISCOVERY_PATH = "/.well-known/openid-configuration"
# Asymmetric algorithms by key type. Symmetric (HS*) and "none" are never accepted:
# HS* would let anyone holding the *public* key forge tokens.
ALGORITHMS_BY_KTY: Mapping[str, frozenset[str]] = {
    "RSA": frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}),
    "EC": frozenset({"ES256", "ES384", "ES512", "ES256K"}),
    "OKP": frozenset({"EdDSA"}),
}
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "ES256K": "secp256k1"}
ACCEPTED_ALGORITHMS = frozenset().union(*ALGORITHMS_BY_KTY.values())

# Three base64url segments; the last may be empty (alg none), so it gets a clear answer.
_JWT_SHAPE = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
MAX_TOKEN_CHARS = 16 * 1024
MAX_DOCUMENT_BYTES = 1024 * 1024


def looks_like_jwt(value: str) -> bool:
    """Whether a bearer value has the shape of a compact JWS (not that it is valid)."""
    return len(value) <= MAX_TOKEN_CHARS and _JWT_SHAPE.fullmatch(value) is not None


class OidcError(Exception):
    """A token was refused; the message says why and is safe to show the caller."""


class OidcUnavailable(OidcError):
    """The identity provider's discovery document or keys could not be fetched."""


class _NeedsFetch(Exception):
    """Internal: verifying would need network I/O (keys missing, stale or unknown kid)."""


@dataclass(frozen=True, slots=True)
class OidcIdentity:
    """Who a verified token names, and until when the token vouches for it (its ``exp``,
    in seconds since the epoch; None for an identity not read from a token)."""

    email: str
    groups: tuple[str, ...]
    expires_at: float | None = None


def _shown(value: object, limit: int = 80) -> str:
    """A token-supplied value, quoted and cut short, for an error message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _when(timestamp: object) -> str:
    if not isinstance(timestamp, int | float):
        return "an unknown time"
    try:
        return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (ValueError, OverflowError, OSError):
        return "an invalid time"


class _Throttle:
    """At most one fetch from the provider per ``interval`` seconds, failed or not."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last: float | None = None

    def due(self, now: float) -> bool:
        return self.last is None or now - self.last >= self.interval

    def tried(self, now: float) -> None:
        self.last = now


class _KeySet:
    """One fetched JWKS: usable signing keys by kid (and those without one)."""

    def __init__(self, document: Mapping[str, Any], fetched_at: float) -> None:
        self.fetched_at = fetched_at
        self.by_kid: dict[str, dict[str, Any]] = {}
        self.without_kid: list[dict[str, Any]] = []
        keys = document.get("keys")
        if not isinstance(keys, list):
            raise OidcUnavailable("the identity provider's JWKS has no 'keys' list")
        for jwk in keys:
            if not isinstance(jwk, dict) or jwk.get("kty") not in ALGORITHMS_BY_KTY:
                continue  # symmetric or unknown key types can never verify a token here
            if jwk.get("use", "sig") != "sig":
                continue  # encryption keys
            kid = jwk.get("kid")
            if isinstance(kid, str):
                self.by_kid[kid] = jwk
            else:
                self.without_kid.append(jwk)
        # Built keys, by (kid or index, alg): building one costs more than verifying.
        self.built: dict[tuple[str, str], jwt.PyJWK] = {}

    def __len__(self) -> int:
        return len(self.by_kid) + len(self.without_kid)


class OidcVerifier:
    """Validates bearer JWTs from one issuer for one audience."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        email_claim: str = "email",
        groups_claim: str = "groups",
        jwks_url: str | None = None,
        leeway_seconds: float = 30.0,
        require_verified_email: bool = True,
        keys_max_age_seconds: float = 3600.0,
        refresh_interval_seconds: float = 30.0,
        http_timeout_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.require_verified_email = require_verified_email
        self.audience = audience
        self.email_claim = email_claim
        self.groups_claim = groups_claim
        self.leeway_seconds = leeway_seconds
        self._jwks_url = jwks_url or None
        self._keys_max_age = keys_max_age_seconds
        self._refresh_interval = refresh_interval_seconds
        self._timeout = http_timeout_seconds
        self._clock = clock
        self._keys: _KeySet | None = None
        self._discovery: dict[str, Any] | None = None
        self._key_fetches = _Throttle(refresh_interval_seconds)
        self._discovery_fetches = _Throttle(refresh_interval_seconds)
        # One fetch at a time: concurrent requests with a new kid share its result.
        self._fetch_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Settings, *, clock: Callable[[], float] = time.monotonic
    ) -> OidcVerifier:
        """The verifier the settings describe (which must configure OIDC)."""
        validate_oidc(settings)
        return cls(
            settings.oidc_issuer,
            settings.oidc_audience,
            email_claim=settings.oidc_email_claim,
            groups_claim=settings.oidc_groups_claim,
            jwks_url=settings.oidc_jwks_url or None,
            leeway_seconds=settings.oidc_leeway_seconds,
            require_verified_email=settings.oidc_require_verified_email,
            clock=clock,
        )

    # --- verification -----------------------------------------------------------------

    def verify(self, token: str) -> OidcIdentity:
        """The identity a token names; raises :class:`OidcError` saying why not.

        May fetch the provider's keys (blocking I/O): call it off the event loop.
        """
        try:
            return self._verify(token, allow_fetch=True)
        except _NeedsFetch:  # pragma: no cover - cannot happen with allow_fetch
            raise OidcUnavailable("the identity provider's keys could not be loaded") from None

    def verify_cached(self, token: str) -> OidcIdentity | None:
        """Like :meth:`verify` with cached keys only; None if that would need a fetch.

        This is the hot path, safe on the event loop: no network I/O.
        """
        try:
            return self._verify(token, allow_fetch=False)
        except _NeedsFetch:
            return None

    def verify_id_token(self, token: str, *, audience: str, nonce: str) -> OidcIdentity:
        """The identity an ID token from a sign-in names: issued to ``audience`` (this
        server's client id) for the sign-in that sent ``nonce``.

        May fetch the provider's keys (blocking I/O): call it off the event loop.
        """
        try:
            claims = self._claims(token, allow_fetch=True, audience=audience)
        except _NeedsFetch:  # pragma: no cover - cannot happen with allow_fetch
            raise OidcUnavailable("the identity provider's keys could not be loaded") from None
        found = claims.get("nonce")
        if not isinstance(found, str) or not same_secret(found, nonce):
            raise OidcError("the ID token's nonce does not belong to this sign-in")
        return self._identity(claims)

    def _verify(self, token: str, *, allow_fetch: bool) -> OidcIdentity:
        return self._identity(self._claims(token, allow_fetch=allow_fetch, audience=self.audience))

    def _claims(self, token: str, *, allow_fetch: bool, audience: str) -> dict[str, Any]:
        if not looks_like_jwt(token):
            raise OidcError("malformed token: not a compact JWT (header.payload.signature)")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.DecodeError:
            raise OidcError("malformed token: the JWT header cannot be decoded") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg.lower() == "none":
            raise OidcError("unsigned tokens (alg none) are not accepted")
        if alg not in ACCEPTED_ALGORITHMS:
            raise OidcError(
                f"algorithm {_shown(alg)} is not accepted: tokens must be signed with the "
                f"identity provider's private key ({', '.join(sorted(ACCEPTED_ALGORITHMS))})"
            )
        kid = header.get("kid")
        if kid is not None and not isinstance(kid, str):
            raise OidcError("malformed token: the header's kid is not a string")
        key = self._key_for(kid, alg, allow_fetch=allow_fetch)
        return self._decode(token, key, alg, audience)

    def _decode(self, token: str, key: jwt.PyJWK, alg: str, audience: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                issuer=self.issuer,
                leeway=self.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            exp = jwt.decode(token, options={"verify_signature": False}).get("exp")
            raise OidcError(f"token expired (at {_when(exp)}); sign in again") from None
        except jwt.ImmatureSignatureError:
            raise OidcError(
                "token not yet valid (nbf or iat is in the future beyond the "
                f"{self.leeway_seconds:g}s leeway); check the clocks of this server and "
                "the identity provider"
            ) from None
        except jwt.InvalidAudienceError:
            raise OidcError(f"audience mismatch: expected {audience!r}") from None
        except jwt.InvalidIssuerError:
            raise OidcError(f"issuer mismatch: expected {self.issuer!r}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise OidcError(f"token lacks the required {exc.claim!r} claim") from None
        except jwt.InvalidSignatureError:
            raise OidcError(
                "bad signature: the token was not signed by the identity provider's key"
            ) from None
        except jwt.InvalidAlgorithmError:
            raise OidcError(f"algorithm {_shown(alg)} does not fit the signing key") from None
        except jwt.InvalidIssuedAtError:
            raise OidcError("malformed token: iat is not a number") from None
        except jwt.DecodeError:
            raise OidcError("malformed token: the JWT cannot be decoded") from None
        except jwt.InvalidTokenError as exc:
            # PyJWT's remaining messages describe claims, never the token itself.
            raise OidcError(f"invalid token: {exc}") from None

    def _identity(self, claims: Mapping[str, Any]) -> OidcIdentity:
        email = claims.get(self.email_claim)
        if not isinstance(email, str) or not email.strip():
            raise OidcError(
                f"token lacks the {self.email_claim!r} claim with the user's email "
                "(IM_OIDC_EMAIL_CLAIM names the claim to use)"
            )
        email = email.strip().lower()
        # A provider must not be able to speak for the directory's system:NAME accounts.
        if "@" not in email or email.startswith("system:"):
            raise OidcError(f"the {self.email_claim!r} claim is not an email address")
        # The directory is keyed by email: an address the user could type in themselves
        # would let them become anyone. Unless told otherwise, insist on verification.
        verified = claims.get("email_verified")
        if verified is False or (self.require_verified_email and verified is not True):
            raise OidcError(
                "the identity provider has not verified this email address "
                "(email_verified must be true; IM_OIDC_REQUIRE_VERIFIED_EMAIL=false "
                "accepts providers that never send it)"
            )
        raw_groups = claims.get(self.groups_claim)
        if raw_groups is None:
            groups: tuple[str, ...] = ()
        elif isinstance(raw_groups, list) and all(isinstance(g, str) for g in raw_groups):
            groups = tuple(sorted({g for g in raw_groups if g}))
        else:
            raise OidcError(
                f"the {self.groups_claim!r} claim must be a list of strings "
                "(IM_OIDC_GROUPS_CLAIM names the claim to use)"
            )
        # PyJWT has checked that exp is present and a number.
        return OidcIdentity(email=email, groups=groups, expires_at=float(claims["exp"]))

    # --- keys -------------------------------------------------------------------------

    def _key_for(self, kid: str | None, alg: str, *, allow_fetch: bool) -> jwt.PyJWK:
        keys = self._keys
        now = self._clock()
        stale = keys is None or now - keys.fetched_at > self._keys_max_age
        unknown = keys is not None and kid is not None and kid not in keys.by_kid
        if (stale or unknown) and (keys is None or self._key_fetches.due(now)):
            # A fetch is due: blocking I/O, so never on the hot path.
            if not allow_fetch:
                raise _NeedsFetch
            keys = self._refresh(keys, kid)
        assert keys is not None
        return self._build(keys, kid, alg)

    def _refresh(self, seen: _KeySet | None, kid: str | None) -> _KeySet:
        """The key set after a fetch, if one is due; the cached one otherwise."""
        with self._fetch_lock:
            keys = self._keys
            if keys is not seen and keys is not None:
                return keys  # another request fetched meanwhile
            now = self._clock()
            if keys is not None and not self._key_fetches.due(now):
                return keys  # rate limit: the caller gets "unknown signing key"
            if keys is None and not self._key_fetches.due(now):
                raise OidcUnavailable(
                    "the identity provider's keys could not be fetched recently; retrying shortly"
                )
            self._key_fetches.tried(now)
            try:
                fresh = self._fetch_keys(now)
            except OidcUnavailable:
                if keys is not None:
                    # Keep verifying with the keys we have while the provider is down.
                    log.warning("keeping cached OIDC keys; refreshing them failed")
                    return keys
                raise
            self._keys = fresh
            log.info(
                "fetched OIDC signing keys",
                extra={"keys": len(fresh), "reason": "unknown kid" if kid else "refresh"},
            )
            return fresh

    def _build(self, keys: _KeySet, kid: str | None, alg: str) -> jwt.PyJWK:
        if kid is not None:
            jwk = keys.by_kid.get(kid)
            if jwk is None:
                raise OidcError(
                    f"unknown signing key: kid {_shown(kid)} is not in the identity "
                    "provider's key set (if the provider just rotated its keys, retry "
                    f"in {self._refresh_interval:g}s)"
                )
            slot = kid
        else:
            candidates = [k for k in keys.without_kid if self._fits(k, alg)]
            if not candidates and len(keys) == 1:
                candidates = list(keys.by_kid.values())
            if len(candidates) != 1:
                raise OidcError(
                    "unknown signing key: the token names no kid and the identity "
                    "provider's key set does not have exactly one key for it"
                )
            jwk = candidates[0]
            slot = f"#{id(jwk)}"
        built = keys.built.get((slot, alg))
        if built is not None:
            return built
        if not self._fits(jwk, alg):
            raise OidcError(
                f"algorithm {_shown(alg)} does not fit the signing key "
                f"({jwk.get('kty')} {jwk.get('alg') or jwk.get('crv') or ''})".rstrip()
            )
        try:
            built = jwt.PyJWK(jwk, algorithm=alg)
        except jwt.PyJWKError:
            raise OidcError("the identity provider's signing key cannot be used") from None
        keys.built[(slot, alg)] = built
        return built

    @staticmethod
    def _fits(jwk: Mapping[str, Any], alg: str) -> bool:
        """Whether a key may verify ``alg``: its own alg if it names one, else its type."""
        declared = jwk.get("alg")
        if declared is not None and declared != alg:
            return False
        if alg not in ALGORITHMS_BY_KTY.get(str(jwk.get("kty")), frozenset()):
            return False
        return not (alg in _EC_CURVES and jwk.get("crv") != _EC_CURVES[alg])

    def _fetch_keys(self, now: float) -> _KeySet:
        with httpx.Client(timeout=self._timeout, follow_redirects=False) as client:
            url = self._jwks_url or self._discover(client)
            return _KeySet(self._get_json(client, url, "JWKS"), now)

    def discovery(self) -> dict[str, Any]:
        """The issuer's discovery document (fetched once, then kept).

        Blocking I/O on first use: call it off the event loop. While the provider
        cannot be reached, it is asked again at most once per refresh interval; in
        between this raises :class:`OidcUnavailable` at once.
        """
        document = self._discovery
        if document is not None:
            return document
        with self._fetch_lock:
            if self._discovery is not None:
                return self._discovery  # another request fetched it meanwhile
            if not self._discovery_fetches.due(self._clock()):
                raise OidcUnavailable(
                    "the identity provider's discovery document could not be fetched "
                    "recently; retrying shortly"
                )
            try:
                with httpx.Client(timeout=self._timeout, follow_redirects=False) as client:
                    return self._fetch_discovery(client)
            except OidcUnavailable as exc:
                log.warning("OIDC discovery failed: %s", exc)
                raise

    def endpoint(self, name: str) -> str:
        """A URL the discovery document names (``authorization_endpoint``, ...), if it
        may be used: https, unless the issuer itself is http on this machine.

        Blocking I/O on first use (discovery): call it off the event loop.
        """
        return self._checked_endpoint(self.discovery(), name)

    def _checked_endpoint(self, document: Mapping[str, Any], name: str) -> str:
        url = document.get(name)
        if not isinstance(url, str) or not url:
            problem = f"the identity provider's discovery document has no {name}"
        # An https issuer must not have keys, codes or secrets sent over plain HTTP.
        elif not secure_oidc_url(url) or (
            urlsplit(url).scheme != "https" and urlsplit(self.issuer).scheme == "https"
        ):
            problem = (
                f"the identity provider's {name} {_shown(url)} is not an https:// URL "
                "(http:// only when the issuer itself is http:// on this machine)"
            )
        else:
            return url
        log.warning("OIDC discovery document refused: %s", problem)
        raise OidcUnavailable(problem)

    def _fetch_discovery(self, client: httpx.Client) -> dict[str, Any]:
        url = self.issuer.rstrip("/") + DISCOVERY_PATH
        # Counted whether it succeeds or not, also when fetched for the keys.
        self._discovery_fetches.tried(self._clock())
        document = self._get_json(client, url, "discovery document")
        # The discovery document must be the issuer's own (OpenID Connect Discovery §4.3).
        if document.get("issuer") != self.issuer:
            raise OidcUnavailable(
                f"the discovery document at {url} names issuer "
                f"{_shown(document.get('issuer'))}, not {self.issuer!r}; check IM_OIDC_ISSUER"
            )
        self._discovery = document
        return document

    def _discover(self, client: httpx.Client) -> str:
        document = self._discovery or self._fetch_discovery(client)
        jwks_uri = self._checked_endpoint(document, "jwks_uri")
        # Later refreshes skip discovery: the jwks_uri of a provider does not move.
        self._jwks_url = jwks_uri
        return jwks_uri

    @staticmethod
    def _get_json(client: httpx.Client, url: str, what: str) -> dict[str, Any]:
        try:
            response = client.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise OidcUnavailable(
                f"cannot fetch the identity provider's {what} from {url}: {type(exc).__name__}"
            ) from None
        if response.status_code != 200:
            raise OidcUnavailable(
                f"the identity provider's {what} at {url} answered HTTP {response.status_code}"
            )
        if len(response.content) > MAX_DOCUMENT_BYTES:
            raise OidcUnavailable(f"the identity provider's {what} at {url} is too large")
        try:
            document = response.json()
        except ValueError:
            raise OidcUnavailable(f"the identity provider's {what} at {url} is not JSON") from None
        if not isinstance(document, dict):
            raise OidcUnavailable(f"the identity provider's {what} at {url} is not an object")
        return document
