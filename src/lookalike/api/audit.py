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

from starlette.types import Receive, Scope, Send

from lookalike.api.asgi import HttpMiddleware, StatusNote
from lookalike.api.auth import ANONYMOUS, CALLER, NEEDED

log = logging.getLogger("lookalike.audit")


class AuditWrites(HttpMiddleware):
    """Inside `Authenticate`; the routes' key checks mark what they need."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        noted = StatusNote(send)
        abandoned = False
        try:
            await self.app(scope, receive, noted)
        except asyncio.CancelledError:
            abandoned = True  # past its deadline: the outcome is not known
            raise
        finally:
            state = scope.get("state", {})
            needed = state.get(NEEDED)
            if needed is not None:
                caller = state.get(CALLER, ANONYMOUS)
                client = scope.get("client")
                # json.dumps: an id is the client's text, and must not forge log fields.
                log.info(
                    "key=%s needs=%s method=%s route=%s product=%s status=%s client=%s",
                    caller.key.name if caller.key else "-",
                    needed,
                    scope["method"],
                    getattr(scope.get("route"), "path", "unmatched"),
                    json.dumps(scope.get("path_params", {}).get("product_id")),
                    "abandoned" if abandoned else noted.status or 500,
                    client[0] if client else "-",
                )
