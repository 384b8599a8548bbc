"""The HTTP calls both ITSM clients share: counted, transport errors and refusals
turned into the errors the outbox relay understands."""

from __future__ import annotations

import httpx
import pytest

from incidents.integrations.vendor_http import VendorError, VendorHttp, VendorRateLimited


def _explain(response: httpx.Response) -> str:
    try:
        return str(response.json()["message"])
    except (ValueError, KeyError):
        return response.reason_phrase


def _vendor(handler: httpx.MockTransport) -> VendorHttp:
    client = httpx.Client(base_url="https://vendor.test", transport=handler)
    return VendorHttp("Acme", client, _explain)


def test_calls_are_counted_and_answers_returned() -> None:
    vendor = _vendor(httpx.MockTransport(lambda r: httpx.Response(200, json={"ok": 1})))
    assert vendor.request("GET", "/a").json() == {"ok": 1}
    vendor.request("GET", "/b")
    vendor.request("PATCH", "/a", json={})
    assert vendor.calls == {"GET": 2, "PATCH": 1}


def test_refusals_carry_the_vendor_explanation_and_status() -> None:
    vendor = _vendor(
        httpx.MockTransport(lambda r: httpx.Response(403, json={"message": "ACL denies"}))
    )
    with pytest.raises(VendorError, match="Acme answered HTTP 403: ACL denies") as caught:
        vendor.request("GET", "/a")
    assert caught.value.status == 403


def test_rate_limits_and_transport_errors() -> None:
    limited = _vendor(
        httpx.MockTransport(lambda r: httpx.Response(429, headers={"Retry-After": "7"}))
    )
    with pytest.raises(VendorRateLimited) as caught:
        limited.request("GET", "/a")
    assert caught.value.retry_after_seconds == 7.0

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(VendorError, match="Acme unreachable: ConnectError"):
        _vendor(httpx.MockTransport(refuse)).request("GET", "/a")
