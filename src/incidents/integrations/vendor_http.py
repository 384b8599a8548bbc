"""HTTP answers of ITSM vendors turned into errors the outbox relay understands."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from typing import Any

import httpx

from incidents.bus.destination import RetryAfter

# When a 429 names no Retry-After, wait this long.
DEFAULT_RETRY_AFTER_SECONDS = 5.0


class VendorError(RuntimeError):
    """The vendor refused or failed a call; the message holds its own explanation
    (never the credentials)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class VendorRateLimited(RetryAfter):
    """The vendor answered 429 (or 503 with Retry-After)."""


def retry_after_seconds(value: str | None) -> float:
    """Seconds from a Retry-After header: a number of seconds or an HTTP date."""
    if not value:
        return DEFAULT_RETRY_AFTER_SECONDS
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER_SECONDS
    return max(0.0, when - time.time())


def check(response: httpx.Response, vendor: str, explain: str) -> None:
    """Raise for a non-2xx answer: rate limits as :class:`VendorRateLimited`."""
    if response.is_success:
        return
    status = response.status_code
    if status == 429 or (status == 503 and "retry-after" in response.headers):
        seconds = retry_after_seconds(response.headers.get("retry-after"))
        raise VendorRateLimited(
            f"{vendor} rate limit (HTTP {status}): retry after {seconds:g}s", seconds
        )
    raise VendorError(f"{vendor} answered HTTP {status}: {explain}", status)


class VendorHttp:
    """One vendor connection's HTTP calls: counted by method (the benchmark's calls
    per change), transport errors and non-2xx answers turned into the errors above.

    ``explain`` reads the vendor's own error message out of a failed answer; what a
    successful answer holds is for the client to unwrap.
    """

    def __init__(
        self, vendor: str, http: httpx.Client, explain: Callable[[httpx.Response], str]
    ) -> None:
        self.vendor = vendor
        self._http = http
        self._explain = explain
        self.calls: dict[str, int] = {}

    def request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        """Send one call; raises :class:`VendorError` or :class:`VendorRateLimited`."""
        self.calls[method] = self.calls.get(method, 0) + 1
        try:
            response = self._http.request(method, path, **kw)
        except httpx.HTTPError as exc:
            raise VendorError(f"{self.vendor} unreachable: {type(exc).__name__}") from None
        if not response.is_success:
            check(response, self.vendor, self._explain(response))
        return response

    def close(self) -> None:
        self._http.close()
