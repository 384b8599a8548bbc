"""Comparing a secret the caller sent with the one expected, in constant time.

``hmac.compare_digest`` refuses ``str`` arguments holding anything but ASCII (it
raises ``TypeError``), and what a caller sends (a query parameter, a header, a form
field, a claim) may hold anything. Comparing the UTF-8 bytes instead answers "not
equal" for such values, as for any other wrong guess.
"""

from __future__ import annotations

import hmac


def same_secret(given: str, expected: str) -> bool:
    """Whether ``given`` equals ``expected``, in time that does not reveal where they differ."""
    # surrogatepass: a value decoded with surrogateescape still compares, never raises.
    return hmac.compare_digest(
        given.encode("utf-8", "surrogatepass"), expected.encode("utf-8", "surrogatepass")
    )
