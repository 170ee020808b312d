"""Request body size limit as a pure ASGI middleware: nothing is buffered to check it.

A declared `Content-Length` over the limit is answered 413 before the app runs, so the body
is never read (a client sending `Expect: 100-continue` never even sends it). A chunked body
is counted as it streams through `receive`; the moment it passes the limit, reading stops
with a 413 (raised as an HTTPException so FastAPI's body parsing re-raises it untouched).
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.api.errors import error_response


class BodyTooLarge(HTTPException):
    error_type = "ContentTooLarge"

    def __init__(self, limit: int, detail: str) -> None:
        super().__init__(413, f"{detail}; the limit is {limit} bytes")


class BodySizeLimit:
    """413 for request bodies over `max_bytes`, by declared length or by counting chunks."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            too_large = BodyTooLarge(self.max_bytes, f"request body of {declared} bytes")
            await _reply_413(too_large, scope, receive, send)
            return

        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes, "request body")
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge as exc:
            # Normally the app's exception handler has answered already; this covers a
            # body read outside it (e.g. by another middleware).
            if response_started:
                raise
            await _reply_413(exc, scope, receive, send)


async def _reply_413(exc: BodyTooLarge, scope: Scope, receive: Receive, send: Send) -> None:
    # `Connection: close`: the unread rest of the body must not be parsed as a next request.
    response = error_response(413, exc.error_type, exc.detail, headers={"Connection": "close"})
    await response(scope, receive, send)
