"""The error every provider parser raises for a payload it cannot use."""

from __future__ import annotations


class PayloadError(ValueError):
    """A webhook payload is not in the provider's documented shape; names the field."""

    def __init__(self, field: str, detail: str) -> None:
        self.field = field
        self.detail = detail
        super().__init__(f"{field}: {detail}")
