"""Settings from the environment (``IM_*``) and an optional YAML file (``IM_CONFIG``).

Precedence, lowest first: built-in defaults, the YAML file, the environment.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

DEFAULT_DATABASE_URL = "sqlite:///./incidents.db"
DEFAULT_SERVER = "http://127.0.0.1:8080"

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
OTEL_EXPORTERS = ("none", "console", "otlp")


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    """The effective configuration of one process."""

    database_url: str = DEFAULT_DATABASE_URL
    host: str = "127.0.0.1"
    port: int = 8080
    # Server processes for `incidents serve` (each with its own group-commit writer).
    workers: int = 1
    # Largest request body accepted for one event (the CloudEvents floor is 64 KiB).
    max_event_bytes: int = 1024 * 1024
    # Largest batch request body and the most events one batch may carry.
    max_batch_bytes: int = 32 * 1024 * 1024
    max_batch_events: int = 10_000
    # Group commit: the most events one append transaction takes from the queue.
    group_commit_max_events: int = 20_000
    # SQLite durability: FULL survives power loss, NORMAL only process crashes.
    sqlite_synchronous: str = "FULL"
    # Write the guide's dotted extension names (im.actor) instead of spec names.
    export_dialect: str = "spec"
    otel_exporter: str = "none"
    log_level: str = "info"
    token_cache_seconds: float = 5.0
    # Policy: a directory of .rego files replacing the shipped ones (hot-reloaded), or
    # an OPA server whose data API decides instead. Empty means the shipped policy.
    policy_dir: str = ""
    opa_url: str = ""
    # Or the SHA-256 of a policy bundle stored with `incidents admin policy-bundle store`
    # (in the artifacts' directory or bucket), loaded in-process.
    policy_bundle: str = ""
    # How long a user's roles and attributes, and an in-process decision, are reused.
    policy_cache_seconds: float = 5.0
    # Live streams (SSE, WebSocket): a heartbeat after this long idle keeps proxies
    # from closing the connection; events committed by other processes are picked up
    # within stream_poll_seconds even without a bus notification.
    stream_heartbeat_seconds: float = 15.0
    stream_poll_seconds: float = 1.0
    # GraphQL: how deeply one operation may nest fields, how many aliases it may use
    # (each repeats a field's work), and how many tokens its text may hold.
    graphql_max_depth: int = 10
    graphql_max_aliases: int = 20
    graphql_max_tokens: int = 2000
    # OIDC: bearer JWTs from this issuer, for this audience, authenticate users beside
    # API tokens. Both empty (the default) turns OIDC off; one without the other is
    # refused, since a token checked against only one of them proves too little.
    oidc_issuer: str = ""
    oidc_audience: str = ""
    oidc_email_claim: str = "email"
    oidc_groups_claim: str = "groups"
    # Where the signing keys are; empty means the issuer's discovery document says.
    oidc_jwks_url: str = ""
    # Clock skew tolerated between this server and the identity provider (exp/nbf/iat).
    oidc_leeway_seconds: float = 30.0
    # Refuse tokens whose email_verified claim is not true (the directory is keyed by email).
    oidc_require_verified_email: bool = True
    # Console sign-in by redirect to the provider (authorization code flow with PKCE):
    # this server's client at the provider, and where the provider sends browsers back.
    # Empty client id: the console offers token sign-in only.
    oidc_client_id: str = ""
    oidc_client_secret: str = ""
    oidc_redirect_url: str = ""
    # How the client secret is presented at the token endpoint.
    oidc_client_auth: str = "client_secret_basic"
    # Scopes asked for besides "openid email profile" (space-separated, e.g. groups).
    oidc_extra_scopes: str = ""
    # Web console sessions (docs/console.md): a session ends this long after sign-in,
    # or earlier after this long without a request.
    console_session_max_seconds: float = 12 * 3600.0
    console_session_idle_seconds: float = 3600.0
    # The transactional outbox: destinations every created event is queued for
    # (comma-separated; empty turns the outbox off), and the relay that delivers them.
    outbox_destinations: str = "bus"
    # Run the relay inside `incidents serve` (off when `incidents worker` does it).
    outbox_relay: bool = True
    outbox_max_attempts: int = 10
    outbox_backoff_base_seconds: float = 1.0
    outbox_backoff_cap_seconds: float = 300.0
    outbox_batch_size: int = 500
    outbox_poll_seconds: float = 1.0
    # SQLite: how long a claimed row stays claimed if its relay dies mid-delivery.
    outbox_lease_seconds: float = 60.0
    # How long delivered rows are kept (marked processed) before the relay deletes
    # them; 0 deletes each row as it is delivered, the cheapest for the database.
    outbox_retention_seconds: float = 0.0
    # On SIGTERM, after the last request: how long the relay may keep delivering what
    # is due before the process exits (0: leave it for the next relay).
    shutdown_drain_seconds: float = 10.0
    # The bus: in-process unless a NATS server (with JetStream) is named.
    nats_url: str = ""
    nats_stream: str = "INCIDENTS"
    nats_subject_prefix: str = "incidents.events"
    # This instance's durable consumer; empty means <hostname>-<port>.
    nats_consumer: str = ""
    nats_duplicate_window_seconds: float = 120.0
    # Retention (docs/retention.md): days after an incident finished (closed or
    # canceled) before its events are archived, and before they are purged.
    retention_archive_after_days: float = 90.0
    retention_purge_after_days: float = 7 * 365.0
    # Events of no incident (alerts that never joined one): purged this long after
    # their time.
    retention_unattached_purge_after_days: float = 7 * 365.0
    # Run retention inside `incidents serve` this often; 0 leaves it to
    # `incidents retention run` (from cron, say).
    retention_interval_seconds: float = 0.0
    # Redis for rate limits and stream connection state, shared by every server
    # process, and checked by /readyz; empty keeps both in-process.
    redis_url: str = ""
    # Sliding one-minute windows: requests per API token, and deliveries per webhook
    # integration (generous: a limited sender retries, but should rarely have to).
    # 0 turns a limit off.
    rate_limit_token_per_minute: int = 6000
    rate_limit_webhook_per_minute: int = 60000
    # Artifacts: a directory (default: artifacts/ next to a SQLite database, else
    # ./artifacts), or an S3-compatible bucket when artifacts_s3_bucket is set.
    artifacts_dir: str = ""
    artifacts_max_bytes: int = 25 * 1024 * 1024
    # The largest backup archive `incidents admin backup --to-artifacts` stores.
    artifacts_backup_max_bytes: int = 16 * 1024**3
    artifacts_s3_bucket: str = ""
    artifacts_s3_endpoint_url: str = ""
    artifacts_s3_region: str = "us-east-1"
    # Structured sections, from the YAML file only (IM_CONFIG): correlation rules in
    # the overview's shape, and the inbound integrations (alert sources) with their
    # tokens and signing secrets. See docs/configuration.md.
    correlation: dict[str, Any] | None = None
    integrations: dict[str, Any] | None = None
    # The ITSM connectors (ServiceNow, Jira) the sync engine keeps tickets in step
    # with, and chat workspaces (Slack); see docs/itsm.md and docs/chatops.md.
    connectors: dict[str, Any] | None = None

    def masked(self) -> dict[str, Any]:
        """The settings as a dict, with credentials in URLs masked."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("database_url", "nats_url", "redis_url"):
                value = mask_url_password(value)
            elif f.name == "oidc_client_secret" and value:
                value = "***"
            elif f.name in ("integrations", "connectors") and value:
                value = mask_secrets(value)
            out[f.name] = value
        return out


