"""A real `lookalike consume` killed with SIGKILL in the middle of a batch (some of it
committed, none of it acknowledged), then restarted: every event takes effect exactly
once, and the index saved at shutdown matches the catalog. On every event source: a
real redis-server, a real Kafka-protocol broker (where the killed member's partitions
move once its session expires)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import lookalike
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.config import Settings
from lookalike.index.faiss_index import FlatIndex
from lookalike.ingest.event_sources import Backlog, open_event_publisher, open_event_source
from tests.support.api_catalog import CatalogItem, ImageServer, free_port
from tests.support.event_backends import EventQueue
from tests.support.http_files import serve_folder

BATCH = 16


def start_consumer(
    data_dir: Path, model_dir: Path, queue: Settings, image_server: ImageServer, *args: str
) -> subprocess.Popen:
    src = str(Path(lookalike.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        "LOOKALIKE_MODEL_CHECKPOINT": str(model_dir),
        "LOOKALIKE_DEVICE": "cpu",
        "LOOKALIKE_EVENTS_URL": queue.events_url,
        "LOOKALIKE_STREAM_NAME": queue.stream_name,
        "LOOKALIKE_CONSUMER_GROUP": queue.consumer_group,
        "LOOKALIKE_KAFKA_CONFIG": json.dumps(queue.kafka_config),
        "LOOKALIKE_KAFKA_TOPIC_PARTITIONS": str(queue.kafka_topic_partitions),
        # The fetch guard's allow-list: the image server, the only loopback host to fetch.
        "LOOKALIKE_FETCH_ALLOW_HOSTS": json.dumps([urlsplit(image_server.url).netloc]),
        "LOOKALIKE_CONSUMER_NAME": "crash-test",
        "LOOKALIKE_CONSUMER_BATCH_SIZE": str(BATCH),
        "LOOKALIKE_CONSUMER_BLOCK_MS": "200",
        "LOOKALIKE_ENCODE_BATCH_SIZE": "4",  # several commits per batch of events
        "LOOKALIKE_INGEST_WORKERS": "2",
        "LOOKALIKE_DOWNLOAD_RETRIES": "0",
        "LOOKALIKE_DOWNLOAD_TIMEOUT_S": "120",
        "LOOKALIKE_FETCH_DEADLINE_S": "240",  # the gated URL waits for the test, not a drip
    }
    command = [sys.executable, "-m", "lookalike.cli", "consume", "--data-dir", str(data_dir)]
    command += args
    return subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, timeout_s: float = 180):
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process.poll() is not None:
            raise AssertionError(f"consumer exited early:\n{process.stdout.read()}")
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def count(catalog_path: Path) -> int:
    """Products committed so far, read without touching the consumer's database."""
    if not catalog_path.exists():
        return 0
    with contextlib.closing(sqlite3.connect(f"file:{catalog_path}?mode=ro", uri=True)) as conn:
        try:
            return conn.execute("SELECT COUNT(*) FROM products").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            return 0


def products(catalog: SQLiteCatalog) -> dict[str, tuple]:
    return {p.id: (p.price, p.title, p.vector_id) for p in catalog.iter_products()}


def backlog(queue: Settings) -> Backlog:
    """The group's backlog, seen from a source that never joins it."""
    source = open_event_source(queue.model_copy(update={"consumer_name": "inspector"}))
    try:
        return source.backlog()
    finally:
        source.close()


def acknowledged(queue: Settings, published: int) -> int:
    """Events the group has acknowledged: neither waiting to be handed out nor pending."""
    left = backlog(queue)
    return published - (left.lag + left.pending)


@pytest.fixture
def image_server(catalog_items: list[CatalogItem]) -> Iterator[ImageServer]:
    """This test's own image server, so that each event source starts with the /slow/
    gate closed and nothing arrived (the module-scoped one keeps both set by the run
    before: the slow image would come at once, and the kill would not wait for it)."""
    with serve_folder(catalog_items[0].path.parent) as server:
        yield server


