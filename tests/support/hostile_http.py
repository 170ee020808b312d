"""Hostile image hosts for the fetch-policy tests, all on 127.0.0.1: redirects to other
ports, to file://, in a loop; a server that drips; one that sends 1 GB; a gzip bomb; and a
canary that must never be reached. Each records what it was asked and what it sent."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import io
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

GiB = 1024**3


def small_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 30, 30)).save(buffer, "PNG")
    return buffer.getvalue()


PNG = small_png()
# 64 MiB of zeros compress to ~64 KiB: a small download that inflates past any byte cap.
GZIP_BOMB = gzip.compress(bytes(64 * 1024 * 1024), compresslevel=9)


@dataclass
class Recorder:
    """What a server saw: request paths with their Host headers, and body bytes sent."""

    requests: list[tuple[str, str]] = field(default_factory=list)
    sent: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str, host: str) -> None:
        with self.lock:
            self.requests.append((path, host))

    def count(self, n: int) -> None:
        with self.lock:
            self.sent += n


@dataclass
class LoopbackServer:
    url: str
    port: int
    seen: Recorder

    @property
    def allow_entry(self) -> str:
        return f"127.0.0.1:{self.port}"


class _Hostile(http.server.BaseHTTPRequestHandler):
    """GET /png, /redirect?to=URL, /loop, /chain/N (N redirects, then the image), /drip,
    /gigabyte, /gigabyte-declared, /gzip-bomb, /bad-location, /garbage."""

    seen: Recorder
    drip_interval_s = 0.2
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        self.seen.add(self.path, self.headers.get("Host", ""))
        parts = urlsplit(self.path)
        route = parts.path
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            if route == "/png":
                self._send(200, PNG)
            elif route == "/redirect":
                self._redirect(parse_qs(parts.query)["to"][0])
            elif route == "/loop":
                self._redirect("/loop")
            elif route.startswith("/chain/"):
                left = int(route.rsplit("/", 1)[1])
                self._redirect(f"/chain/{left - 1}") if left else self._send(200, PNG)
            elif route == "/drip":
                self._drip()
            elif route in ("/gigabyte", "/gigabyte-declared"):
                self._gigabyte(declared=route.endswith("declared"))
            elif route == "/gzip-bomb":
                self._send(200, GZIP_BOMB, {"Content-Encoding": "gzip"})
            elif route == "/bad-location":
                self._send(302, b"", {"Location": "http://[::1"})
            elif route == "/garbage":
                self.wfile.write(b"\x00\x01 this is not HTTP\r\n\r\n")
                self.close_connection = True
            else:
                self._send(404, b"nope")

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.seen.count(len(body))

    def _redirect(self, location: str) -> None:
        self._send(302, b"", {"Location": location})

    def _drip(self) -> None:
        """A 10 kB body, one byte per drip_interval_s: each read is well inside any read
        timeout, the whole would take half an hour."""
        self.send_response(200)
        self.send_header("Content-Length", "10000")
        self.end_headers()
        for _ in range(10000):
            self.wfile.write(b"x")
            self.wfile.flush()
            self.seen.count(1)
            time.sleep(self.drip_interval_s)

    def _gigabyte(self, *, declared: bool) -> None:
        self.send_response(200)
        if declared:
            self.send_header("Content-Length", str(GiB))
        else:
            self.close_connection = True  # body until the connection closes
        self.end_headers()
        chunk = bytes(64 * 1024)
        for _ in range(GiB // len(chunk)):
            self.wfile.write(chunk)
            self.seen.count(len(chunk))


class _Canary(http.server.BaseHTTPRequestHandler):
    seen: Recorder

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.add(self.path, self.headers.get("Host", ""))
        body = PNG
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@contextmanager
def _serve(handler: type[http.server.BaseHTTPRequestHandler]) -> Iterator[LoopbackServer]:
    seen = Recorder()
    bound = type(handler.__name__, (handler,), {"seen": seen})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), bound)
    server.daemon_threads = True
    # A short poll interval: shutdown() waits for it, after every test.
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield LoopbackServer(f"http://127.0.0.1:{port}", port, seen)
    finally:
        server.shutdown()
        server.server_close()


def hostile_server() -> contextlib.AbstractContextManager[LoopbackServer]:
    return _serve(_Hostile)


def canary_server() -> contextlib.AbstractContextManager[LoopbackServer]:
    """A server nothing may reach: any request it records is a guard failure."""
    return _serve(_Canary)


# --- fixtures (registered in tests/conftest.py) ------------------------------------------


@pytest.fixture
def hostile() -> Iterator[LoopbackServer]:
    with hostile_server() as server:
        yield server


@pytest.fixture
def canary() -> Iterator[LoopbackServer]:
    """A loopback server no fetch may reach; the test fails if it saw any request."""
    with canary_server() as server:
        yield server
        assert not server.seen.requests, f"the canary was reached: {server.seen.requests}"