_QUERY_PASSWORD = re.compile(r"([?&](?:password|sslpassword)=)[^&]*", re.IGNORECASE)


def mask_url_password(url: str) -> str:
    """Mask the credentials of a URL: ``user:password@``, a bare ``token@`` and
    ``?password=`` alike; each URL of a comma-separated list (NATS servers)."""
    if "," in url:
        return ",".join(mask_url_password(part) for part in url.split(","))
    url = _QUERY_PASSWORD.sub(r"\1***", url)
    scheme, sep, rest = url.partition("://")
    if not sep or "@" not in rest.split("/", 1)[0]:
        return url
    creds, _, hostpart = rest.partition("/")[0].rpartition("@")
    path = rest[len(creds) + 1 + len(hostpart) :]
    if ":" not in creds:
        # NATS reads a bare userinfo (nats://TOKEN@host) as a token; elsewhere it is
        # a user name.
        if scheme.lower() in ("nats", "tls"):
            return f"{scheme}://***@{hostpart}{path}"
        return url
    user = creds.split(":", 1)[0]
    return f"{scheme}://{user}:***@{hostpart}{path}"


_SECRET_KEYS = {"token", "tokens", "secret", "secrets", "password"}
# Compound names (bot_token, api_token, signing_secret, webhook_secret) are secrets too.
_SECRET_SUFFIXES = tuple(f"_{key}" for key in _SECRET_KEYS)


