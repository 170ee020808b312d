"""Download one image over http(s) under the fetch policy: every hop checked, redirects
counted, a byte cap while streaming, an overall deadline, retries inside that deadline.

Failures come out typed - `FetchRefused` (policy), `FetchError` (unreachable, HTTP error,
deadline), `ImageTooLarge` (byte cap) - and no httpx exception escapes.
"""

from __future__ import annotations

import ssl
import threading
import time

import httpx

from lookalike.errors import FetchError, FetchRefused, ImageTooLarge
from lookalike.files.guard import HostGuard, checked_url
from lookalike.files.pinned import Connector, PinnedBackend, PinnedTransport, verifying_context

RETRY_STATUSES = {429, 500, 502, 503, 504}
REDIRECT_STATUSES = {301, 302, 303, 307, 308}


class _Retry(Exception):
    """An attempt that may succeed if tried again (connect error, 5xx, 429)."""


class Downloader:
    """Thread-safe: one pooled HTTP client shared by every thread and by every Fetcher
    made from the same one (`Fetcher.with_local_roots`)."""

    def __init__(
        self,
        guard: HostGuard,
        *,
        max_bytes: int,
        timeout_s: float,
        retries: int,
        deadline_s: float,
        max_redirects: int,
        connector: Connector | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.guard = guard
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.retries = retries
        self.deadline_s = deadline_s
        self.max_redirects = max_redirects
        self._backend = PinnedBackend(guard, connector)
        self._ssl_context = verifying_context(ssl_context)
        self._client: httpx.Client | None = None
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(
                    transport=PinnedTransport(self._backend, ssl_context=self._ssl_context),
                    timeout=self.timeout_s,
                    follow_redirects=False,  # followed here, each hop checked and counted
                    trust_env=False,  # no proxies from the environment: we connect ourselves
                    headers={"User-Agent": "lookalike-fetch", "Accept-Encoding": "identity"},
                )
            return self._client

    def download(self, url: str) -> bytes:
        """The body of `url`, following at most `max_redirects` redirects."""
        deadline = time.monotonic() + self.deadline_s
        with self._backend.deadline(deadline):
            try:
                return self._with_retries(url, deadline)
            except FetchError as exc:
                if exc.source is not None:
                    raise
                # Raised where the URL is unknown (the connection's address check).
                raise type(exc)(exc.reason, source=url) from exc
            except httpx.TimeoutException as exc:
                raise FetchError(
                    f"gave up after the fetch deadline of {self.deadline_s:g}s", source=url
                ) from exc
            except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError) as exc:
                # Whatever else httpx may raise (LocalProtocolError, DecodingError,
                # UnsupportedProtocol...) leaves here typed.
                raise FetchError(f"{type(exc).__name__}: {exc}", source=url) from exc

    def _with_retries(self, url: str, deadline: float) -> bytes:
        """Attempts while they may succeed and time is left; a timeout at the deadline
        propagates."""
        last, attempts = "", 0
        while attempts <= self.retries:
            if attempts:
                pause = min(0.25 * 2 ** (attempts - 1), 4.0)
                if time.monotonic() + pause >= deadline:
                    break
                time.sleep(pause)
            attempts += 1
            try:
                return self._follow(url)
            except _Retry as exc:
                last = str(exc)
            except httpx.TimeoutException as exc:
                if time.monotonic() >= deadline:
                    raise
                last = f"timed out after {self.timeout_s:g}s ({exc})"
            except httpx.NetworkError as exc:
                last = f"connection failed: {exc}"
            except httpx.RemoteProtocolError as exc:  # often a kept-alive socket closed
                last = f"the server broke the HTTP protocol: {exc}"
        raise FetchError(f"{last} (after {attempts} attempts)", source=url)

    def _follow(self, url: str) -> bytes:
        """One attempt: the request and its redirects."""
        client = self._http()
        request = client.build_request("GET", checked_url(url))
        for _hop in range(self.max_redirects + 1):
            response = client.send(request, stream=True)
            try:
                if response.status_code in REDIRECT_STATUSES:
                    following = response.next_request
                    if following is None:
                        raise FetchError(f"HTTP {response.status_code} without a Location")
                    request = following
                    checked_url(str(request.url))
                    continue
                if response.status_code in RETRY_STATUSES:
                    raise _Retry(f"HTTP {response.status_code}")
                if response.status_code >= 400:
                    raise FetchError(f"HTTP {response.status_code}", source=url)
                return self._read_capped(response, url)
            finally:
                response.close()
        raise FetchRefused(f"more than {self.max_redirects} redirects", source=url)

    def _read_capped(self, response: httpx.Response, url: str) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise ImageTooLarge(
                f"{declared} bytes is over the limit of {self.max_bytes}", source=url
            )
        chunks, total = [], 0
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > self.max_bytes:  # stop reading: the rest never leaves the socket
                raise ImageTooLarge(f"over the limit of {self.max_bytes} bytes", source=url)
            chunks.append(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
