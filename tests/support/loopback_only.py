"""A test process that cannot leave this machine: name resolution refuses every name but
localhost (and literal loopback addresses), and sockets refuse to connect anywhere but
127.0.0.0/8 and ::1, whatever the code under test (or a fuzzer's `image_url`) asks for.

Every attempt that was refused is recorded, so a test can also show what was tried.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}


@dataclass
class Refusals:
    names: list[str] = field(default_factory=list)  # names the resolver refused
    addresses: list[str] = field(default_factory=list)  # addresses connect refused


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


@contextlib.contextmanager
def loopback_only(
    *,
    resolve: Callable[..., Any] | None = None,
    connect_to: Callable[..., Any] | None = None,
) -> Iterator[Refusals]:
    """While the block runs: resolve only loopback names, connect only to loopback.
    `resolve` / `connect_to` replace the real resolver and connect (a test of the guard
    itself, which then sends nothing anywhere even if the guard were broken)."""
    refused = Refusals()
    saved = (socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex)
    real_getaddrinfo = resolve or saved[0]
    real_connect = connect_to or saved[1]
    real_connect_ex = connect_to or saved[2]

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        name = host.decode() if isinstance(host, bytes) else host
        if name is None or (name.lower() not in LOOPBACK_NAMES and not _is_loopback(name)):
            refused.names.append(str(name))
            raise socket.gaierror(socket.EAI_NONAME, f"test resolver refuses {name!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    def check(sock: socket.socket, address) -> None:  # type: ignore[no-untyped-def]
        if sock.family in (socket.AF_INET, socket.AF_INET6) and not _is_loopback(address[0]):
            refused.addresses.append(str(address[0]))
            raise ConnectionRefusedError(f"test sockets connect to loopback only, not {address}")

    def connect(self: socket.socket, address) -> None:  # type: ignore[no-untyped-def]
        check(self, address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address) -> int:  # type: ignore[no-untyped-def]
        check(self, address)
        return real_connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    try:
        yield refused
    finally:
        socket.getaddrinfo, socket.socket.connect, socket.socket.connect_ex = saved  # type: ignore[method-assign]
