"""Live catalog: stream consumer throughput, event-to-searchable freshness, cached search.

    PYTHONPATH=src:. python benchmarks/live_catalog.py               # ~3 minutes on 2 cores
    PYTHONPATH=src:. python benchmarks/live_catalog.py --events 100  # a quick look

Needs `redis-server` (Debian package) on PATH; it is started on a free port in a temp dir.
The encoder is the tests' tiny random-init open_clip model (hub weights are not reachable
here) on one torch thread, so encoding is cheap: read the ratios, not absolute numbers.

1. Consumer throughput: N `product_created` events (64 px PNG files) through the real
   StreamConsumer into SQLite + FAISS, batches of `--batch` events against batches of one
   event (the baseline: a catalog transaction and an acknowledgement per event).
2. Freshness: an event published to the stream until the real app (in-process, its index
   sync loop running) returns the product for a search by its image; for two sync
   intervals. The goal is under a second.
3. Cached search: `Engine.search` (what the API and CLI call) answering the same text
   and image queries repeatedly, with the caches off (baseline), in-process (LRU) and
   in Redis.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import redis
from fastapi.testclient import TestClient
from tests.support.images import write_images
from tests.support.redis_server import RedisServer
from tests.support.tiny_models import build_tiny_openclip

from lookalike.api import create_app
from lookalike.config import Settings
from lookalike.engine import Engine
from lookalike.ingest.consumer import StreamConsumer
from lookalike.ingest.redis_stream import RedisStreamSource, publish


def settings_for(root: Path, model: Path, redis_url: str, **overrides) -> Settings:
    values = {
        "data_dir": root,
        "model_checkpoint": str(model),
        "device": "cpu",
        "redis_url": redis_url,
        "stream_name": f"bench:{root.name}",
        "consumer_name": "bench",
        "consumer_block_ms": 100,
        "ingest_workers": 2,
        "encode_batch_size": 32,
        # One torch thread: on a shared 2-core machine, torch's thread pool waiting for
        # busy cores costs ~0.4 s per small forward pass (1 thread: ~15 ms).
        "torch_threads": 1,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


def consume_all(settings: Settings, paths: list[Path], batch: int) -> float:
    """Seconds to apply one created event per path (published beforehand)."""
    client = redis.Redis.from_url(settings.redis_url)
    for i, path in enumerate(paths):
        event = {"type": "product_created", "product": {"id": f"p{i}", "image": str(path)}}
        publish(client, settings.stream_name, event)
    with Engine(settings) as engine:
        engine.live_index  # noqa: B018  (model loaded before the clock starts)
        consumer = StreamConsumer(
            RedisStreamSource.from_settings(settings), engine, batch_size=batch, block_ms=100
        )
        started = time.perf_counter()
        while consumer.stats.applied < len(paths):
            consumer.step()
        elapsed = time.perf_counter() - started
        assert engine.catalog.stats().searchable == len(paths)
        consumer.source.close()
    client.close()
    return elapsed


def freshness(settings: Settings, paths: list[Path], samples: int) -> list[float]:
    """Seconds from publishing an event to the app returning the product."""
    client = redis.Redis.from_url(settings.redis_url)
    waits = []
    with Engine(settings) as writer, TestClient(create_app(settings)) as app:
        writer.live_index  # noqa: B018
        consumer = StreamConsumer(RedisStreamSource.from_settings(settings), writer, block_ms=100)
        thread = threading.Thread(target=consumer.run, daemon=True)
        thread.start()
        for i, path in enumerate(paths[: samples + 1]):
            image = path.read_bytes()
            started = time.perf_counter()
            event = {"type": "product_created", "product": {"id": f"f{i}", "image": str(path)}}
            publish(client, settings.stream_name, event)
            while True:
                response = app.post(
                    "/v1/search/image",
                    files={"image": ("q.png", image, "image/png")},
                    params={"limit": 3},
                )
                if f"f{i}" in [hit["id"] for hit in response.json()["results"]]:
                    break
                time.sleep(0.01)
            if i:  # the first one warms up
                waits.append(time.perf_counter() - started)
        consumer.stop()
        thread.join()
        consumer.source.close()
    client.close()
    return waits


def cached_search(settings: Settings, image: bytes, repeats: int) -> dict[str, list[float]]:
    """Milliseconds per `Engine.search` for a repeated text query and image query (the
    first of each is a miss)."""
    times: dict[str, list[float]] = {"text": [], "image": []}
    with Engine(settings) as engine:
        engine.live_index  # noqa: B018
        engine.search_text("warm up the model", limit=20)
        for _ in range(repeats):
            t = time.perf_counter()
            engine.search_text("a red square", limit=20)
            times["text"].append((time.perf_counter() - t) * 1000)
            t = time.perf_counter()
            engine.search_image(image, limit=20)
            times["image"].append((time.perf_counter() - t) * 1000)
    return times


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=300)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="lookalike-live-bench-"))
    server = RedisServer(shutil.which("redis-server") or "redis-server").start()
    try:
        model = build_tiny_openclip(root / "model")
        paths = write_images(root / "photos", max(args.events, args.samples + 1), categories=4)
        print(
            f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores; "
            "tiny open_clip (32-d); redis-server on localhost"
        )

        print("\n| consumer | events | seconds | events/s |\n|---|---|---|---|")
        for batch in (1, args.batch):
            settings = settings_for(root / f"consume-{batch}", model, server.url)
            seconds = consume_all(settings, paths[: args.events], batch)
            rate = args.events / seconds
            print(f"| batches of {batch} | {args.events} | {seconds:.1f} | {rate:.1f} |")

        print("\n| index sync interval | samples | p50 s | p95 s | max s |\n|---|---|---|---|---|")
        for interval in (0.5, 0.1):
            settings = settings_for(
                root / f"fresh-{interval}", model, server.url, index_sync_interval_s=interval
            )
            Engine(settings).close()
            waits = freshness(settings, paths, args.samples)
            print(
                f"| {interval} s | {len(waits)} | {statistics.median(waits):.3f} | "
                f"{pct(waits, 0.95):.3f} | {max(waits):.3f} |"
            )

        print("\n| caches | query | first ms | p50 ms, repeated |\n|---|---|---|---|")
        image = paths[0].read_bytes()
        for label, overrides in (
            ("off (baseline)", {"embedding_cache_ttl_s": 0, "result_cache_ttl_s": 0}),
            ("in-process LRU", {"redis_url": None}),
            ("Redis", {}),
        ):
            url = overrides.pop("redis_url", server.url)
            settings = settings_for(root / "consume-1", model, url, **overrides)
            times = cached_search(settings, image, args.repeats)
            for kind, values in times.items():
                repeated = statistics.median(values[1:])
                print(f"| {label} | {kind} | {values[0]:.2f} | {repeated:.2f} |")
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
