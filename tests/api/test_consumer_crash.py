"""A real `lookalike consume` killed with SIGKILL in the middle of a batch (some of it
committed, none of it acknowledged), then restarted: every event takes effect exactly
once, and the index saved at shutdown matches the catalog."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

import lookalike
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.index.faiss_index import FlatIndex
from lookalike.ingest.redis_stream import publish
from tests.support.api_catalog import CatalogItem, ImageServer, free_port

redis = pytest.importorskip("redis", reason="needs lookalike[redis]")

STREAM = "crash:events"
GROUP = "lookalike"
BATCH = 16


def start_consumer(
    data_dir: Path, model_dir: Path, redis_url: str, image_host: str, *args: str
) -> subprocess.Popen:
    """`lookalike consume`; `image_host`: the allow-listed loopback image server."""
    src = str(Path(lookalike.__file__).resolve().parents[1])
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]),
        "LOOKALIKE_MODEL_CHECKPOINT": str(model_dir),
        "LOOKALIKE_DEVICE": "cpu",
        "LOOKALIKE_REDIS_URL": redis_url,
        "LOOKALIKE_STREAM_NAME": STREAM,
        "LOOKALIKE_CONSUMER_NAME": "crash-test",
        "LOOKALIKE_CONSUMER_BATCH_SIZE": str(BATCH),
        "LOOKALIKE_CONSUMER_BLOCK_MS": "200",
        "LOOKALIKE_ENCODE_BATCH_SIZE": "4",  # several commits per batch of events
        "LOOKALIKE_INGEST_WORKERS": "2",
        "LOOKALIKE_DOWNLOAD_RETRIES": "0",
        "LOOKALIKE_DOWNLOAD_TIMEOUT_S": "120",
        "LOOKALIKE_FETCH_DEADLINE_S": "240",  # the gated URL waits for the test, not a drip
        "LOOKALIKE_FETCH_ALLOW_HOSTS": json.dumps([image_host]),
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


@pytest.mark.slow
def test_killed_consumer_resumes_and_applies_every_event_once(
    tmp_path: Path,
    tiny_model: Path,
    redis_url: str,
    catalog_items: list[CatalogItem],
    image_server: ImageServer,
) -> None:
    paths = [item.path for item in catalog_items]
    urls = [f"{image_server.url}/{path.name}" for path in paths]  # events name no local file
    client = redis.Redis.from_url(redis_url)
    # The first batch: 16 new products, one of them behind the slow URL.
    expected: dict[str, tuple[float, str]] = {}

    def event(kind: str, i: int, image: str, price: float) -> None:
        product = {"id": f"p{i}", "image": image, "price": price, "title": f"item {i}"}
        publish(client, STREAM, {"type": kind, "product": product})
        expected[f"p{i}"] = (price, f"item {i}")

    for i, path in enumerate(paths[:BATCH]):
        slow = f"{image_server.url}/slow/{path.name}"  # answers once the gate opens
        event("product_created", i, slow if i == 5 else urls[i], float(i))
    # Later batches: more products, price updates of earlier ones, a delete.
    for i in range(BATCH, len(paths)):
        event("product_created", i, urls[i], float(i))
    for i in (1, 6, 20):
        event("product_updated", i, urls[i], 100.0 + i)
    publish(client, STREAM, {"type": "product_deleted", "product": {"id": "p2"}})
    del expected["p2"]

    data_dir = tmp_path / "data"
    catalog_path = data_dir / "catalog.db"
    consumer = start_consumer(data_dir, tiny_model, redis_url, image_server.allow_entry)
    try:
        # Kill it while the first batch is partly committed (encoder batches of 4 go in
        # as they are ready; the slow item holds up the rest), none of it acknowledged.
        wait_for(lambda: image_server.arrived.is_set() and count(catalog_path) >= 4, consumer)
        consumer.send_signal(signal.SIGKILL)
        consumer.wait(timeout=30)
    finally:
        if consumer.poll() is None:
            consumer.kill()
    pending = client.xpending(STREAM, GROUP)
    assert pending["pending"] == BATCH  # the whole batch, partly committed, never acknowledged
    assert 4 <= count(catalog_path) < BATCH
    catalog = SQLiteCatalog(catalog_path)
    vectors_before = {pid: row[2] for pid, row in products(catalog).items()}

    image_server.gate.set()
    port = free_port()
    consumer = start_consumer(
        data_dir, tiny_model, redis_url, image_server.allow_entry, "--metrics-port", str(port)
    )
    try:
        wait_for(
            lambda: (
                {pid: row[:2] for pid, row in products(catalog).items()} == expected
                and client.xpending(STREAM, GROUP)["pending"] == 0
                and client.xinfo_groups(STREAM)[0]["lag"] == 0
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
        assert metrics[("lookalike_consumer_events_total", applied)] == len(paths)
        consumer.send_signal(signal.SIGTERM)  # a clean stop saves the index
        output, _ = consumer.communicate(timeout=60)
    finally:
        if consumer.poll() is None:
            consumer.kill()
    assert consumer.returncode == 0, output
    assert "dead-lettered" in output and ", 0 dead-lettered" in output
    assert client.xlen(f"{STREAM}:dead") == 0

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
    client.close()
