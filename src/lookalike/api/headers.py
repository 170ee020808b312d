"""Headers every response carries, whatever answered it (a route, a refusal, a file)."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import Message, Receive, Scope, Send

from lookalike.api.asgi import HttpMiddleware

# Browsers must not guess a type: an uploaded "image" that looks like HTML or script stays
# the image type it was served as.
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff"}


class SecurityHeaders(HttpMiddleware):
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers.setdefault(name, value)
            await send(message)

        await self.app(scope, receive, send_with_headers)
