"""The client's address, as the rate limits and access policies see it: the connecting
peer, or what a trusted proxy says it is (`LOOKALIKE_TRUSTED_PROXIES`, applied first)."""

from __future__ import annotations

import ipaddress

from starlette.types import Scope

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def client_host(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


def client_ip(scope: Scope) -> IPAddress | None:
    """The client's IP address (IPv4 inside IPv6 as IPv4), or None when it has none (a
    Unix socket, a test client)."""
    host = client_host(scope)
    try:
        address = ipaddress.ip_address(host or "")
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def is_loopback_client(scope: Scope) -> bool:
    address = client_ip(scope)
    return address is not None and address.is_loopback
