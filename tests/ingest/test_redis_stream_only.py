"""What only Redis Streams do, against a real redis-server (the behaviour every source
shares is in test_event_source_congruence.py): a group counts deliveries across restarts,
XAUTOCLAIM takes over what a vanished or stalled consumer held, and an entry's own fields
are an event too. Images come from a loopback HTTP server."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from lookalike import Engine, Settings
from lookalike.index.persist import read_meta
from lookalike.ingest.consumer import StreamConsumer
from lookalike.ingest.redis_stream import RedisStreamSource, publish
from tests.support.event_backends import consumer_for, consumer_settings
from tests.support.http_files import FolderServer

redis = pytest.importorskip("redis", reason="needs lookalike[redis]")

STREAM = "test:events"


@pytest.fixture
def live_settings(settings: Settings, redis_url: str, photos: FolderServer) -> Settings:
    return consumer_settings(
        settings, photos, redis_url=redis_url, stream_name=STREAM, consumer_name="test-consumer"
    )


@pytest.fixture
def client(redis_url: str):
    with redis.Redis.from_url(redis_url) as client:
        yield client


@pytest.fixture
def live_engine(live_settings: Settings):
    with Engine(live_settings) as engine:
        yield engine


def make_consumer(engine: Engine, name: str | None = None, **overrides) -> StreamConsumer:
    settings = engine.settings
    if name is not None:
        settings = settings.model_copy(update={"consumer_name": name})
    return consumer_for(engine, RedisStreamSource.from_settings(settings), **overrides)


def drain(consumer: StreamConsumer, done, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "the consumer did not get there in time"
        consumer.step()


def settled(consumer: StreamConsumer):
    return lambda: consumer.source.lag() == {"lag": 0, "pending": 0} and not consumer.pending


def url_of(photos: FolderServer, photo_folder: Path, i: int) -> str:
    return photos.url_of(photo_folder / f"cat{i % 2}" / f"item_{i:04d}.png", photo_folder)


def created(product_id: str, image: str, **fields) -> dict:
    return {"type": "product_created", "product": {"id": product_id, "image": image, **fields}}


def dead_letters(client: redis.Redis) -> list[dict[str, str]]:
    return [
        {k.decode(): v.decode() for k, v in fields.items()}
        for _, fields in client.xrange(f"{STREAM}:dead")
    ]


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


@pytest.mark.parametrize("with_versions", [True, False], ids=["versions", "no-versions"])
def test_a_stalled_consumer_s_claimed_events_cannot_roll_a_product_back(
    live_engine: Engine,
    client: redis.Redis,
    photo_folder: Path,
    photos: FolderServer,
    with_versions: bool,
) -> None:
    """Consumer A reads p's first three updates and stalls; B takes them over (XAUTOCLAIM),
    applies them and then p's fourth; A wakes up and applies its copies of the first
    three. With versions A's copies are stale and p stays at its fourth update; without
    (the baseline) A rolls p back to its third: why events should carry versions."""

    def update(v: int) -> dict:
        event = created("p", url_of(photos, photo_folder, v), price=float(v))
        if with_versions:
            event["version"] = v
        return event

    for v in (1, 2, 3):
        publish(client, STREAM, update(v))
    a = make_consumer(live_engine, "consumer-a")
    b = make_consumer(live_engine, "consumer-b")
    taken = a.source.receive(10, 0)  # A holds p:1..3 and stalls
    assert len(taken) == 3
    b.source.claim_idle_ms = 100
    time.sleep(0.15)
    drain(b, lambda: b.stats.resolved == 3)  # B claims them from A and applies them
    publish(client, STREAM, update(4))
    drain(b, lambda: b.stats.resolved == 4)
    assert live_engine.catalog.get("p").price == 4.0
    a._admit(taken)  # A wakes up with what it read before the takeover
    drain(a, lambda: not a.pending)
    product = live_engine.catalog.get("p")
    if with_versions:
        assert (product.price, product.version) == (4.0, 4) and a.stats.stale == 3
    else:
        assert product.price == 3.0 and a.stats.stale == 0  # rolled back


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
