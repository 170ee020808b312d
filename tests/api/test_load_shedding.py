"""Load shedding and the request deadline, with requests made slow for real: a PUT whose
image download waits on a gate holds the API's only thread.

With 1 thread and room for 1 waiting call, more requests are answered 503 at once (with
Retry-After, never a 500) instead of queueing; once the slow work ends, the server serves
again. Past the request deadline a request is answered 504, and work it had queued for
the pool is dropped, never run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from lookalike.api import create_app
from tests.support.api_catalog import (
    WRITE_HEADERS,
    CatalogItem,
    ImageServer,
    LiveServer,
    api_settings,
    copy_data,
    draw_product,
    png_bytes,
    start_server,
    stop_server,
)


def pool_busy(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        if family.name == "lookalike_api_pool_busy":
            return family.samples[0].value
    raise AssertionError("no lookalike_api_pool_busy in /metrics")


def wait_for(check, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def one_thread_server(
    tmp_path_factory: pytest.TempPathFactory,
    indexed_data: Path,
    tiny_model: Path,
    image_server: ImageServer,
) -> Iterator[LiveServer]:
    """`lookalike serve` with one API thread and room for one waiting call; it may fetch
    from `image_server` (whose slow downloads hold the one thread)."""
    data_dir = copy_data(indexed_data, tmp_path_factory.mktemp("shedding"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LOOKALIKE_API_THREADS", "1")
        patch.setenv("LOOKALIKE_API_QUEUE_MAX", "1")
        server = start_server(data_dir, tiny_model, allow_hosts=[image_server.allow_entry])
    try:
        yield server
    finally:
        stop_server(server.process)


def test_a_full_pool_sheds_load_fast_with_503_and_recovers(
    one_thread_server: LiveServer, image_server: ImageServer, catalog_items: list[CatalogItem]
) -> None:
    url = one_thread_server.url
    image_server.gate.clear()
    image_server.arrived.clear()
    slow_url = f"{image_server.url}/slow/{catalog_items[0].path.name}"
    background = ThreadPoolExecutor(2)
    try:
        slow_put = background.submit(
            httpx.put,
            f"{url}/v1/products/slow-1",
            json={"image_url": slow_url},
            headers=WRITE_HEADERS,
            timeout=120,
        )
        assert image_server.arrived.wait(timeout=60), "the slow PUT never started its download"
        queued = background.submit(
            httpx.get, f"{url}/v1/search/text", params={"q": "red"}, timeout=120
        )
        wait_for(lambda: pool_busy(url) == 2)  # one running, one waiting: the pool is full

        def timed_search(_: int) -> tuple[int, float, httpx.Response]:
            started = time.monotonic()
            response = httpx.get(f"{url}/v1/search/text", params={"q": "blue"}, timeout=60)
            return response.status_code, time.monotonic() - started, response

        with ThreadPoolExecutor(8) as burst:
            answers = list(burst.map(timed_search, range(16)))
        assert {status for status, _, _ in answers} == {503}
        for _, seconds, response in answers:
            assert seconds < 5, f"a shed request took {seconds:.1f} s"
            assert response.json()["error"]["type"] == "Overloaded"
            assert int(response.headers["retry-after"]) >= 1
        # Probes that need no pool thread still answer.
        assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
        assert not slow_put.done() and not queued.done()
    finally:
        image_server.gate.set()
    assert slow_put.result(timeout=120).status_code == 201
    assert queued.result(timeout=120).status_code == 200
    background.shutdown()
    wait_for(lambda: pool_busy(url) == 0)
    again = httpx.get(f"{url}/v1/search/text", params={"q": "blue"}, timeout=60)
    assert again.status_code == 200


def test_past_the_deadline_a_request_gets_504_and_its_queued_work_never_runs(
    tmp_path: Path,
    indexed_data: Path,
    tiny_model: Path,
    image_server: ImageServer,
    catalog_items: list[CatalogItem],
) -> None:
    settings = api_settings(
        copy_data(indexed_data, tmp_path),
        tiny_model,
        api_threads=1,
        request_deadline_s=1.5,
        fetch_allow_hosts=[image_server.allow_entry],
    )
    image_server.gate.clear()
    image_server.arrived.clear()
    slow_url = f"{image_server.url}/slow/{catalog_items[1].path.name}"
    upload = png_bytes(draw_product("diamond", (9, 99, 9), 97, size=100))
    results: dict[str, tuple[int, float, dict, dict]] = {}

    def call(name: str, client: TestClient, method: str, path: str, **kwargs) -> None:
        started = time.monotonic()
        response = client.request(method, path, headers=WRITE_HEADERS, **kwargs)
        results[name] = (
            response.status_code,
            time.monotonic() - started,
            response.json(),
            dict(response.headers),
        )

    with TestClient(create_app(settings)) as client:
        try:
            slow = threading.Thread(
                target=call,
                args=("slow", client, "PUT", "/v1/products/slow-2"),
                kwargs={"json": {"image_url": slow_url}},
            )
            slow.start()
            assert image_server.arrived.wait(timeout=60)
            waiting = threading.Thread(
                target=call,
                args=("waiting", client, "PUT", "/v1/products/never-run"),
                kwargs={"files": {"image": ("n.png", upload, "image/png")}},
            )
            waiting.start()
            slow.join(timeout=60)
            waiting.join(timeout=60)
        finally:
            image_server.gate.set()
        for name in ("slow", "waiting"):
            status, seconds, body, headers = results[name]
            assert status == 504, (name, body)
            assert body["error"]["type"] == "DeadlineExceeded"
            assert int(headers["retry-after"]) >= 1
            assert 1.5 <= seconds < 10, (name, seconds)
        # The running download finishes unseen (its write may land: PUT is idempotent);
        # the queued upload was dropped before a thread took it.
        wait_for(lambda: client.app.state.runner.busy == 0)
        assert client.get("/v1/products/never-run").status_code == 404
        assert client.get("/v1/search/text", params={"q": "x"}).status_code == 200
