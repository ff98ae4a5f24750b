"""BodyLimit: an ASGI middleware that refuses a request body over limits.MAX_HTTP_BODY_BYTES with 413."""
from __future__ import annotations

from typing import Any, Awaitable, Callable

from fastapi import Request
from fastapi.responses import JSONResponse

from ember_core import limits

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


class BodyTooLarge(Exception):
    """The body passed the limit while it arrived (a chunked body, or more than its Content-Length said)."""


class BodyLimit:
    """Checks the declared Content-Length before the body is read, and counts the bytes as they arrive,
    so no handler (JSON, multipart) ever holds more than the limit. The limit is read per request,
    from ember_core.limits."""

    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = limits.MAX_HTTP_BODY_BYTES
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            await too_large(f"{int(declared):,} bytes")(scope, receive, send)
            return
        received = 0

        async def counted() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge(f"more than {limit:,} bytes")
            return message

        await self.app(scope, counted, send)


def too_large(size: str) -> JSONResponse:
    """The 413 answer for a body of `size`."""
    return JSONResponse({"detail": f"the request body is {size}, over the {limits.MAX_HTTP_BODY_BYTES:,} byte limit "
                                   "(MAX_HTTP_BODY_BYTES: one image of up to "
                                   f"{limits.MAX_IMAGE_BYTES // 2**20} MiB, base64-encoded, and its fields); "
                                   "send a smaller image or fewer requests per batch"}, status_code=413)


async def body_too_large(request: Request, err: BodyTooLarge) -> JSONResponse:
    """The exception handler for BodyTooLarge, raised from a handler's read of the body."""
    return too_large(str(err))
