"""`GET /metrics` (Prometheus text format) and the middleware that counts HTTP requests by
method, route template and status. The registry is the engine's: one per app.

Every label comes from a fixed set, so no client can grow the number of series: methods
outside the standard ones count as `other`, paths as their route template or `unmatched`.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.types import Receive, Scope, Send

from lookalike.api.asgi import HttpMiddleware, StatusNote
from lookalike.api.auth import caller_of
from lookalike.api.clients import is_loopback_client
from lookalike.errors import Unauthorized


async def _may_read_metrics(request: Request) -> None:
    """`LOOKALIKE_METRICS_ACCESS`: open; local (loopback clients, or any valid key); key (any
    valid key). `off` is handled by not serving the route at all."""
    policy = request.app.state.settings.metrics_access
    caller = caller_of(request)
    if caller.invalid_key:
        raise Unauthorized("the API key sent is not valid (revoked, or mistyped)")
    if policy == "open" or caller.key is not None:
        return
    if policy == "local" and is_loopback_client(request.scope):
        return
    raise Unauthorized(
        "/metrics needs an API key (any scope) from clients that are not on this host "
        f"(LOOKALIKE_METRICS_ACCESS={policy})"
    )


router = APIRouter(tags=["health"], dependencies=[Depends(_may_read_metrics)])

METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH"})


def method_label(method: str) -> str:
    return method if method in METHODS else "other"


@router.get("/metrics", include_in_schema=False)
async def metrics(request: Request) -> Response:
    """Search latency by query type, requests by type and status, index size, cache hits,
    ingest throughput and errors."""
    registry = request.app.state.engine.metrics.registry
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


class RequestMetrics(HttpMiddleware):
    """Outermost, so it sees the 413s, 429s and 401s of the others."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        noted = StatusNote(send)
        try:
            await self.app(scope, receive, noted)
        finally:
            engine = getattr(scope["app"].state, "engine", None)
            if engine is not None:
                # The route template, not the path: ids must not make new label values.
                route = getattr(scope.get("route"), "path", None) or "unmatched"
                engine.metrics.http_requests.labels(
                    method_label(scope["method"]), route, str(noted.status or 500)
                ).inc()