def _is_secret_key(key: object) -> bool:
    name = str(key).lower()
    return name in _SECRET_KEYS or name.endswith(_SECRET_SUFFIXES)


def mask_secrets(value: Any) -> Any:
    """A copy of a config section with every token and secret replaced by ``***``."""
    if isinstance(value, dict):
        return {k: ("***" if _is_secret_key(k) else mask_secrets(v)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value


STRUCTURED = frozenset({"correlation", "integrations", "connectors"})


def _coerce(name: str, current: Any, raw: Any) -> Any:
    if name.removeprefix("IM_").lower() in STRUCTURED:
        if raw is not None and not isinstance(raw, dict):
            raise ConfigError(f"{name}: must be a mapping (set it in the IM_CONFIG YAML file)")
        return raw
    if isinstance(current, bool):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text in {"1", "true", "yes", "on"}:
            return True
        if text in {"0", "false", "no", "off"}:
            return False
        raise ConfigError(f"{name}: expected true or false, got {raw!r}")
    if isinstance(current, int):
        try:
            return int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected an integer, got {raw!r}") from None
    if isinstance(current, float):
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    return str(raw)


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Build the settings from defaults, ``IM_CONFIG`` (YAML) and ``IM_*`` variables."""
    env = os.environ if env is None else env
    settings = Settings()
    known = {f.name: f for f in fields(Settings)}
    updates: dict[str, Any] = {}

    config_path = env.get("IM_CONFIG")
    if config_path:
        path = Path(config_path)
        try:
            document = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ConfigError(f"IM_CONFIG: cannot read {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"IM_CONFIG: {path} is not valid YAML: {exc}") from None
        if not isinstance(document, dict):
            raise ConfigError(f"IM_CONFIG: {path} must hold a mapping at the top level")
        for key, value in document.items():
            name = str(key).replace("-", "_")
            if name not in known:
                # A typo would otherwise be ignored silently and the default used.
                raise ConfigError(
                    f"IM_CONFIG: {path} sets {key!r}, which is not a setting; "
                    f"known: {', '.join(sorted(known))}"
                )
            updates[name] = _coerce(name, getattr(settings, name), value)

    for name in known:
        if name in STRUCTURED:
            continue
        raw = env.get(f"IM_{name.upper()}")
        if raw is not None:
            updates[name] = _coerce(f"IM_{name.upper()}", getattr(settings, name), raw)

    settings = replace(settings, **updates)
    _validate(settings)
    return settings


def _validate(settings: Settings) -> None:
    if not settings.database_url.startswith(("sqlite://", "postgresql", "postgres://")):
        raise ConfigError(
            "IM_DATABASE_URL: use sqlite:///PATH or postgresql://USER@HOST:PORT/DB, "
            f"got {mask_url_password(settings.database_url)!r}"
        )
    if settings.export_dialect not in {"spec", "dotted"}:
        raise ConfigError("IM_EXPORT_DIALECT: expected 'spec' or 'dotted'")
    if settings.sqlite_synchronous.upper() not in {"FULL", "NORMAL", "EXTRA"}:
        raise ConfigError("IM_SQLITE_SYNCHRONOUS: expected FULL, NORMAL or EXTRA")
    if settings.max_event_bytes < 64 * 1024:
        raise ConfigError("IM_MAX_EVENT_BYTES: must be at least 65536 (the CloudEvents floor)")
    if settings.log_level not in LOG_LEVELS:
        raise ConfigError(f"IM_LOG_LEVEL: expected one of {', '.join(LOG_LEVELS)}")
    if settings.otel_exporter not in OTEL_EXPORTERS:
        raise ConfigError(f"IM_OTEL_EXPORTER: expected one of {', '.join(OTEL_EXPORTERS)}")
    if settings.policy_dir and not Path(settings.policy_dir).is_dir():
        raise ConfigError(f"IM_POLICY_DIR: {settings.policy_dir} is not a directory")
    if settings.opa_url and not settings.opa_url.startswith(("http://", "https://")):
        raise ConfigError("IM_OPA_URL: expected an http:// or https:// URL")
    if settings.policy_bundle:
        if not re.fullmatch(r"[0-9a-f]{64}", settings.policy_bundle):
            raise ConfigError("IM_POLICY_BUNDLE: expected the bundle's SHA-256 (64 hex digits)")
        if settings.policy_dir or settings.opa_url:
            raise ConfigError(
                "IM_POLICY_BUNDLE: choose one policy source (not with IM_POLICY_DIR or IM_OPA_URL)"
            )
    if settings.workers < 1:
        raise ConfigError("IM_WORKERS: must be at least 1")
    if settings.max_batch_events < 1:
        raise ConfigError("IM_MAX_BATCH_EVENTS: must be at least 1")
    if not 0.5 <= settings.stream_heartbeat_seconds <= 300:
        raise ConfigError("IM_STREAM_HEARTBEAT_SECONDS: must be between 0.5 and 300")
    if not 0.05 <= settings.stream_poll_seconds <= 60:
        raise ConfigError("IM_STREAM_POLL_SECONDS: must be between 0.05 and 60")
    for name in ("graphql_max_depth", "graphql_max_aliases", "graphql_max_tokens"):
        if getattr(settings, name) < 1:
            raise ConfigError(f"IM_{name.upper()}: must be at least 1")
    if settings.redis_url and not settings.redis_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise ConfigError(
            "IM_REDIS_URL: expected redis://HOST:PORT/DB, rediss:// or unix://, "
            f"got {mask_url_password(settings.redis_url)!r}"
        )
    validate_outbox(settings)
    validate_oidc(settings)
    validate_retention(settings)
    validate_console_sessions(settings)


MIN_CONSOLE_IDLE_SECONDS = 60.0
MAX_CONSOLE_SESSION_SECONDS = 30 * 24 * 3600.0


def validate_console_sessions(settings: Settings) -> None:
    """Check the console session lifetimes; raise :class:`ConfigError` naming the variable."""
    idle, absolute = settings.console_session_idle_seconds, settings.console_session_max_seconds
    if not MIN_CONSOLE_IDLE_SECONDS <= idle <= MAX_CONSOLE_SESSION_SECONDS:
        raise ConfigError(
            f"IM_CONSOLE_SESSION_IDLE_SECONDS: must be between {MIN_CONSOLE_IDLE_SECONDS:.0f} "
            f"and {MAX_CONSOLE_SESSION_SECONDS:.0f} (30 days), got {idle:g}"
        )
    if not idle <= absolute <= MAX_CONSOLE_SESSION_SECONDS:
        raise ConfigError(
            "IM_CONSOLE_SESSION_MAX_SECONDS: must be at least IM_CONSOLE_SESSION_IDLE_SECONDS "
            f"({idle:g}) and at most {MAX_CONSOLE_SESSION_SECONDS:.0f} (30 days), got {absolute:g}"
        )


def validate_retention(settings: Settings) -> None:
    """Check the retention, rate-limit and artifact settings."""
    if settings.retention_archive_after_days < 0:
        raise ConfigError("IM_RETENTION_ARCHIVE_AFTER_DAYS: must not be negative")
    if settings.retention_purge_after_days < settings.retention_archive_after_days:
        raise ConfigError(
            "IM_RETENTION_PURGE_AFTER_DAYS: must be at least IM_RETENTION_ARCHIVE_AFTER_DAYS"
        )
    if settings.retention_unattached_purge_after_days < 0:
        raise ConfigError("IM_RETENTION_UNATTACHED_PURGE_AFTER_DAYS: must not be negative")
    if settings.retention_interval_seconds < 0:
        raise ConfigError("IM_RETENTION_INTERVAL_SECONDS: must not be negative")
    for name in ("rate_limit_token_per_minute", "rate_limit_webhook_per_minute"):
        if getattr(settings, name) < 0:
            raise ConfigError(f"IM_{name.upper()}: must not be negative (0 turns it off)")
    if settings.artifacts_max_bytes < 1:
        raise ConfigError("IM_ARTIFACTS_MAX_BYTES: must be at least 1")
    if settings.artifacts_backup_max_bytes < 1:
        raise ConfigError("IM_ARTIFACTS_BACKUP_MAX_BYTES: must be at least 1")


# The outbox destinations this build can deliver to.
OUTBOX_DESTINATIONS = ("bus",)
_SUBJECT_PREFIX = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")
_CONSUMER_NAME = re.compile(r"[A-Za-z0-9_-]*")


def validate_outbox(settings: Settings) -> None:
    """Check the outbox and bus settings; raise :class:`ConfigError` naming the variable."""
    unknown = set(outbox_destinations(settings)) - set(OUTBOX_DESTINATIONS)
    if unknown:
        raise ConfigError(
            f"IM_OUTBOX_DESTINATIONS: unknown destination {', '.join(sorted(unknown))}; "
            f"known: {', '.join(OUTBOX_DESTINATIONS)}"
        )
    if settings.outbox_max_attempts < 1:
        raise ConfigError("IM_OUTBOX_MAX_ATTEMPTS: must be at least 1")
    if settings.outbox_batch_size < 1:
        raise ConfigError("IM_OUTBOX_BATCH_SIZE: must be at least 1")
    for name in ("backoff_base_seconds", "backoff_cap_seconds", "poll_seconds", "lease_seconds"):
        if getattr(settings, f"outbox_{name}") <= 0:
            raise ConfigError(f"IM_OUTBOX_{name.upper()}: must be greater than 0")
    if settings.outbox_retention_seconds < 0:
        raise ConfigError(
            "IM_OUTBOX_RETENTION_SECONDS: must be 0 (delete rows once delivered) or more"
        )
    if settings.shutdown_drain_seconds < 0:
        raise ConfigError("IM_SHUTDOWN_DRAIN_SECONDS: must be 0 (do not drain) or more")
    if settings.outbox_backoff_cap_seconds < settings.outbox_backoff_base_seconds:
        raise ConfigError("IM_OUTBOX_BACKOFF_CAP_SECONDS: must be at least the base")
    if settings.nats_url and not settings.nats_url.startswith(("nats://", "tls://")):
        raise ConfigError(
            f"IM_NATS_URL: expected nats://HOST:PORT or tls://HOST:PORT, "
            f"got {mask_url_password(settings.nats_url)!r}"
        )
    if not _SUBJECT_PREFIX.fullmatch(settings.nats_subject_prefix):
        raise ConfigError(
            "IM_NATS_SUBJECT_PREFIX: dot-separated tokens of letters, digits, - and _"
        )
    if not settings.nats_stream or not _CONSUMER_NAME.fullmatch(settings.nats_stream):
        raise ConfigError("IM_NATS_STREAM: letters, digits, - and _ only")
    if not _CONSUMER_NAME.fullmatch(settings.nats_consumer):
        raise ConfigError("IM_NATS_CONSUMER: letters, digits, - and _ only")


def outbox_destinations(settings: Settings) -> list[str]:
    """The configured outbox destinations, in order, without blanks or repeats."""
    names = [name.strip() for name in settings.outbox_destinations.split(",")]
    return list(dict.fromkeys(name for name in names if name))


_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}
MAX_OIDC_LEEWAY_SECONDS = 300.0


def secure_oidc_url(url: str) -> bool:
    """Whether an OIDC provider's URL may be used: https, or http to this machine only.

    Keys fetched over plain HTTP could be swapped by anyone on the path, which would
    let them mint tokens; only a loopback provider (development, tests) may use it.
    """
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    return parts.scheme == "http" and parts.hostname in _LOOPBACK_HOSTS


def _check_oidc_url(variable: str, url: str) -> None:
    if secure_oidc_url(url):
        return
    raise ConfigError(
        f"{variable}: expected an https:// URL (http:// only for localhost), got {url!r}"
    )


def oidc_enabled(settings: Settings) -> bool:
    """Whether OIDC is configured at all (valid or not: see :func:`validate_oidc`)."""
    return bool(
        settings.oidc_issuer
        or settings.oidc_audience
        or settings.oidc_jwks_url
        or settings.oidc_client_id
    )


def validate_oidc(settings: Settings) -> None:
    """Check the OIDC settings; raise :class:`ConfigError` naming the variable at fault."""
    if not oidc_enabled(settings):
        return
    if not settings.oidc_issuer or not settings.oidc_audience:
        missing = "IM_OIDC_AUDIENCE" if settings.oidc_issuer else "IM_OIDC_ISSUER"
        raise ConfigError(
            f"{missing}: IM_OIDC_ISSUER and IM_OIDC_AUDIENCE go together; set both to "
            "accept OIDC tokens, or neither to use API tokens only"
        )
    _check_oidc_url("IM_OIDC_ISSUER", settings.oidc_issuer)
    if settings.oidc_jwks_url:
        _check_oidc_url("IM_OIDC_JWKS_URL", settings.oidc_jwks_url)
    if not settings.oidc_email_claim.strip():
        raise ConfigError("IM_OIDC_EMAIL_CLAIM: must name a claim (the default is 'email')")
    if not settings.oidc_groups_claim.strip():
        raise ConfigError("IM_OIDC_GROUPS_CLAIM: must name a claim (the default is 'groups')")
    if not 0 <= settings.oidc_leeway_seconds <= MAX_OIDC_LEEWAY_SECONDS:
        raise ConfigError(
            f"IM_OIDC_LEEWAY_SECONDS: must be between 0 and {MAX_OIDC_LEEWAY_SECONDS:.0f}"
        )
    _validate_oidc_client(settings)


OIDC_CLIENT_AUTH = ("client_secret_basic", "client_secret_post")
OIDC_CALLBACK_PATH = "/auth/oidc/callback"
_SCOPE = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")


def oidc_sign_in_enabled(settings: Settings) -> bool:
    """Whether the console offers sign-in by redirect to the OIDC provider."""
    return bool(settings.oidc_client_id)


def _validate_oidc_client(settings: Settings) -> None:
    if not (settings.oidc_client_id or settings.oidc_client_secret or settings.oidc_redirect_url):
        return
    if not settings.oidc_client_id:
        raise ConfigError(
            "IM_OIDC_CLIENT_ID: needed for console sign-in with the identity provider "
            "(IM_OIDC_CLIENT_SECRET or IM_OIDC_REDIRECT_URL is set without it)"
        )
    if not settings.oidc_redirect_url:
        raise ConfigError(
            "IM_OIDC_REDIRECT_URL: the console's callback URL as registered at the provider, "
            f"e.g. https://incidents.example.com{OIDC_CALLBACK_PATH}"
        )
    _check_oidc_url("IM_OIDC_REDIRECT_URL", settings.oidc_redirect_url)
    if not urlsplit(settings.oidc_redirect_url).path.endswith(OIDC_CALLBACK_PATH):
        raise ConfigError(
            f"IM_OIDC_REDIRECT_URL: must end with {OIDC_CALLBACK_PATH} (where the console "
            f"receives the provider's answer), got {settings.oidc_redirect_url!r}"
        )
    if settings.oidc_client_auth not in OIDC_CLIENT_AUTH:
        raise ConfigError(f"IM_OIDC_CLIENT_AUTH: expected one of {', '.join(OIDC_CLIENT_AUTH)}")
    if not all(_SCOPE.fullmatch(scope) for scope in settings.oidc_extra_scopes.split()):
        raise ConfigError("IM_OIDC_EXTRA_SCOPES: space-separated scope names (e.g. groups)")
