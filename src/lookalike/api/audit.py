"""The audit log: one line per request to a route that needs a write or admin key, with
who (the key's name, or `-`), what (method, route template, product id), the status and
the client address. Refusals by the route's key check (401, 403) are logged too; requests
stopped before it (rate limits, a bad Host) are counted in `/metrics` only.

Written to the Python logger `lookalike.audit` at INFO: `lookalike serve` sends it to
stderr beside uvicorn's own log in every worker; ship it with the rest of your logs. (A
log rather than a table: refused attempts by anonymous callers must not be able to grow
the database, and log pipelines already keep, rotate and search such lines.)
"""

from __future__ import annotations

import asyncio
import json
import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.api.auth import ANONYMOUS, CALLER, NEEDED

log = logging.getLogger("lookalike.audit")


class AuditWrites:
    """Pure ASGI middleware (inside `Authenticate`; routes mark what they need)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status: int | str = 500  # unless a response starts

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except asyncio.CancelledError:
            status = "abandoned"  # past its deadline: the outcome is not known
            raise
        finally:
            state = scope.get("state", {})
            needed = state.get(NEEDED)
            if needed is not None:
                caller = state.get(CALLER, ANONYMOUS)
                client = scope.get("client")
                # json.dumps: an id is the client's text, and must not forge log lines.
                log.info(
                    "key=%s needs=%s method=%s route=%s product=%s status=%s client=%s",
                    caller.key.name if caller.key else "-",
                    needed,
                    scope["method"],
                    getattr(scope.get("route"), "path", "unmatched"),
                    json.dumps(scope.get("path_params", {}).get("product_id")),
                    status,
                    client[0] if client else "-",
                )
