"""The network side of the fetch policy: which URLs and hosts an image fetch may reach.

`HostGuard.addresses(host, port)` resolves a host once, through an injectable resolver,
and returns the addresses a connection may use - all of them public, or the host on the
exact allow-list - else raises `FetchRefused`. The connection is then made to one of those
addresses (see `files.pinned`), never to a second resolution of the name, so a DNS answer
that changes between check and connect (rebinding) cannot reach inside.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from urllib.parse import urlsplit

import httpx

from lookalike.errors import ConfigError, FetchError, FetchRefused
from lookalike.files.addresses import IPAddress, refusal

Resolver = Callable[[str], Sequence[str]]
"""host -> its IP addresses as strings (like `socket.getaddrinfo`, numeric forms included)."""

REMOTE_SCHEMES = ("http", "https")
DEFAULT_PORT = {"http": 80, "https": 443}
DEFAULT_PORTS = tuple(DEFAULT_PORT.values())
# Letters, digits, hyphens, dots (IDNA is already punycode here); underscores occur in
# real DNS names. Anything else (spaces, %-escapes) is no host a resolver should see.
_HOST = re.compile(r"[a-z0-9_.-]+", re.IGNORECASE)


def system_resolver(host: str) -> list[str]:
    """The operating system's answer for `host`: numeric spellings (`2130706433`, `127.1`,
    `0x7f000001`) are parsed the way every other program on the machine parses them."""
    infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class AllowEntry:
    """One allow-list entry: a host name or IP as written in URLs, and a port (None: the
    default ports 80 and 443)."""

    host: str
    port: int | None

    def admits(self, host: str, port: int) -> bool:
        if host != self.host:
            return False
        return port in DEFAULT_PORTS if self.port is None else port == self.port


def normalise_host(host: str) -> str:
    """The form a URL's host takes after parsing: lower case, IDNA, no IPv6 brackets."""
    host = host.strip().strip("[]").rstrip(".").lower()
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def parse_allow_entry(entry: str) -> AllowEntry:
    """`images.internal`, `images.internal:8080`, `10.0.0.5:9000` or `[fd00::5]:8080`."""
    try:
        parts = urlsplit(f"//{entry.strip()}")
        host, port = parts.hostname, parts.port
    except ValueError as exc:
        raise ConfigError(f"fetch_allow_hosts: {entry!r} is not host[:port] ({exc})") from exc
    if not host or parts.path or parts.query or parts.username or parts.password:
        raise ConfigError(f"fetch_allow_hosts: {entry!r} is not host[:port]")
    return AllowEntry(normalise_host(host), port)


class HostGuard:
    """Resolves a host and decides whether a fetch may connect to it."""

    def __init__(self, allow_hosts: Iterable[str] = (), resolver: Resolver | None = None) -> None:
        self.allow = tuple(parse_allow_entry(entry) for entry in allow_hosts)
        self.resolver = resolver or system_resolver

    def allowed_by_list(self, host: str, port: int) -> bool:
        host = normalise_host(host)
        return any(entry.admits(host, port) for entry in self.allow)

    def addresses(self, host: str, port: int) -> list[IPAddress]:
        """The addresses a connection to host:port may use, in resolver order. Every
        address the name resolves to must be public (one internal answer refuses the
        host), unless host:port is on the allow-list."""
        try:
            answers = self.resolver(host)
            addresses = [ip_address(answer) for answer in answers]
        except (OSError, UnicodeError, ValueError) as exc:
            raise FetchError(f"cannot resolve host {host!r}: {exc}") from exc
        if not addresses:
            raise FetchError(f"host {host!r} has no addresses")
        if self.allowed_by_list(host, port):
            return addresses
        for address in addresses:
            why = refusal(address)
            if why is not None:
                raise FetchRefused(
                    f"host {host!r} resolves to {address}, a {why} address: image URLs must "
                    "point at public hosts (an internal image host must be named in "
                    "fetch_allow_hosts)"
                )
        return addresses

    def check_url(self, url: str) -> list[IPAddress]:
        """The policy for a URL, decided without connecting: the URL itself, then its
        host's addresses (see `addresses`). Returns the addresses a fetch would use."""
        parsed = checked_url(url)
        host = parsed.raw_host.decode("ascii")  # what the connection will resolve
        return self.addresses(host, parsed.port or DEFAULT_PORT[parsed.scheme])


def checked_url(url: str) -> httpx.URL:
    """A URL (the first or a redirect's) we may request: valid, http(s), with a host name
    or IP and a port in range. Its addresses are checked separately (`HostGuard`)."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError) as exc:
        raise FetchRefused(f"not a valid URL: {exc}", source=url) from exc
    if parsed.scheme not in REMOTE_SCHEMES:
        raise FetchRefused(
            f"only http and https URLs are fetched, not {parsed.scheme or 'no scheme'}",
            source=url,
        )
    if not parsed.host:
        raise FetchRefused("the URL names no host", source=url)
    host = parsed.raw_host.decode("ascii", "replace")  # IDNA names arrive as punycode
    if not _HOST.fullmatch(host) and ":" not in host:  # IPv6 literals have a colon
        raise FetchRefused(f"{parsed.host!r} is not a host name", source=url)
    if parsed.port is not None and not 0 < parsed.port < 65536:
        raise FetchRefused(f"port {parsed.port} is out of range", source=url)
    return parsed
