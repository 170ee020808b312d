"""What the pure ASGI middlewares share: passing every scope but HTTP requests straight
through, and noting the status of the response a request got."""

from __future__ import annotations

from abc import ABC, abstractmethod

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HttpMiddleware(ABC):
    """A pure ASGI middleware that handles HTTP requests (lifespan and websockets pass)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        await self.handle(scope, receive, send)

    @abstractmethod
    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None: ...


class StatusNote:
    """A `send` that passes every message on and remembers the response's status."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.status: int | None = None  # None: no response started

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = message["status"]
        await self.send(message)
