"""The Slack adapter of the chat port: slack_sdk's WebClient and SignatureVerifier."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
)
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState
from slack_sdk.signature import SignatureVerifier

from incidents.chatops.port import Channel, ChannelNameTaken, ChatError
from incidents.chatops.replay import ReplayGuard
from incidents.integrations.slack.config import SlackConnector

# Errors that mean "already done": a retried invite or pin is not a failure.
_ALREADY = {"already_in_channel", "already_pinned", "cant_invite_self"}
_CACHE_SECONDS = 300.0
# The longest Retry-After waited out in place: the relay thread delivers every
# destination's rows, so a longer wait fails the delivery and the row is retried later.
MAX_RATE_LIMIT_WAIT = 5


class _ShortRateLimits(RateLimitErrorRetryHandler):
    """Retries a rate-limited call only when Slack asks for a short wait."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        for key, values in response.headers.items():
            if key.lower() == "retry-after":
                try:
                    return int(values[0]) <= MAX_RATE_LIMIT_WAIT
                except (ValueError, IndexError):
                    return False
        return True


class _Cache:
    """A small time-limited cache of user lookups (negative answers too)."""

    def __init__(self, seconds: float, clock: Callable[[], float]) -> None:
        self._seconds = seconds
        self._clock = clock
        self._items: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> tuple[bool, str | None]:
        with self._lock:
            item = self._items.get(key)
        if item is None or item[1] < self._clock():
            return False, None
        return True, item[0]

    def put(self, key: str, value: str | None) -> None:
        with self._lock:
            if len(self._items) > 50_000:
                self._items.clear()
            self._items[key] = (value, self._clock() + self._seconds)


class SlackChat:
    """Implements :class:`incidents.chatops.port.ChatPort` for one Slack workspace."""

    def __init__(
        self,
        connector: SlackConnector,
        *,
        timeout: float = 10.0,
        rate_limit_retries: int = 2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.connector = connector
        self._client = WebClient(
            token=connector.bot_token,
            base_url=connector.api_url,
            timeout=int(timeout),
            # Short rate-limit waits (Retry-After) are honoured in place; longer
            # trouble fails the delivery and the outbox relay retries it later.
            retry_handlers=[
                ConnectionErrorRetryHandler(),
                _ShortRateLimits(max_retry_count=rate_limit_retries),
            ],
        )
        self._verifier = SignatureVerifier(connector.signing_secret)
        self._replays = ReplayGuard()
        self._emails = _Cache(_CACHE_SECONDS, clock)
        self._ids = _Cache(_CACHE_SECONDS, clock)

    def _call(self, method: str, **kwargs: Any) -> Any:
        try:
            # Form-encoded, which every Web API method accepts (JSON only the write ones).
            form = {
                k: ("true" if v is True else "false" if v is False else v)
                for k, v in kwargs.items()
            }
            return self._client.api_call(method, data=form)
        except SlackApiError as exc:
            raise _error(method, exc) from None
        except SlackClientError as exc:
            raise ChatError(f"{method}: {type(exc).__name__}") from None
        except OSError as exc:
            raise ChatError(f"{method}: {exc.strerror or type(exc).__name__}") from None

    def create_channel(self, name: str, *, private: bool) -> Channel:
        response = self._call("conversations.create", name=name, is_private=private)
        channel = response["channel"]
        return Channel(channel["id"], channel["name"], bool(channel.get("is_private", private)))

    def find_channel(self, name: str) -> Channel | None:
        cursor: str | None = None
        for _ in range(100):
            params: dict[str, Any] = {
                "types": "public_channel,private_channel",
                "exclude_archived": True,
                "limit": 1000,
            }
            if cursor:
                params["cursor"] = cursor
            response = self._call("conversations.list", **params)
            for channel in response.get("channels", []):
                if channel.get("name") == name:
                    return Channel(channel["id"], name, bool(channel.get("is_private")))
            cursor = (response.get("response_metadata") or {}).get("next_cursor")
            if not cursor:
                return None
        return None

    def set_topic(self, channel_id: str, topic: str) -> None:
        self._call("conversations.setTopic", channel=channel_id, topic=topic)

    def post(self, channel_id: str, text: str, *, thread_ts: str | None = None) -> str:
        params: dict[str, Any] = {"channel": channel_id, "text": text}
        if thread_ts:
            params["thread_ts"] = thread_ts
        try:
            response = self._call("chat.postMessage", **params)
        except ChatError as exc:
            if "not_in_channel" not in str(exc):
                raise
            # A public channel the bot left (or did not create): join, then post.
            self._call("conversations.join", channel=channel_id)
            response = self._call("chat.postMessage", **params)
        return str(response["ts"])

    def invite(self, channel_id: str, user_ids: Sequence[str]) -> None:
        if not user_ids:
            return
        try:
            self._call("conversations.invite", channel=channel_id, users=",".join(user_ids))
        except ChatError as exc:
            if not any(code in str(exc) for code in _ALREADY):
                raise

    def pin(self, channel_id: str, message_id: str) -> None:
        try:
            self._call("pins.add", channel=channel_id, timestamp=message_id)
        except ChatError as exc:
            if "already_pinned" not in str(exc):
                raise

    def user_id_by_email(self, email: str) -> str | None:
        key = email.strip().lower()
        hit, value = self._ids.get(key)
        if hit:
            return value
        try:
            response = self._call("users.lookupByEmail", email=key)
            value = str(response["user"]["id"])
        except ChatError as exc:
            if "users_not_found" not in str(exc):
                raise
            value = None
        self._ids.put(key, value)
        return value

    def email_of(self, user_id: str) -> str | None:
        hit, value = self._emails.get(user_id)
        if hit:
            return value
        try:
            response = self._call("users.info", user=user_id)
            profile = response["user"].get("profile") or {}
            email = profile.get("email")
            value = email.strip().lower() if isinstance(email, str) and email.strip() else None
        except ChatError as exc:
            if "user_not_found" not in str(exc):
                raise
            value = None
        self._emails.put(user_id, value)
        if value is not None:
            self._ids.put(value, user_id)
        return value

    def verify_request(self, body: bytes, headers: Mapping[str, str]) -> bool:
        lowered = {k.lower(): v for k, v in headers.items()}
        signature = lowered.get("x-slack-signature", "")
        timestamp = lowered.get("x-slack-request-timestamp", "")
        if not signature.startswith("v0=") or not timestamp.isdigit():
            return False
        # Constant-time comparison and the 300-second window are the SDK's.
        if not self._verifier.is_valid(body=body, timestamp=timestamp, signature=signature):
            return False
        return self._replays.first_time(signature)


def _error(method: str, exc: SlackApiError) -> ChatError:
    code = "error"
    response = exc.response
    if response is not None:
        try:
            code = str(response.get("error") or f"HTTP {response.status_code}")
        except (AttributeError, TypeError):
            code = "error"
    if code == "name_taken":
        return ChannelNameTaken(f"{method}: name_taken")
    return ChatError(f"{method}: {code}")
