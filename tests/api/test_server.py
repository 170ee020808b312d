"""A real server started by `lookalike serve`, spoken to over real sockets."""

from __future__ import annotations

import csv
import select
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest

from tests.support.api_catalog import (
    MAX_UPLOAD_BYTES,
    WRITE_HEADERS,
    CatalogItem,
    ImageServer,
    LiveServer,
    draw_product,
)


def read_response(sock: socket.socket, timeout: float = 30.0) -> bytes:
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def test_serve_is_ready_and_searches(live_server: LiveServer, catalog_items) -> None:
    ready = httpx.get(f"{live_server.url}/readyz").json()
    assert ready["products"] == len(catalog_items)
    response = httpx.get(f"{live_server.url}/v1/search/text", params={"q": "red", "limit": 3})
    assert response.status_code == 200 and len(response.json()["results"]) == 3


def test_oversized_body_is_refused_before_it_is_sent(live_server: LiveServer) -> None:
    """Declared 10 GB with `Expect: 100-continue`: the answer is 413 and the client never
    has to send a byte of the body."""
    with socket.create_connection(("127.0.0.1", live_server.port)) as sock:
        sock.sendall(
            b"POST /v1/search/image HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: multipart/form-data; boundary=x\r\n"
            b"Content-Length: 10000000000\r\nExpect: 100-continue\r\n\r\n"
        )
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert b"ContentTooLarge" in response
    assert b"100 Continue" not in response


def test_chunked_body_is_cut_off_at_the_limit(live_server: LiveServer) -> None:
    """No Content-Length: the server counts the streamed chunks and answers 413 once past
    the limit, long before the client would have finished."""
    chunk = b"\0" * 65536
    sent = 0
    with socket.create_connection(("127.0.0.1", live_server.port)) as sock:
        sock.sendall(
            b"POST /v1/search HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        try:
            while sent < 50 * MAX_UPLOAD_BYTES:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                if select.select([sock], [], [], 0)[0]:
                    break  # the server has answered
        except (BrokenPipeError, ConnectionResetError):
            pass  # it answered and closed while we were still sending
        response = read_response(sock)
    assert response.startswith(b"HTTP/1.1 413"), response[:200]
    assert sent < 10 * MAX_UPLOAD_BYTES


def test_a_slow_request_does_not_block_the_others(
    live_server: LiveServer, image_server: ImageServer, catalog_items: list[CatalogItem]
) -> None:
    """A PUT whose image download hangs keeps one worker thread busy; health checks and
    searches are answered meanwhile, and the PUT completes once the download does."""
    image_server.gate.clear()
    image_server.arrived.clear()
    url = f"{image_server.url}/slow/{catalog_items[0].path.name}"
    result: dict[str, httpx.Response] = {}

    def slow_put() -> None:
        result["put"] = httpx.put(
            f"{live_server.url}/v1/products/slow-1",
            json={"image_url": url},
            headers=WRITE_HEADERS,
            timeout=60,
        )

    thread = threading.Thread(target=slow_put)
    thread.start()
    try:
        assert image_server.arrived.wait(timeout=60), "the PUT never started its download"
        for _ in range(3):
            assert httpx.get(f"{live_server.url}/healthz", timeout=10).status_code == 200
            search = httpx.get(f"{live_server.url}/v1/search/text", params={"q": "x"}, timeout=10)
            assert search.status_code == 200
        assert thread.is_alive(), "the PUT should still be waiting for its image"
        assert "put" not in result
    finally:
        image_server.gate.set()
        thread.join(timeout=60)
    assert result["put"].status_code == 201, result["put"].text


def test_cli_ingest_in_another_process_becomes_searchable(
    live_server: LiveServer, tmp_path
) -> None:
    image = tmp_path / "new.png"
    draw_product("diamond", (5, 5, 5), 42, size=110).save(image)
    manifest = tmp_path / "more.csv"
    with open(manifest, "w", newline="") as handle:
        csv.writer(handle).writerows([["id", "image", "title"], ["cli-1", "new.png", "From CLI"]])
    command = [sys.executable, "-m", "lookalike.cli", "index", str(manifest), "-q"]
    subprocess.run(
        [*command, "--data-dir", str(live_server.data_dir)],
        env=live_server.env,
        check=True,
        capture_output=True,
        timeout=300,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with open(image, "rb") as handle:
            response = httpx.post(
                f"{live_server.url}/v1/search/image", files={"image": ("q.png", handle)}
            )
        if response.json()["results"][0]["id"] == "cli-1":
            break
        time.sleep(0.1)
    else:
        pytest.fail("the server never picked up the CLI's ingest")
