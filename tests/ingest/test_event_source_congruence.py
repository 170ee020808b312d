"""The queue consumer's behaviour, the same on every event source (congruence tests).

Each test runs once per backend of `tests/support/event_backends.py` (a real redis-server,
a real Kafka-protocol broker), with the tiny real model, SQLite and FAISS: events create,
update and delete products; redelivery changes nothing; a product's events apply in order
and poison goes to the dead letters without holding up the others; versions keep the
newest state whatever the arrival order and however many consumers; dead letters replay;
a consumer stopped between commit and acknowledgement is made good by the next one; lag
and freshness show in the metrics. Images come from a loopback HTTP server: an event never
names a local file.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from lookalike import Engine, Settings
from lookalike.encode.images import content_hash, decode_image
from lookalike.errors import QueueError
from lookalike.ingest.consumer import StreamConsumer
from lookalike.ingest.event_sources import (
    EventPublisher,
    event_schemes,
    open_event_publisher,
    open_event_source,
)
from lookalike.ingest.replay import replay_dead_letters
from tests.support.event_backends import (
    EVENT_BACKENDS,
    EventQueue,
    consumer_for,
    consumer_settings,
)
from tests.support.http_files import FolderServer


def test_every_registered_source_runs_this_suite() -> None:
    for schemes in event_schemes():
        assert any(name in schemes for name in EVENT_BACKENDS), schemes


# --- fixtures and helpers -----------------------------------------------------------------
@pytest.fixture
def live_settings(event_queue: EventQueue, settings: Settings, photos: FolderServer) -> Settings:
    return consumer_settings(event_queue.settings(settings), photos, consumer_name="test-consumer")


@pytest.fixture
def live_engine(live_settings: Settings) -> Iterator[Engine]:
    with Engine(live_settings) as engine:
        yield engine


@pytest.fixture
def publisher(live_settings: Settings) -> Iterator[EventPublisher]:
    opened = open_event_publisher(live_settings)
    try:
        yield opened
    finally:
        opened.close()


@pytest.fixture
def consumers() -> Iterator[list[StreamConsumer]]:
    """Consumers a test makes; their sources close at the end (a Kafka member leaves)."""
    made: list[StreamConsumer] = []
    yield made
    for consumer in made:
        consumer.source.close()


def make_consumer(engine: Engine, made: list[StreamConsumer], **overrides) -> StreamConsumer:
    consumer = consumer_for(engine, open_event_source(engine.settings), **overrides)
    made.append(consumer)
    return consumer


def drain(consumer: StreamConsumer, done: Callable[[], bool], timeout_s: float = 90) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        assert time.monotonic() < deadline, "the consumer did not get there in time"
        consumer.step()


def settled(*consumers: StreamConsumer) -> Callable[[], bool]:
    """Nothing left in the queue, nothing held back by any of the consumers."""

    def check() -> bool:
        if any(c.pending for c in consumers):
            return False
        backlog = consumers[0].source.backlog()
        return backlog.lag == 0 and backlog.pending == 0 and not any(backlog.partitions.values())

    return check


def image_of(photo_folder: Path, i: int) -> Path:
    return photo_folder / f"cat{i % 2}" / f"item_{i:04d}.png"


def url_of(photos: FolderServer, photo_folder: Path, i: int) -> str:
    return photos.url_of(image_of(photo_folder, i), photo_folder)


def created(product_id: str, image: str, **fields) -> dict:
    return {"type": "product_created", "product": {"id": product_id, "image": image, **fields}}


def versioned(kind: str, product_id: str, version: int, image: str | None = None, **fields):
    product = {"id": product_id, **fields}
    if image is not None:
        product["image"] = image
    return {"type": f"product_{kind}", "version": version, "product": product}


def state(engine: Engine) -> dict[str, tuple]:
    """What the catalog says about each product (not when it was last written)."""
    return {
        p.id: (p.title, p.price, p.image_source, p.content_hash, p.vector_id, p.version)
        for p in engine.catalog.iter_products()
    }


def sample(engine: Engine, name: str, labels: dict[str, str] | None = None) -> float | None:
    return engine.metrics.registry.get_sample_value(name, labels or {})


# --- create, update, delete ---------------------------------------------------------------
def test_events_create_update_and_delete_products(
    live_engine: Engine, publisher: EventPublisher, consumers, photo_folder, photos
) -> None:
    for i in range(3):
        publisher.publish(created(f"p{i}", url_of(photos, photo_folder, i), price=10 + i))
    publisher.publish(
        {"type": "product_updated", "product_id": "p0", "image": url_of(photos, photo_folder, 0),
         "price": 99.5, "title": "Repriced", "category": "bags", "color": "red"},
    )  # fmt: skip
    publisher.publish({"type": "product_updated", "product": {"id": "p1", "title": "New"}})
    publisher.publish({"type": "product_deleted", "product": {"id": "p2"}})
    publisher.publish({"type": "product_deleted", "id": "never-existed"})
    consumer = make_consumer(live_engine, consumers)
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
    assert consumer.stats.applied == 7 and not publisher.dead_letters()
    # Unversioned events: each write took the product's next version.
    assert (p0.version, p1.version) == (2, 2) and consumer.stats.unversioned == 7
    assert sample(live_engine, "lookalike_consumer_unversioned_events_total") == 7
    top = live_engine.search_image(image_of(photo_folder, 1).read_bytes(), limit=1)
    assert top.hits[0].product.id == "p1"


def test_redelivered_events_leave_the_same_catalog(
    live_engine: Engine, publisher: EventPublisher, consumers, photo_folder, photos
) -> None:
    events = [created(f"p{i}", url_of(photos, photo_folder, i), price=i) for i in range(4)]
    events.append({"type": "product_updated", "product": {"id": "p1", "price": 7.0}})
    events.append({"type": "product_deleted", "product": {"id": "p3"}})
    events.append(versioned("created", "v", 10, url_of(photos, photo_folder, 5), price=3.0))
    publisher.publish_many(events)
    consumer = make_consumer(live_engine, consumers)
    drain(consumer, settled(consumer))
    before = state(live_engine)
    assert sorted(before) == ["p0", "p1", "p2", "v"] and before["p1"][1] == 7.0
    assert (before["v"][1], before["v"][5]) == (3.0, 10)

    publisher.publish_many(events)  # the same events again, as after a crash before the ack
    drain(consumer, settled(consumer))
    after = state(live_engine)
    # Unversioned events apply again (same values: nothing re-encoded, the vector ids stay;
    # only their counters move); the versioned one is stale the second time.
    assert {k: v[:5] for k, v in after.items()} == {k: v[:5] for k, v in before.items()}
    assert after["v"][5] == 10 and consumer.stats.stale == 1
    assert len(live_engine.live_index.index) == 4

    head, counter = live_engine.catalog.log_head(), live_engine.catalog.version()
    publisher.publish(events[-1])  # a lone repeat of a versioned event: nothing written
    drain(consumer, settled(consumer))
    assert (live_engine.catalog.log_head(), live_engine.catalog.version()) == (head, counter)
    assert consumer.stats.stale == 2


# --- order, retries and poison ----------------------------------------------------------
def test_poison_goes_to_the_dead_letters_and_never_blocks(
    event_queue: EventQueue,
    live_engine: Engine,
    publisher: EventPublisher,
    consumers,
    photo_folder,
    photos,
) -> None:
    corrupt = photo_folder / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 100)
    event_queue.publish_raw("{not json")
    publisher.publish(created("good-1", url_of(photos, photo_folder, 1)))
    publisher.publish(created("bad-image", photos.url_of(corrupt, photo_folder)))
    publisher.publish({"type": "product_renamed", "product": {"id": "x"}})
    publisher.publish(created("good-2", url_of(photos, photo_folder, 2)))
    publisher.publish({"type": "product_created", "product": {"title": "no id"}})
    publisher.publish(versioned("created", "bad-version", -3))
    consumer = make_consumer(live_engine, consumers)

    drain(consumer, lambda: consumer.stats.applied == 2)  # the good ones, not held up
    assert {p.id for p in live_engine.catalog.iter_products()} == {"good-1", "good-2"}
    drain(consumer, settled(consumer))
    dead = publisher.dead_letters()
    assert len(dead) == 5 and all(letter.attempts == 3 for letter in dead)
    reasons = " | ".join(letter.error for letter in dead)
    assert "not valid JSON" in reasons
    assert "corrupt or truncated" in reasons
    assert "unknown event type 'product_renamed'" in reasons
    assert "without a product id" in reasons
    assert "does not match product_event.v1 at version" in reasons
    assert {"raw": "{not json"} in [letter.event for letter in dead]  # kept as it came
    assert all(letter.source_id for letter in dead)
    assert consumer.stats.dead_lettered == 5 and consumer.stats.failed_tries == 15
    assert {p.id for p in live_engine.catalog.iter_products()} == {"good-1", "good-2"}

    def dead_of(event_type: str) -> float | None:
        labels = {"outcome": "dead_lettered", "type": event_type}
        return sample(live_engine, "lookalike_consumer_events_total", labels)

    assert (dead_of("product_created"), dead_of("unknown")) == (1, 4)  # unreadable: unknown


def test_a_product_s_later_events_wait_behind_its_failed_one(
    live_engine: Engine, publisher: EventPublisher, consumers, photo_folder, photos
) -> None:
    late = photo_folder / "late.png"  # not there yet: the first event fails until it is
    publisher.publish(created("p", photos.url_of(late, photo_folder), price=1.0))
    publisher.publish(created("p", url_of(photos, photo_folder, 3), price=2.0))
    publisher.publish(created("q", url_of(photos, photo_folder, 4)))
    consumer = make_consumer(live_engine, consumers, retry_delay_s=0.5)

    # Until p's first event has failed once (a partitioned queue may hand q's first).
    drain(consumer, lambda: consumer.stats.applied == 1 and consumer.stats.failed_tries >= 1)
    # p's newer event did not overtake its failed one.
    assert {p.id for p in live_engine.catalog.iter_products()} == {"q"}
    late.write_bytes(image_of(photo_folder, 5).read_bytes())
    drain(consumer, settled(consumer))
    assert live_engine.catalog.get("p").price == 2.0  # applied in order: 1.0, then 2.0
    assert live_engine.catalog.get("p").image_source == url_of(photos, photo_folder, 3)
    assert not publisher.dead_letters()


# --- versions -----------------------------------------------------------------------------
def test_older_versions_are_skipped_and_counted_never_dead_lettered(
    live_engine: Engine, publisher: EventPublisher, consumers, photo_folder, photos
) -> None:
    image = url_of(photos, photo_folder, 1)
    publisher.publish_many(
        [
            versioned("updated", "p", 2, image, price=2.0),
            versioned("updated", "p", 1, image, price=1.0),  # arrives late
            versioned("deleted", "q", 5),  # overtook q's create
            versioned("created", "q", 3, url_of(photos, photo_folder, 2)),
            versioned("created", "r", 1, url_of(photos, photo_folder, 3)),
            versioned("deleted", "r", 2),
            versioned("updated", "r", 1, title="a late copy"),  # no image, product gone
        ]
    )
    consumer = make_consumer(live_engine, consumers)
    drain(consumer, settled(consumer))
    assert state(live_engine).keys() == {"p"}
    assert (live_engine.catalog.get("p").price, live_engine.catalog.get("p").version) == (2.0, 2)
    assert live_engine.catalog.versions(["p", "q", "r"]) == {"p": 2, "q": 5, "r": 2}
    assert consumer.stats.stale == 3 and consumer.stats.dead_lettered == 0
    assert consumer.stats.unversioned == 0 and not publisher.dead_letters()
    stale = {"outcome": "stale", "type": "product_updated"}
    assert sample(live_engine, "lookalike_consumer_events_total", stale) == 2
    assert len(live_engine.live_index.index) == 1


def test_two_consumers_with_interleaved_updates_end_at_the_newest_versions(
    live_settings: Settings, publisher: EventPublisher, consumers, photo_folder, photos, tmp_path
) -> None:
    """Two consumers of one group over one catalog; eight products changed six times, the
    events of each wave published out of order. Redis hands a product's events to both
    consumers; Kafka keeps each product in one partition, but partitions move when the
    second member arrives. Either way each product ends as its newest version says."""
    products = [f"p{i}" for i in range(8)]

    def wave(versions: range, seed: int) -> list[dict]:
        events = [
            versioned("updated", pid, v, url_of(photos, photo_folder, (i + v) % 6), price=v)
            for v in versions
            for i, pid in enumerate(products)
        ]
        random.Random(seed).shuffle(events)
        return events

    shared = f"sqlite:///{tmp_path / 'shared-catalog.db'}"
    engines = [
        Engine(
            live_settings.model_copy(
                update={
                    "data_dir": tmp_path / f"consumer-{n}",
                    "catalog_url": shared,
                    "consumer_name": f"consumer-{n}",
                }
            )
        )
        for n in range(2)
    ]
    pair = [make_consumer(engine, consumers, batch_size=4) for engine in engines]
    threads = [threading.Thread(target=c.run, daemon=True) for c in pair]
    published = 0
    try:
        for thread in threads:
            thread.start()
        for n, versions in enumerate((range(1, 3), range(3, 5), range(5, 7))):
            events = wave(versions, seed=n)
            publisher.publish_many(events)
            published += len(events)
            deadline = time.monotonic() + 120
            while not settled(*pair)():
                assert time.monotonic() < deadline, "the consumers did not finish in time"
                time.sleep(0.2)
    finally:
        for c in pair:
            c.stop()
        for thread in threads:
            thread.join(timeout=60)
    try:
        final = state(engines[0])
        for i, pid in enumerate(products):
            _, price, image, _, _, version = final[pid]
            newest = (i + 6) % 6
            assert (price, image, version) == (6.0, url_of(photos, photo_folder, newest), 6)
            data = image_of(photo_folder, newest).read_bytes()
            assert final[pid][3] == content_hash(data)
            expected = engines[0].encoder.encode_images([decode_image(data, engines[0].limits)])
            np.testing.assert_allclose(engines[0].catalog.embedding(pid)[1], expected[0], atol=1e-5)
        assert len(engines[0].live_index.index) == len(products)
        assert sum(c.stats.applied + c.stats.stale for c in pair) >= published
        assert all(c.stats.resolved > 0 for c in pair), "both consumers took part"
        assert sum(c.stats.stale for c in pair) > 0  # older events did arrive late
        assert not publisher.dead_letters()
    finally:
        for engine in engines:
            engine.close()


# --- dead letters back, crashes, metrics --------------------------------------------------
def test_dead_letters_replay_once_the_cause_is_mended(
    live_engine: Engine, publisher: EventPublisher, consumers, photo_folder, photos
) -> None:
    missing = photo_folder / "arrives-later.png"
    publisher.publish(versioned("created", "p", 1, photos.url_of(missing, photo_folder)))
    publisher.publish(created("q", url_of(photos, photo_folder, 2)))
    consumer = make_consumer(live_engine, consumers)
    drain(consumer, settled(consumer))
    (dead,) = publisher.dead_letters()
    assert dead.event["product"]["id"] == "p" and "404" in dead.error

    missing.write_bytes(image_of(photo_folder, 4).read_bytes())
    report = replay_dead_letters(publisher)
    assert report.replayed == 1 and report.stopped_at is None
    assert publisher.dead_letters() == []  # discarded once sent back
    drain(consumer, settled(consumer))
    assert state(live_engine).keys() == {"p", "q"} and live_engine.catalog.get("p").version == 1
    assert replay_dead_letters(publisher).replayed == 0  # nothing twice


def test_an_unreadable_dead_letter_stops_the_replay_unless_dropped(
    event_queue: EventQueue, live_engine: Engine, publisher: EventPublisher, consumers
) -> None:
    # The unreadable one is parked first: Kafka's partitions are consumed side by side, so
    # events published together may be dead-lettered in either order.
    event_queue.publish_raw("not an event")
    consumer = make_consumer(live_engine, consumers)
    drain(consumer, lambda: consumer.stats.dead_lettered == 1)
    publisher.publish({"type": "product_deleted", "product": {"id": "gone"}, "version": 4})
    publisher.publish({"type": "product_deleted", "product": {"id": "x"}, "version": "4"})
    drain(consumer, lambda: consumer.stats.dead_lettered == 2)
    assert publisher.dead_letters()[0].event == {"raw": "not an event"}
    report = replay_dead_letters(publisher)
    assert report.replayed == 0 and report.stopped_at.event == {"raw": "not an event"}
    assert len(publisher.dead_letters()) == 2
    report = replay_dead_letters(publisher, drop_unreadable=True)
    assert (report.replayed, report.dropped) == (1, 1) and publisher.dead_letters() == []


class _KilledAfterCommit(BaseException):
    """Stands for SIGKILL between the catalog commit and the acknowledgement (a
    BaseException, as SystemExit is: the consumer must not take it for a bad event)."""


def test_a_consumer_stopped_between_commit_and_ack_is_made_good_by_the_next(
    live_settings: Settings, publisher: EventPublisher, consumers, photo_folder, photos
) -> None:
    """The first consumer commits a run to the catalog and dies before acknowledging it;
    the next one (after a restart, or another member) gets those events again and the
    catalog ends as if each had been applied once. (A real `lookalike consume` killed with
    SIGKILL: tests/api/test_consumer_crash.py.)"""
    events = [created(f"p{i}", url_of(photos, photo_folder, i), price=i) for i in range(6)]
    events.append({"type": "product_updated", "product": {"id": "p1", "price": 50.0}})
    events.append(versioned("deleted", "p2", 9))
    publisher.publish_many(events)
    with Engine(live_settings) as engine:
        first = make_consumer(engine, consumers)
        real_ack = first.source.ack

        def dies(deliveries):
            raise _KilledAfterCommit

        first.source.ack = dies  # type: ignore[method-assign]
        with pytest.raises(_KilledAfterCommit):
            drain(first, lambda: False)
        committed = state(engine)
        assert committed and first.stats.applied == 0  # in the catalog, never acknowledged
        first.source.ack = real_ack  # type: ignore[method-assign]
        consumers.remove(first)
        first.source.close()  # what a killed process leaves: no acknowledgement

        second = make_consumer(engine, consumers)
        drain(second, settled(second))
        final = state(engine)
    assert sorted(final) == ["p0", "p1", "p3", "p4", "p5"] and final["p1"][1] == 50.0
    # The products committed before the "kill" were not encoded again.
    assert all(final[pid][4] == row[4] for pid, row in committed.items() if pid in final)
    catalog_file = live_settings.data_dir / "catalog.db"
    with contextlib.closing(sqlite3.connect(catalog_file)) as conn:
        ops = conn.execute("SELECT SUM(op = 1), SUM(op = -1) FROM vector_log").fetchone()
    assert ops == (6, 1)  # each product encoded once; p2 removed once


def test_lag_and_freshness_show_in_the_metrics(
    live_engine: Engine, publisher: EventPublisher, consumers, photo_folder, photos
) -> None:
    consumer = make_consumer(live_engine, consumers)
    started = time.time()
    for i in range(5):  # one request each: Tansu counts a batch as one offset (see docs)
        publisher.publish(created(f"p{i}", url_of(photos, photo_folder, i)))
    time.sleep(0.3)
    assert sample(live_engine, "lookalike_consumer_lag", {"state": "lag"}) == 5
    assert sample(live_engine, "lookalike_consumer_lag_seconds") >= 0.3
    drain(consumer, settled(consumer))
    assert sample(live_engine, "lookalike_consumer_lag", {"state": "lag"}) == 0
    assert sample(live_engine, "lookalike_consumer_lag", {"state": "pending"}) == 0
    assert sample(live_engine, "lookalike_consumer_lag_seconds") == 0
    applied = {"outcome": "applied", "type": "product_created"}
    assert sample(live_engine, "lookalike_consumer_events_total", applied) == 5
    assert sample(live_engine, "lookalike_ingest_items_total", {"outcome": "added"}) == 5
    assert sample(live_engine, "lookalike_index_vectors") == 5
    # Event time (the queue's timestamp here) to catalog commit: five observations, each
    # no longer than the test has run.
    assert sample(live_engine, "lookalike_event_commit_seconds_count") == 5
    total = sample(live_engine, "lookalike_event_commit_seconds_sum")
    assert 0 < total <= 5 * (time.time() - started)
    partitions = {
        s.labels["partition"]: s.value
        for family in live_engine.metrics.registry.collect()
        if family.name == "lookalike_consumer_partition_lag"
        for s in family.samples
    }
    if consumer.source.capabilities.ordered_per_product:  # a partitioned queue: Kafka
        assert len(partitions) == 3 and sum(partitions.values()) == 0
    else:
        assert partitions == {}


def test_an_event_time_in_the_event_wins_over_the_queue_s(
    live_engine: Engine, publisher: EventPublisher, consumers, photo_folder, photos
) -> None:
    an_hour_ago = time.time() - 3600
    event = created("p", url_of(photos, photo_folder, 1))
    event["occurred_at"] = an_hour_ago
    publisher.publish(event)
    consumer = make_consumer(live_engine, consumers)
    drain(consumer, settled(consumer))
    total = sample(live_engine, "lookalike_event_commit_seconds_sum")
    assert 3600 <= total < 3600 + 120
    within_an_hour = {"le": "3600.0"}
    assert sample(live_engine, "lookalike_event_commit_seconds_bucket", within_an_hour) == 0


def test_an_unreachable_queue_is_a_queue_error(live_settings: Settings) -> None:
    from tests.support.api_catalog import free_port

    url = live_settings.events_url
    scheme = url.split("://", 1)[0]
    dead = f"{scheme}://127.0.0.1:{free_port()}" + ("/topic" if scheme == "kafka" else "/0")
    with pytest.raises(QueueError):
        open_event_source(live_settings.model_copy(update={"events_url": dead}))
