"""A small HTTP client for the API that turns every failure into one readable line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx

from incidents.cli.credentials import Credentials


class CliError(Exception):
    """A failure to report as one line on stderr, with a non-zero exit."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def problem_message(response: httpx.Response) -> str:
    """The ``detail`` of a problem+json answer, or a plain description of the status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and body.get("detail"):
        return f"{body['detail']} (HTTP {response.status_code})"
    return f"the server answered HTTP {response.status_code} {response.reason_phrase}"


class ApiClient:
    """Authenticated calls to one server."""

    def __init__(self, credentials: Credentials, timeout: float = 30.0) -> None:
        self.server = credentials.server
        headers = {"User-Agent": "incidents-cli"}
        if credentials.token:
            headers["Authorization"] = f"Bearer {credentials.token}"
        self._client = httpx.Client(base_url=self.server, headers=headers, timeout=timeout)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> ApiClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self, response: httpx.Response, ok: tuple[int, ...]) -> httpx.Response:
        if response.status_code in ok:
            return response
        if response.status_code == 401:
            raise CliError(
                f"{problem_message(response)}; set IM_TOKEN or run: "
                "incidents login --server URL --token TOKEN"
            )
        raise CliError(problem_message(response))

    def _unreachable(self, exc: httpx.HTTPError) -> CliError:
        return CliError(
            f"cannot reach the server at {self.server} ({type(exc).__name__}); "
            "is `incidents serve` running? Set IM_SERVER or use incidents login"
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        ok: tuple[int, ...] = (200,),
        **kwargs: Any,
    ) -> httpx.Response:
        try:
            response = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        return self._check(response, ok)

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    @contextmanager
    def stream(self, path: str, **kwargs: Any) -> Iterator[httpx.Response]:
        try:
            with self._client.stream("GET", path, timeout=None, **kwargs) as response:
                if response.status_code != 200:
                    response.read()
                    self._check(response, (200,))
                yield response
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
