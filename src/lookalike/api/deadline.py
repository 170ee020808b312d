"""A deadline per request, as a pure ASGI middleware.

A request that has not started its response `seconds` after it arrived is answered 504
(`DeadlineExceeded`, with `Retry-After`), and its handler is cancelled: work still queued
for the API thread pool is dropped unstarted; work already running on a thread cannot be
stopped and finishes unseen (a write may still commit: PUT and DELETE are idempotent, so
retrying one that timed out is safe). The time to receive the body counts, so a client that
drips its upload is cut off too. Once a response has started it is left to finish (a large
image being sent is not cut mid-way).
"""

from __future__ import annotations

import asyncio
import contextlib

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.api.asgi import HttpMiddleware
from lookalike.api.errors import error_reply
from lookalike.errors import DeadlineExceeded


class Deadline(HttpMiddleware):
    def __init__(self, app: ASGIApp, seconds: float) -> None:
        super().__init__(app)
        self.seconds = seconds

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = asyncio.Event()

        async def send_and_note(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.set()
            await send(message)

        handler = asyncio.ensure_future(self.app(scope, receive, send_and_note))
        response_started = asyncio.ensure_future(started.wait())
        try:
            await asyncio.wait(
                {handler, response_started},
                timeout=self.seconds,
                return_when=asyncio.FIRST_COMPLETED,
            )
        except BaseException:  # this request itself was cancelled (the server stops)
            handler.cancel()
            raise
        finally:
            response_started.cancel()
        if handler.done() or started.is_set():
            await handler  # its result, or its error, as if it had run alone
            return
        handler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await handler
        if started.is_set():  # it began answering while being cancelled
            return
        late = DeadlineExceeded(
            f"no answer within the request deadline of {self.seconds:g} s", retry_after=1
        )
        response = error_reply(late)
        # The body may be partly unread: it must not be taken for the next request.
        response.headers["Connection"] = "close"
        await response(scope, receive, send)
