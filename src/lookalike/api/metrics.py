"""`GET /metrics` (Prometheus text format) and the middleware that counts HTTP requests by
method, route template and status. The registry is the engine's: one per app."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

router = APIRouter(tags=["health"])


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Search latency by query type, requests by type and status, index size, cache hits,
    ingest throughput and errors."""
    registry = request.app.state.engine.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class RequestMetrics:
    """Pure ASGI middleware (outermost, so it sees the 413s and 401s of the others)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            engine = getattr(scope["app"].state, "engine", None)
            if engine is not None:
                # The route template, not the path: ids must not make new label values.
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                engine.metrics.http_requests.labels(scope["method"], route, str(status)).inc()
