"""Who is asking: a request's API key, resolved to a named key with a scope.

`Authenticate` (a middleware) reads the key (`X-API-Key`, else `Authorization: Bearer`),
resolves it through the `KeyRing` and leaves a `Caller` in the request's state, where the
rate limiter, the audit log and the routes' `needs(scope)` dependencies find it. A request
without a key is anonymous; one with a key that is not valid is refused (401) by any route
that checks.

The `KeyRing` looks a key up by the SHA-256 digest of its token (one indexed read) and
trusts what it found for `key_cache_ttl_s` (5 s by default): a key revoked in the catalog
stops working in every worker and replica within that time. Only keys that were found are
cached, so a key created a moment ago works at once. `LOOKALIKE_API_KEY` is an admin key
that lives in the environment, compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from starlette.datastructures import Headers
from starlette.types import Receive, Scope, Send

from lookalike.api.asgi import HttpMiddleware
from lookalike.api.errors import error_reply
from lookalike.catalog import Catalog
from lookalike.catalog.keys import Scope as KeyScope
from lookalike.catalog.keys import scope_allows, token_digest
from lookalike.errors import CatalogError, Forbidden, LookalikeError, Unauthorized

log = logging.getLogger(__name__)

ENV_KEY_NAME = "LOOKALIKE_API_KEY"
CALLER = "lookalike.caller"  # request state: the Caller
NEEDED = "lookalike.needed"  # request state: the scope the route needed (for the audit log)
LAST_USED_EVERY_S = 60.0  # `last used` is written at most this often per key
CREATE_HINT = "lookalike keys create --scope write NAME"


@dataclass(frozen=True)
class Principal:
    """A valid key: its name (never its token) and scope."""

    name: str
    scope: KeyScope


@dataclass(frozen=True)
class Caller:
    key: Principal | None = None  # None: anonymous, or a key that is not valid
    invalid_key: bool = False  # a key was sent and is not valid (revoked, mistyped)


ANONYMOUS = Caller()


class KeyRing:
    """Resolves tokens to keys: the environment's admin key, else the catalog by digest."""

    def __init__(
        self,
        catalog: Catalog,
        env_key: SecretStr | None,
        ttl_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self.catalog = catalog
        self.ttl_s = ttl_s
        self.clock = clock  # for the cache's TTL
        self.wall = wall  # for `last used`
        secret = env_key.get_secret_value() if env_key is not None else ""
        self._env_digest = token_digest(secret) if secret else None
        self._found: dict[str, tuple[float, Principal]] = {}  # digest -> (expires, key)
        self._lock = threading.Lock()

    def cached(self, token: str) -> Principal | None:
        """The key for `token` if a lookup within the TTL found it; never blocks."""
        digest = token_digest(token)
        if self._is_env_key(digest):
            return Principal(ENV_KEY_NAME, "admin")
        with self._lock:
            hit = self._found.get(digest)
        if hit is not None and hit[0] > self.clock():
            return hit[1]
        return None

    def lookup(self, token: str) -> Principal | None:
        """The key for `token`, from the catalog (blocking), or None when it is not valid."""
        digest = token_digest(token)
        if self._is_env_key(digest):
            return Principal(ENV_KEY_NAME, "admin")
        stored = self.catalog.api_key(digest)
        if stored is None:
            with self._lock:
                self._found.pop(digest, None)
            return None
        now = self.wall()
        if stored.last_used_at is None or now - stored.last_used_at >= LAST_USED_EVERY_S:
            try:
                self.catalog.touch_api_key(digest, now)
            except CatalogError as exc:  # a busy database must not refuse a valid key
                log.warning("could not note the use of key %r: %s", stored.name, exc)
        principal = Principal(stored.name, stored.scope)
        if self.ttl_s > 0:
            with self._lock:
                self._found[digest] = (self.clock() + self.ttl_s, principal)
        return principal

    def configured(self) -> bool:
        """Whether any key exists at all (blocking)."""
        return self._env_digest is not None or bool(self.catalog.api_keys())

    def _is_env_key(self, digest: str) -> bool:
        # Constant time: response timing must not tell how much of a guess matched.
        return self._env_digest is not None and hmac.compare_digest(digest, self._env_digest)


def request_token(headers: Headers) -> str | None:
    """The key a request carries: `X-API-Key`, else `Authorization: Bearer` (empty = none)."""
    token = headers.get("x-api-key", "").strip()
    if not token:
        scheme, _, credentials = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer":
            token = credentials.strip()
    return token or None


class Authenticate(HttpMiddleware):
    """Puts the request's `Caller` in its state."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        caller = ANONYMOUS
        token = request_token(Headers(scope=scope))
        if token is not None:
            ring: KeyRing = scope["app"].state.keyring
            key = ring.cached(token)
            if key is None:
                try:
                    # Off the API pool: a key lookup must not queue behind slow searches.
                    key = await asyncio.to_thread(ring.lookup, token)
                except LookalikeError as exc:
                    await error_reply(exc)(scope, receive, send)
                    return
            caller = Caller(key, invalid_key=key is None)
        scope.setdefault("state", {})[CALLER] = caller
        await self.app(scope, receive, send)


def caller_of(request: Request) -> Caller:
    return request.scope.get("state", {}).get(CALLER, ANONYMOUS)


# Declared on the routes that always need a key, so the OpenAPI schema shows both ways.
_key_header = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="An API key (`lookalike keys create`)."
)
_bearer = HTTPBearer(auto_error=False, description="The same API key as a bearer token.")


def needs(needed: KeyScope) -> Any:
    """A route dependency: the caller's key must cover `needed`. `search` routes are open to
    anonymous callers unless `LOOKALIKE_SEARCH_REQUIRES_KEY`; `write` and `admin` always
    need a key."""

    async def check(request: Request) -> None:
        caller = caller_of(request)
        if needed != "search":
            request.scope.setdefault("state", {})[NEEDED] = needed  # audited, refusals too
        if caller.invalid_key:
            raise Unauthorized("the API key sent is not valid (revoked, or mistyped)")
        if caller.key is None:
            if needed == "search" and not request.app.state.settings.search_requires_key:
                return
            raise Unauthorized(await _missing_key_message(request, needed))
        if not scope_allows(caller.key.scope, needed):
            raise Forbidden(
                f"key {caller.key.name!r} has scope {caller.key.scope}; this endpoint needs "
                f"{needed}"
            )

    if needed == "search":
        return Depends(check)

    async def documented(
        request: Request,
        _header: Annotated[str | None, Security(_key_header)] = None,
        _token: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)] = None,
    ) -> None:
        await check(request)

    return Depends(documented)


async def _missing_key_message(request: Request, needed: KeyScope) -> str:
    ring: KeyRing = request.app.state.keyring
    send = "send it as `X-API-Key: <token>` or `Authorization: Bearer <token>`"
    if await asyncio.to_thread(ring.configured):
        return f"this endpoint needs an API key with scope {needed}: {send}"
    return (
        f"this endpoint needs an API key with scope {needed}, and this server has none: "
        f"create one with `{CREATE_HINT}` (or set LOOKALIKE_API_KEY), then {send}"
    )
