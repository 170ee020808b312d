"""An httpx transport that connects only to addresses the `HostGuard` checked, and never
lets one fetch run past its deadline.

httpx resolves and connects inside httpcore's network backend; `PinnedBackend` is that
backend. For every new connection it asks the guard for the host's addresses (one
resolution, every address checked) and connects to one of those IPs. The URL, the Host
header and TLS are untouched: httpcore still sends the original host name as SNI and
verifies the certificate against it, with the default (verifying) SSL context.

Every socket operation's timeout is clamped to the calling thread's fetch deadline, so a
server that drips one byte just inside each read timeout is still cut off in time.
"""

from __future__ import annotations

import contextlib
import functools
import ssl
import threading
import time
import typing
from collections.abc import Callable, Iterator

import httpcore
import httpx

from lookalike.errors import ConfigError
from lookalike.files.guard import HostGuard

Connector = Callable[..., httpcore.NetworkStream]
"""(ip, port, timeout, local_address, socket_options) -> an open stream; httpcore's own
`SyncBackend().connect_tcp` unless a test injects one."""


class DeadlinePassed(httpcore.TimeoutException):
    """The fetch's overall deadline passed before this socket operation could start."""


class _Deadline(threading.local):
    at: float | None = None


class _ClampedStream(httpcore.NetworkStream):
    """A socket stream whose every wait ends by the fetch deadline."""

    def __init__(self, inner: httpcore.NetworkStream, backend: PinnedBackend) -> None:
        self._inner = inner
        self._backend = backend

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._backend.clamp(timeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._backend.clamp(timeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, self._backend.clamp(timeout))
        return _ClampedStream(inner, self._backend)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class PinnedBackend(httpcore.NetworkBackend):
    """httpcore's network backend, resolving through the guard and connecting to a checked IP."""

    def __init__(self, guard: HostGuard, connector: Connector | None = None) -> None:
        self.guard = guard
        self._connect = connector or httpcore.SyncBackend().connect_tcp
        self._deadline = _Deadline()

    @contextlib.contextmanager
    def deadline(self, at: float) -> Iterator[None]:
        """Socket waits on this thread end by `at` (time.monotonic) inside the block."""
        previous, self._deadline.at = self._deadline.at, at
        try:
            yield
        finally:
            self._deadline.at = previous

    def clamp(self, timeout: float | None) -> float | None:
        at = self._deadline.at
        if at is None:
            return timeout
        left = at - time.monotonic()
        if left <= 0:
            raise DeadlinePassed("the fetch deadline passed")
        return left if timeout is None else min(timeout, left)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: typing.Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = self.guard.addresses(host, port)  # raises FetchRefused: no socket made
        error: Exception | None = None
        for address in addresses:
            try:
                stream = self._connect(
                    str(address), port, self.clamp(timeout), local_address, socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                error = exc  # try the host's next address, as a resolver-driven connect would
                continue
            return _ClampedStream(stream, self)
        assert error is not None  # addresses is never empty
        raise error

    def connect_unix_socket(self, *args: typing.Any, **kwargs: typing.Any) -> typing.NoReturn:
        raise httpcore.ConnectError("image fetches do not use Unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


@functools.cache
def _default_context() -> ssl.SSLContext:
    # Built once (loading the CA bundle takes ~50 ms); an SSLContext is safe to share.
    return httpx.create_ssl_context()


def verifying_context(context: ssl.SSLContext | None = None) -> ssl.SSLContext:
    """`context` (e.g. one that trusts a private CA) or the default one; refused unless it
    verifies certificates and host names - never verify=False."""
    context = context or _default_context()
    if context.verify_mode != ssl.CERT_REQUIRED or not context.check_hostname:
        # A non-verifying context would let anyone on the path answer for any host.
        raise ConfigError("image fetches verify TLS certificates and host names")
    return context


class PinnedTransport(httpx.HTTPTransport):
    """httpx's own HTTP transport (request building, exception mapping) over a connection
    pool that uses `PinnedBackend`. No proxy: a proxy would do the resolving and connecting."""

    def __init__(
        self,
        backend: PinnedBackend,
        *,
        ssl_context: ssl.SSLContext | None = None,
        max_connections: int = 32,
    ) -> None:
        context = verifying_context(ssl_context)
        super().__init__(verify=context, trust_env=False)
        # httpx builds its pool without a network_backend argument; ours replaces it.
        # The hostile-URL tests fail loudly should a future httpx stop using `_pool`.
        self._pool = httpcore.ConnectionPool(
            ssl_context=context,
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=5.0,
            network_backend=backend,
        )