@pytest.mark.slow
def test_killed_consumer_resumes_and_applies_every_event_once(
    tmp_path: Path,
    tiny_model: Path,
    event_queue: EventQueue,
    catalog_items: list[CatalogItem],
    image_server: ImageServer,
) -> None:
    queue = event_queue.settings(Settings(_env_file=None))
    paths = [item.path for item in catalog_items]
    publisher = open_event_publisher(queue)
    # The first batch: 16 new products, one of them behind the slow URL.
    expected: dict[str, tuple[float, str]] = {}
    published = 0

    def event(kind: str, i: int, image: str, price: float) -> None:
        nonlocal published
        product = {"id": f"p{i}", "image": image, "price": price, "title": f"item {i}"}
        publisher.publish({"type": kind, "product": product})
        expected[f"p{i}"] = (price, f"item {i}")
        published += 1

    for i, path in enumerate(paths[:BATCH]):
        slow = f"{image_server.url}/slow/{path.name}"  # answers once the gate opens
        event("product_created", i, slow if i == 5 else f"{image_server.url}/{path.name}", i)
    # Later batches: more products, price updates of earlier ones, a delete.
    for i, path in enumerate(paths[BATCH:], start=BATCH):
        event("product_created", i, f"{image_server.url}/{path.name}", float(i))
    for i in (1, 6, 20):
        event("product_updated", i, f"{image_server.url}/{paths[i].name}", 100.0 + i)
    publisher.publish({"type": "product_deleted", "product": {"id": "p2"}})
    published += 1
    del expected["p2"]

    data_dir = tmp_path / "data"
    catalog_path = data_dir / "catalog.db"
    consumer = start_consumer(data_dir, tiny_model, queue, image_server)
    try:
        # Kill it while the batch holding the slow item is partly committed (encoder
        # batches of 4 go in as they are ready; the slow item holds up the rest), none of
        # it acknowledged. Once the slow request has arrived the consumer is inside that
        # batch, so nothing more is acknowledged until the gate opens: wait until the
        # catalog holds more products than the group has acknowledged events. (With
        # Kafka, batches of other partitions may have been applied and acknowledged
        # before the slow one: products alone would not show that this one has begun.)
        wait_for(
            lambda: (
                image_server.arrived.is_set()
                and count(catalog_path) >= 4
                and count(catalog_path) > acknowledged(queue, published)
            ),
            consumer,
        )
        consumer.send_signal(signal.SIGKILL)
        consumer.wait(timeout=30)
    finally:
        if consumer.poll() is None:
            consumer.kill()
    done = acknowledged(queue, published)
    # Products committed whose events were never acknowledged.
    assert count(catalog_path) > done
    assert 4 <= count(catalog_path) < len(paths)
    catalog = SQLiteCatalog(catalog_path)
    vectors_before = {pid: row[2] for pid, row in products(catalog).items()}

    image_server.gate.set()
    port = free_port()
    consumer = start_consumer(
        data_dir, tiny_model, queue, image_server, "--metrics-port", str(port)
    )
    try:
        wait_for(
            lambda: (
                {pid: row[:2] for pid, row in products(catalog).items()} == expected
                and backlog(queue).lag == 0
                and backlog(queue).pending == 0
            ),
            consumer,
        )
        # The restarted consumer's own metrics endpoint (`--metrics-port`).
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        metrics = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }
        assert metrics[("lookalike_consumer_lag", (("state", "lag"),))] == 0
        applied = (("outcome", "applied"), ("type", "product_created"))
        # Every create not acknowledged before the kill, again (unchanged: not re-encoded);
        # at least once: a Kafka member that joined while the killed one's session was
        # still open may be handed some twice when the group rebalances again.
        assert metrics[("lookalike_consumer_events_total", applied)] >= len(paths) - done
        consumer.send_signal(signal.SIGTERM)  # a clean stop saves the index
        output, _ = consumer.communicate(timeout=60)
    finally:
        if consumer.poll() is None:
            consumer.kill()
    assert consumer.returncode == 0, output
    assert "dead-lettered" in output and ", 0 dead-lettered" in output
    assert publisher.dead_letters() == []

    final = products(catalog)
    assert sorted(final) == sorted(expected)  # nothing lost, nothing twice (ids are unique)
    # Products committed before the kill were not encoded again when redelivered.
    kept = {pid: vector for pid, vector in vectors_before.items() if pid in expected}
    assert kept and all(final[pid][2] == vector for pid, vector in kept.items())
    adds, removes = (
        catalog._conn().execute("SELECT SUM(op = 1), SUM(op = -1) FROM vector_log").fetchone()
    )
    assert (adds, removes) == (len(paths), 1)  # each product encoded once; p2 removed

    # The index saved at shutdown holds exactly the catalog's vectors.
    index = FlatIndex.load(data_dir / "index")
    assert index.meta.watermark == catalog.log_head() and len(index) == len(expected)
    ids, vectors = zip(*[catalog.embedding(pid) for pid in expected], strict=True)
    _, found = index.search(np.stack(vectors), 1)
    assert list(found[:, 0]) == list(ids)
    catalog.close()
    publisher.close()
