"""The stream consumer against a real redis-server, the tiny real model, SQLite and FAISS:
events apply in order per product, redelivery changes nothing, poison goes to the
dead-letter stream after N tries without holding up the others. Events name images by URL
(a loopback server, allow-listed): an event never reads a local file."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lookalike import Engine, Settings
from lookalike.errors import InvalidInput
from lookalike.index.persist import read_meta
from lookalike.ingest.consumer import StreamConsumer
from lookalike.ingest.events import parse_event
from lookalike.ingest.redis_stream import RedisStreamSource, publish
from tests.support.http_files import FolderServer, serve_folder

redis = pytest.importorskip("redis", reason="needs lookalike[redis]")

STREAM = "test:events"


@pytest.fixture
def photos(photo_folder: Path) -> Iterator[FolderServer]:
    with serve_folder(photo_folder) as server:
        yield server


@pytest.fixture
def live_settings(settings: Settings, redis_url: str, photos: FolderServer) -> Settings:
    return settings.model_copy(
        update={
            "fetch_allow_hosts": [photos.allow_entry],
            "redis_url": redis_url,
            "stream_name": STREAM,
            "consumer_name": "test-consumer",
            "max_deliveries": 3,
            "consumer_retry_delay_s": 0.05,
            "consumer_block_ms": 50,
            "download_retries": 0,
        }
    )


@pytest.fixture
def client(redis_url: str):
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def live_engine(live_settings: Settings):
    with Engine(live_settings) as engine:
        yield engine


def make_consumer(engine: Engine, **overrides) -> StreamConsumer:
    settings = engine.settings
    source = RedisStreamSource.from_settings(settings)
    options = {
        "batch_size": settings.consumer_batch_size,
        "block_ms": settings.consumer_block_ms,
        "max_deliveries": settings.max_deliveries,
        "retry_delay_s": settings.consumer_retry_delay_s,
        "metrics": engine.metrics,
        **overrides,
    }
    return StreamConsumer(source, engine, **options)


def drain(consumer: StreamConsumer, done: Callable[[], bool], timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "the consumer did not get there in time"
        consumer.step()


def settled(consumer: StreamConsumer) -> Callable[[], bool]:
    return lambda: consumer.source.lag() == {"lag": 0, "pending": 0} and not consumer.pending


def created(product_id: str, image: str, **fields) -> dict:
    return {"type": "product_created", "product": {"id": product_id, "image": image, **fields}}


def image_of(photo_folder: Path, i: int) -> Path:
    return photo_folder / f"cat{i % 2}" / f"item_{i:04d}.png"


def url_of(photos: FolderServer, photo_folder: Path, i: int) -> str:
    return photos.url_of(image_of(photo_folder, i), photo_folder)


def dead_letters(client: redis.Redis) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in client.xrange(f"{STREAM}:dead")
    ]


def test_events_create_update_and_delete_products(
    live_engine: Engine, client: redis.Redis, photo_folder: Path, photos: FolderServer
) -> None:
    for i in range(3):
        publish(client, STREAM, created(f"p{i}", url_of(photos, photo_folder, i), price=10 + i))
    publish(
        client,
        STREAM,
        {"type": "product_updated", "product_id": "p0", "image": url_of(photos, photo_folder, 0),
         "price": 99.5, "title": "Repriced", "category": "bags", "color": "red"},
    )  # fmt: skip
    publish(client, STREAM, {"type": "product_updated", "product": {"id": "p1", "title": "New"}})
    publish(client, STREAM, {"type": "product_deleted", "product": {"id": "p2"}})
    publish(client, STREAM, {"type": "product_deleted", "id": "never-existed"})
    consumer = make_consumer(live_engine)
    drain(consumer, settled(consumer))

    catalog = live_engine.catalog
    assert sorted(p.id for p in catalog.iter_products()) == ["p0", "p1"]
    p0, p1 = catalog.get("p0"), catalog.get("p1")
    assert (p0.title, p0.price, p0.category, p0.attributes) == (
        "Repriced",
        99.5,
        "bags",
        {"color": "red"},
    )
    # An update without an image keeps the stored one (and its embedding).
    assert p1.title == "New" and p1.image_source == url_of(photos, photo_folder, 1)
    assert p1.vector_id is not None
    assert consumer.stats.applied == 7 and not dead_letters(client)
    top = live_engine.search_image(image_of(photo_folder, 1).read_bytes(), limit=1)
    assert top.hits[0].product.id == "p1"


def state(engine: Engine) -> dict[str, tuple]:
    """What the catalog says about each product (not when it was last written)."""
    return {
        p.id: (p.title, p.price, p.image_source, p.content_hash, p.vector_id)
        for p in engine.catalog.iter_products()
    }


def test_redelivered_events_leave_the_same_catalog(
    live_engine: Engine, client: redis.Redis, photo_folder: Path, photos: FolderServer
) -> None:
    events = [created(f"p{i}", url_of(photos, photo_folder, i), price=i) for i in range(4)]
    events.append({"type": "product_updated", "product": {"id": "p1", "price": 7.0}})
    events.append({"type": "product_deleted", "product": {"id": "p3"}})
    for event in events:
        publish(client, STREAM, event)
    consumer = make_consumer(live_engine)
    drain(consumer, settled(consumer))
    before = state(live_engine)
    assert sorted(before) == ["p0", "p1", "p2"] and before["p1"][1] == 7.0

    for event in events:  # the same events again, as after a crash before the ack
        publish(client, STREAM, event)
    drain(consumer, settled(consumer))
    assert state(live_engine) == before  # same vector ids: nothing was encoded again
    assert len(live_engine.live_index.index) == 3

    head, version = live_engine.catalog.log_head(), live_engine.catalog.version()
    publish(client, STREAM, events[0])  # a lone repeat of an unchanged product
    drain(consumer, settled(consumer))
    assert (live_engine.catalog.log_head(), live_engine.catalog.version()) == (head, version)


def test_poison_goes_to_the_dead_letter_stream_and_never_blocks(
    live_engine: Engine, client: redis.Redis, photo_folder: Path, photos: FolderServer
) -> None:
    corrupt = photo_folder / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 100)
    client.xadd(STREAM, {"event": "{not json"})
    publish(client, STREAM, created("good-1", url_of(photos, photo_folder, 1)))
    publish(client, STREAM, created("bad-image", photos.url_of(corrupt, photo_folder)))
    publish(client, STREAM, {"type": "product_renamed", "product": {"id": "x"}})
    publish(client, STREAM, created("good-2", url_of(photos, photo_folder, 2)))
    publish(client, STREAM, {"type": "product_created", "product": {"title": "no id"}})
    consumer = make_consumer(live_engine)

    consumer.step()  # one round: the good ones are applied, the poison waits for a retry
    assert {p.id for p in live_engine.catalog.iter_products()} == {"good-1", "good-2"}
    assert consumer.pending == 4 and not dead_letters(client)

    drain(consumer, settled(consumer))
    dead = dead_letters(client)
    assert len(dead) == 4 and all(entry["attempts"] == "3" for entry in dead)
    reasons = " | ".join(entry["error"] for entry in dead)
    assert "not valid JSON" in reasons
    assert "corrupt or truncated" in reasons
    assert "unknown event type 'product_renamed'" in reasons
    assert "without a product id" in reasons
    assert "{not json" in [entry["event"] for entry in dead]  # kept as it came, for replay
    assert consumer.stats.dead_lettered == 4 and consumer.stats.failed_tries == 12
    assert {p.id for p in live_engine.catalog.iter_products()} == {"good-1", "good-2"}


def test_a_product_s_later_events_wait_behind_its_failed_one(
    live_engine: Engine, client: redis.Redis, photo_folder: Path, photos: FolderServer
) -> None:
    late = photo_folder / "late.png"  # not there yet: the first event fails until it is
    publish(client, STREAM, created("p", photos.url_of(late, photo_folder), price=1.0))
    publish(client, STREAM, created("p", url_of(photos, photo_folder, 3), price=2.0))
    publish(client, STREAM, created("q", url_of(photos, photo_folder, 4)))
    consumer = make_consumer(live_engine, retry_delay_s=0.3)

    consumer.step()
    ids = {p.id for p in live_engine.catalog.iter_products()}
    assert ids == {"q"}  # p's newer event did not overtake its failed older one
    late.write_bytes(image_of(photo_folder, 5).read_bytes())
    drain(consumer, settled(consumer))
    assert live_engine.catalog.get("p").price == 2.0  # applied in order: 1.0, then 2.0
    assert live_engine.catalog.get("p").image_source == url_of(photos, photo_folder, 3)
    assert not dead_letters(client)


def test_an_event_handed_out_too_often_is_dead_lettered_unread(
    live_engine: Engine, client: redis.Redis, photo_folder: Path, photos: FolderServer
) -> None:
    """A consumer that crashed on an event max_deliveries times: the next one parks it."""
    publish(client, STREAM, created("crasher", url_of(photos, photo_folder, 1)))
    consumer = make_consumer(live_engine)  # creates the group
    for _ in range(3):  # three crashed tries, as the same consumer name
        client.xreadgroup("lookalike", "test-consumer", {STREAM: "0" if _ else ">"}, count=10)
    drain(consumer, settled(consumer))
    (dead,) = dead_letters(client)
    assert "handed out 4 times" in dead["error"] and dead["attempts"] == "4"
    assert not list(live_engine.catalog.iter_products())


def test_events_left_by_a_vanished_consumer_are_taken_over(
    live_engine: Engine, client: redis.Redis, photo_folder: Path, photos: FolderServer
) -> None:
    for i in range(3):
        publish(client, STREAM, created(f"p{i}", url_of(photos, photo_folder, i)))
    consumer = make_consumer(live_engine)
    consumer.source.claim_idle_ms = 100
    client.xreadgroup("lookalike", "gone", {STREAM: ">"}, count=10)  # then it died
    time.sleep(0.15)
    drain(consumer, settled(consumer))
    assert sorted(p.id for p in live_engine.catalog.iter_products()) == ["p0", "p1", "p2"]


def test_consumer_metrics_show_lag_and_throughput(
    live_engine: Engine, client: redis.Redis, photo_folder: Path, photos: FolderServer
) -> None:
    consumer = make_consumer(live_engine)
    for i in range(5):
        publish(client, STREAM, created(f"p{i}", url_of(photos, photo_folder, i)))
    registry = live_engine.metrics.registry
    assert registry.get_sample_value("lookalike_consumer_lag", {"state": "lag"}) == 5
    drain(consumer, settled(consumer))
    assert registry.get_sample_value("lookalike_consumer_lag", {"state": "lag"}) == 0
    assert registry.get_sample_value("lookalike_consumer_lag", {"state": "pending"}) == 0
    applied = {"outcome": "applied", "type": "product_created"}
    assert registry.get_sample_value("lookalike_consumer_events_total", applied) == 5
    assert registry.get_sample_value("lookalike_ingest_items_total", {"outcome": "added"}) == 5
    assert registry.get_sample_value("lookalike_index_vectors") == 5


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"event": "[1, 2]"}, "must be a JSON object"),
        ({"event": json.dumps({"type": "product_deleted"})}, "without a product id"),
        ({"type": "product_created", "id": "a", "price": "cheap"}, "is not a number"),
        ({"type": "product_created", "id": "a", "attributes": "[]"}, "must be a JSON object"),
        ({"type": "product_created", "product": "3"}, "must be a JSON object"),
    ],
)
def test_bad_events_are_refused_with_a_reason(fields: dict, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        parse_event(fields)


def test_flat_stream_fields_are_an_event_too() -> None:
    event = parse_event(
        {"type": "product_created", "product_id": "sku-1", "image_url": "https://x/1.jpg",
         "price": "12.5", "size": "42", "ts": "2024-01-01"}
    )  # fmt: skip
    assert event.kind == "upsert" and event.product_id == "sku-1"
    assert (event.item.image, event.item.price) == ("https://x/1.jpg", 12.5)
    assert event.item.attributes == {"size": 42}  # the envelope's ts is not an attribute


def test_the_index_is_saved_while_consuming(
    live_settings: Settings, client: redis.Redis, photo_folder: Path, photos: FolderServer
) -> None:
    settings = live_settings.model_copy(update={"index_save_interval_s": 0.2})
    saved = settings.data_dir / "index" / "index.json"
    with Engine(settings) as engine:
        consumer = make_consumer(engine)
        thread = threading.Thread(target=consumer.run, daemon=True)
        thread.start()
        try:
            publish(client, STREAM, created("p0", url_of(photos, photo_folder, 0)))
            deadline = time.monotonic() + 60
            while not (saved.exists() and read_meta(saved).watermark > 0):
                assert time.monotonic() < deadline, "the index was never saved"
                time.sleep(0.05)
            assert read_meta(saved).watermark == engine.catalog.log_head()
        finally:
            consumer.stop()
            thread.join(timeout=30)
