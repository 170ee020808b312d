"""Images by URL: a real HTTP server on localhost (allow-listed: loopback is refused
otherwise), with retries, timeouts and size caps."""

from __future__ import annotations

import contextlib
import io
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest

from lookalike import Engine, Settings
from lookalike.errors import FetchError, ImageTooLarge
from lookalike.files.fetch import Fetcher
from tests.support.images import pattern_image


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    pattern_image(seed).save(buffer, "PNG")
    return buffer.getvalue()


class Handler(BaseHTTPRequestHandler):
    flaky_hits: ClassVar[dict[str, int]] = {}

    def log_message(self, *args) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:
        path = self.path
        if path.startswith("/img/"):
            return self._send(200, png(int(path.split("/")[-1].split(".")[0])))
        if path.startswith("/flaky/"):  # two 503s, then the image
            hits = self.flaky_hits[path] = self.flaky_hits.get(path, 0) + 1
            return self._send(503, b"busy") if hits <= 2 else self._send(200, png(77))
        if path == "/slow.png":
            time.sleep(2)
            return self._send(200, png(1))
        if path == "/huge.png":
            return self._send(200, b"\x89PNG" + b"0" * 300_000)
        return self._send(404, b"nope")

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)


@pytest.fixture(scope="module")
def server():
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def allowed(server: str) -> list[str]:
    return [server.removeprefix("http://")]


def test_fetcher_retries_then_succeeds(server: str):
    fetcher = Fetcher(max_bytes=1_000_000, timeout_s=5, retries=3, allow_hosts=allowed(server))
    assert fetcher.fetch(f"{server}/flaky/a.png") == png(77)
    assert Handler.flaky_hits["/flaky/a.png"] == 3


def test_fetcher_errors_are_typed(server: str):
    fetcher = Fetcher(max_bytes=200_000, timeout_s=0.5, retries=1, allow_hosts=allowed(server))
    with pytest.raises(FetchError, match="HTTP 404"):
        fetcher.fetch(f"{server}/missing.png")
    with pytest.raises(FetchError, match="timed out"):
        fetcher.fetch(f"{server}/slow.png")
    with pytest.raises(ImageTooLarge):
        fetcher.fetch(f"{server}/huge.png")
    with pytest.raises(FetchError, match="connection failed"):
        closed = Fetcher(max_bytes=10, timeout_s=1, retries=0, allow_hosts=["127.0.0.1:9"])
        closed.fetch("http://127.0.0.1:9/x.png")


def test_manifest_of_urls_indexes_good_and_reports_bad(
    settings: Settings, server: str, tmp_path: Path
):
    rows = [
        {"id": f"u{i}", "image": f"{server}/img/{i}.png", "title": f"item {i}"} for i in range(6)
    ]
    rows += [
        {"id": "gone", "image": f"{server}/missing.png"},
        {"id": "flaky", "image": f"{server}/flaky/b.png"},
    ]
    manifest = tmp_path / "urls.jsonl"
    manifest.write_text("\n".join(json.dumps(r) for r in rows))
    update = {"download_timeout_s": 2.0, "fetch_allow_hosts": allowed(server)}
    with Engine(settings.model_copy(update=update)) as engine:
        report = engine.index_path(manifest)
        assert report.added == 7 and [b.id for b in report.failed] == ["gone"]
        hits = engine.search_image(png(3), limit=1).hits
        assert hits[0].product.id == "u3"
        assert hits[0].product.image_source == f"{server}/img/3.png"
