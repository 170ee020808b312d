"""Freshness through the real servers: a product event published to a real redis-server
is applied by the stream consumer and returned by a real `lookalike serve` (which shares
Redis for its caches) within a second."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from lookalike.engine import Engine
from lookalike.ingest.consumer import StreamConsumer
from lookalike.ingest.redis_stream import RedisStreamSource, publish
from tests.support.api_catalog import (
    api_settings,
    copy_data,
    draw_product,
    start_server,
    stop_server,
)
from tests.support.http_files import FolderServer, serve_folder

redis = pytest.importorskip("redis", reason="needs lookalike[redis]")

STREAM = "fresh:events"
FRESHNESS_GOAL_S = 1.0


@pytest.fixture
def new_images(tmp_path: Path) -> Iterator[FolderServer]:
    """Where the events' images are served from (events name URLs, never local files)."""
    folder = tmp_path / "new-images"
    folder.mkdir()
    with serve_folder(folder) as server:
        yield server


@pytest.fixture
def live_setup(
    tmp_path: Path,
    indexed_data: Path,
    tiny_model: Path,
    redis_url: str,
    monkeypatch,
    new_images: FolderServer,
) -> Iterator[tuple[str, redis.Redis]]:
    """A server and a consumer on one data dir, both warmed up; yields (url, redis)."""
    data_dir = copy_data(indexed_data, tmp_path)
    monkeypatch.setenv("LOOKALIKE_REDIS_URL", redis_url)
    server = start_server(data_dir, tiny_model)
    settings = api_settings(
        data_dir,
        tiny_model,
        redis_url=redis_url,
        stream_name=STREAM,
        consumer_name="fresh",
        consumer_block_ms=100,
        fetch_allow_hosts=[new_images.allow_entry],
    )
    engine = Engine(settings)
    engine.live_index  # noqa: B018  (model and index loaded before the clock starts)
    consumer = StreamConsumer(
        RedisStreamSource.from_settings(settings), engine, block_ms=settings.consumer_block_ms
    )
    thread = threading.Thread(target=consumer.run, daemon=True)
    thread.start()
    client = redis.Redis.from_url(redis_url)
    try:
        yield server.url, client
    finally:
        consumer.stop()
        thread.join(timeout=30)
        consumer.source.close()
        engine.close()
        client.close()
        stop_server(server.process)


def seconds_until_found(url: str, product_id: str, image: bytes, timeout_s: float = 30) -> float:
    """Search by the product's image until it is among the results; seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        response = httpx.post(
            f"{url}/v1/search/image",
            files={"image": ("q.png", image, "image/png")},
            params={"limit": 3},
            timeout=10,
        )
        assert response.status_code == 200
        if product_id in [hit["id"] for hit in response.json()["results"]]:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"{product_id} never became searchable")


def test_published_products_are_searchable_within_a_second(
    live_setup: tuple[str, redis.Redis], tmp_path: Path, new_images: FolderServer
) -> None:
    url, client = live_setup
    images = {}
    for n in range(4):
        path = tmp_path / "new-images" / f"fresh-{n}.png"
        draw_product(
            ("circle", "square", "triangle", "diamond")[n], (20 + 60 * n, 90, 200), 50 + n
        ).save(path)
        images[f"fresh-{n}"] = path

    def publish_and_wait(product_id: str) -> float:
        image = images[product_id].read_bytes()
        publish(
            client,
            STREAM,
            {
                "type": "product_created",
                "product": {"id": product_id, "image": f"{new_images.url}/{product_id}.png"},
            },
        )
        return seconds_until_found(url, product_id, image)

    publish_and_wait("fresh-0")  # warm-up: first requests, first encode
    waits = [publish_and_wait(f"fresh-{n}") for n in range(1, 4)]
    print(f"event -> searchable: {', '.join(f'{w:.3f}' for w in waits)} s")
    assert max(waits) < FRESHNESS_GOAL_S, waits
