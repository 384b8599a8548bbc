"""The error every provider parser raises for a payload it cannot use."""

from __future__ import annotations


class PayloadError(ValueError):
    """A webhook payload is not in the provider's documented shape; names the field."""

    def __init__(self, field: str, detail: str) -> None:
        self.field = field
        self.detail = detail
        super().__init__(f"{field}: {detail}")


# Provider identifiers become dedupe keys (CloudEvent attributes of at most 1024
# characters, with a prefix): longer ones are refused with the field named.
MAX_PROVIDER_ID = 512
