"""Reading request bodies with a size limit, before any of it is parsed."""

from __future__ import annotations

from fastapi import Request

from incidents.api.problems import Problem


class BodyTooLarge(ValueError):
    """The body is over the limit; the caller answers 413 in its own error format."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"the request body is larger than the limit of {limit} bytes")


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused as soon as it (or its Content-Length) passes ``limit``."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body_or_413(request: Request, limit: int) -> bytes:
    """The whole body, or a 413 problem naming the limit."""
    try:
        return await read_body(request, limit)
    except BodyTooLarge as exc:
        raise Problem(413, "payload-too-large", str(exc), limit_bytes=limit) from None
