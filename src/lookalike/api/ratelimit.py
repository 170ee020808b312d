"""Rate limits per key and per client address, from the `limits` library.

A request with a valid key counts against its key (`rate_limit_per_key`, generous by
default: a shop's front end may send all its shoppers' searches with one key); any other
request against its client address (`rate_limit_per_address`), IPv6 addresses by their /64
(one host can hold a whole /64, so single addresses would make limits free to dodge).
Clients in `rate_limit_exempt` (loopback by default: load tests, a front end on the same
host) and the health probes are never limited. Over a limit: 429 with `Retry-After`.

Counts are sliding-window counters (two numbers per client and window), kept in Redis when
the cache URL (else `LOOKALIKE_REDIS_URL`) is Redis, so replicas share them, else in this
process. If Redis cannot be reached the limiter lets requests through (logged): a limiter
outage must not become a site outage.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from starlette.types import Receive, Scope, Send

from lookalike.api.asgi import HttpMiddleware
from lookalike.api.auth import ANONYMOUS, CALLER, Caller
from lookalike.api.clients import client_host, client_ip
from lookalike.api.errors import error_reply
from lookalike.cache.factory import cache_url
from lookalike.config import Settings
from lookalike.errors import RateLimited

log = logging.getLogger(__name__)

UNLIMITED_PATHS = frozenset({"/healthz", "/readyz"})
REDIS_PREFIX = "lookalike:ratelimit"
REDIS_TIMEOUT_S = 0.5
_WARN_EVERY_S = 60.0


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    limit: str = ""  # the limit that refused, e.g. "1200 per 1 minute"
    retry_after: int = 0


class RateLimiter:
    """Counts requests per key or client address; owned by the app's lifespan."""

    def __init__(self, settings: Settings) -> None:
        self.per_key = _parse(settings.rate_limit_per_key)
        self.per_address = _parse(settings.rate_limit_per_address)
        self.exempt = [ipaddress.ip_network(n, strict=False) for n in settings.rate_limit_exempt]
        self.storage = _storage(settings)
        self.strategy = SlidingWindowCounterRateLimiter(self.storage)
        self._warned_at = -math.inf

    async def check(self, caller: Caller, scope: Scope) -> Verdict:
        """Count one request; whether it may go on, and if not, when to retry."""
        address = client_ip(scope)
        if address is not None and any(address in network for network in self.exempt):
            return Verdict(True)
        if caller.key is not None:
            items, who = self.per_key, f"key:{caller.key.name}"
        else:
            items, who = self.per_address, f"address:{address_bucket(scope)}"
        for item in items:
            try:
                if await self.strategy.hit(item, who):
                    continue
                stats = await self.strategy.get_window_stats(item, who)
            except Exception as exc:  # the storage (Redis) is unreachable: fail open
                self._warn(exc)
                return Verdict(True)
            retry = max(1, math.ceil(stats.reset_time - time.time()))
            return Verdict(False, str(item), retry)
        return Verdict(True)

    def _warn(self, exc: Exception) -> None:
        now = time.monotonic()
        if now - self._warned_at >= _WARN_EVERY_S:
            self._warned_at = now
            log.warning("rate limits not applied: their storage failed: %s", exc)


def address_bucket(scope: Scope) -> str:
    """What one client counts as: its IPv4 address, its IPv6 /64, else its name."""
    address = client_ip(scope)
    if address is None:
        return client_host(scope) or "unknown"  # a test client, a Unix socket
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


class RateLimit(HttpMiddleware):
    """Over the `RateLimiter` in `app.state.rate_limiter` (inside `Authenticate`, which says
    whose request it is)."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        limiter: RateLimiter | None = getattr(scope["app"].state, "rate_limiter", None)
        if limiter is None or scope["path"] in UNLIMITED_PATHS:
            await self.app(scope, receive, send)
            return
        caller = scope.get("state", {}).get(CALLER, ANONYMOUS)
        verdict = await limiter.check(caller, scope)
        if verdict.allowed:
            await self.app(scope, receive, send)
            return
        whose = f"key {caller.key.name!r}" if caller.key else "this client address"
        refused = RateLimited(
            f"too many requests from {whose}: the limit is {verdict.limit}",
            retry_after=verdict.retry_after,
        )
        await error_reply(refused)(scope, receive, send)


def _parse(text: str) -> list[RateLimitItem]:
    return parse_many(text) if text.strip() else []


def _storage(settings: Settings) -> Storage:
    url = cache_url(settings)
    if urlsplit(url).scheme in ("redis", "rediss"):
        return RedisStorage(
            f"async+{url}",
            implementation="redispy",
            key_prefix=REDIS_PREFIX,
            wrap_exceptions=True,
            # A slow Redis must not hold every request: after this, fail open.
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
        )
    return MemoryStorage()
