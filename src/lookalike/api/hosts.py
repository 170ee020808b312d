"""Which `Host` headers the API answers, against DNS rebinding.

A web page on `evil.example` can point its own name at 127.0.0.1 (or at the shop's
internal address) and have the visitor's browser call this API "same-origin"; the browser
then sends `Host: evil.example`. Refusing hosts not on a list stops that: loopback names
always pass, plus the address `lookalike serve --host` binds (unless a wildcard) and
`LOOKALIKE_ALLOWED_HOSTS`. Starlette's `TrustedHostMiddleware` does the checking; a
refusal is a 400 in the project's JSON error shape.
"""

from __future__ import annotations

from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from lookalike.api.errors import error_response
from lookalike.config import Settings

LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
WILDCARD_BINDS = ("", "0.0.0.0", "::", "[::]")


def allowed_hosts(settings: Settings) -> list[str]:
    """Loopback names, the bound address (unless a wildcard) and the configured names."""
    hosts = [*LOOPBACK_NAMES]
    if settings.host not in WILDCARD_BINDS:
        hosts.append(settings.host)
    hosts += settings.allowed_hosts
    return list(dict.fromkeys(_as_in_header(host) for host in hosts))


def _as_in_header(host: str) -> str:
    """How a `Host` header spells it: lower case, IPv6 addresses in brackets."""
    host = host.strip().lower()
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


class TrustedHosts:
    """`TrustedHostMiddleware`, its plain-text refusal answered as JSON instead."""

    def __init__(self, app: ASGIApp, hosts: list[str]) -> None:
        self.app = app
        self.check = TrustedHostMiddleware(self._passed, allowed_hosts=hosts, www_redirect=False)

    async def _passed(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["lookalike.host_ok"] = True

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.check.allow_any:
            await self.app(scope, receive, send)
            return

        async def swallow(message: Message) -> None:  # the plain-text refusal
            pass

        await self.check(scope, receive, swallow)
        if scope.pop("lookalike.host_ok", False):
            await self.app(scope, receive, send)
            return
        refusal = error_response(
            400,
            "InvalidHost",
            "this server does not answer to that Host header (set LOOKALIKE_ALLOWED_HOSTS)",
        )
        await refusal(scope, receive, send)
