"""What only the Kafka source does (the behaviour every source shares is in
test_event_source_congruence.py), against a real Kafka-protocol broker (Tansu on
loopback): URLs with several brokers, client properties passed through with secrets kept
out of sight, keyed partitions, a rebalance that commits what was applied and hands the
rest to the new member, and Kafka tombstones."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from lookalike.config import Settings
from lookalike.errors import ConfigError, QueueError
from lookalike.ingest.event_sources import Delivery, open_event_publisher, open_event_source
from lookalike.ingest.kafka_client import client_config, parse_kafka_url, shown_config
from lookalike.ingest.kafka_stream import KafkaEventSource
from tests.support.event_backends import EventQueue

pytest.importorskip("confluent_kafka", reason="needs lookalike[kafka]")


@pytest.mark.parametrize(
    ("url", "brokers", "topic"),
    [
        ("kafka://broker:9092/events", "broker:9092", "events"),
        ("kafka://h1:9092,h2:9093/shop.events-v1", "h1:9092,h2:9093", "shop.events-v1"),
        ("kafka://[::1]:9092/t", "[::1]:9092", "t"),
    ],
)
def test_urls_name_brokers_and_a_topic(url: str, brokers: str, topic: str) -> None:
    location = parse_kafka_url(url)
    assert (location.brokers, location.topic) == (brokers, topic)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("kafka://user:pw@broker:9092/t", "credentials do not belong in the URL"),
        ("kafka://broker:9092/", "needs a topic"),
        ("kafka://broker:9092/a/b", "needs a topic"),
        ("kafka://broker/t", "host:port"),
        ("kafka:///t", "host:port"),
        ("kafka://broker:9092/t?acks=all", "takes no query"),
    ],
)
def test_bad_urls_are_config_errors(url: str, reason: str) -> None:
    with pytest.raises(ConfigError, match=reason):
        parse_kafka_url(url)


def secret_settings(events_url: str = "kafka://127.0.0.1:9/t") -> Settings:
    return Settings(
        _env_file=None,
        events_url=events_url,
        kafka_config={
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-512",
            "sasl.username": "lookalike",
            "sasl.oauthbearer.client.secret": "in-the-dict",
        },
        kafka_sasl_password=SecretStr("hunter2"),
        kafka_ssl_key_password=SecretStr("key-pass"),
    )


def test_secrets_reach_the_client_and_nothing_that_shows_them() -> None:
    settings = secret_settings()
    config = client_config(parse_kafka_url(settings.events_url), settings)
    assert config["sasl.password"] == "hunter2" and config["ssl.key.password"] == "key-pass"
    assert config["sasl.username"] == "lookalike"
    shown = shown_config(config)
    assert shown["sasl.username"] == "lookalike" and shown["security.protocol"] == "SASL_PLAINTEXT"
    assert shown["sasl.password"] == shown["ssl.key.password"] == "***"
    assert shown["sasl.oauthbearer.client.secret"] == "***"
    text = repr(settings) + settings.model_dump_json()
    assert "hunter2" not in text and "key-pass" not in text


def test_properties_the_client_refuses_are_config_errors(kafka_url: str) -> None:
    settings = Settings(_env_file=None, events_url=kafka_url, kafka_config={"no.such.thing": 1})
    with pytest.raises(ConfigError, match=r"no\.such\.thing"):
        open_event_source(settings)


def test_sasl_properties_are_used_against_the_broker(kafka_url: str) -> None:
    """The test broker takes no SASL (see docs: Tansu): a client that speaks it cannot get
    through where a plain one can, and the error it reports shows no password."""
    settings = secret_settings(kafka_url)
    with pytest.raises(QueueError) as refused:
        open_event_publisher(settings)
    assert "hunter2" not in str(refused.value) and "key-pass" not in str(refused.value)
    plain = open_event_publisher(settings.model_copy(update={"kafka_config": {}}))
    plain.close()


@pytest.fixture
def kafka_queue(request: pytest.FixtureRequest) -> EventQueue:
    from tests.support.event_backends import EVENT_BACKENDS

    return EVENT_BACKENDS["kafka"](request)


@pytest.fixture
def kafka_settings(kafka_queue: EventQueue, settings: Settings) -> Settings:
    return kafka_queue.settings(settings, consumer_name="member-a")


@pytest.fixture
def sources() -> Iterator[list[KafkaEventSource]]:
    opened: list[KafkaEventSource] = []
    yield opened
    for source in opened:
        source.close()


def open_member(settings: Settings, name: str, opened: list) -> KafkaEventSource:
    source = open_event_source(settings.model_copy(update={"consumer_name": name}))
    assert isinstance(source, KafkaEventSource)
    opened.append(source)
    return source


def receive_until(source: KafkaEventSource, count: int, timeout_s: float = 30) -> list[Delivery]:
    got: list[Delivery] = []
    deadline = time.monotonic() + timeout_s
    while len(got) < count:
        assert time.monotonic() < deadline, f"received {len(got)} of {count}"
        got += source.receive(count - len(got), 200)
    return got


def test_a_product_s_events_share_a_partition(kafka_settings: Settings) -> None:
    publisher = open_event_publisher(kafka_settings)
    try:
        events = [
            {"type": "product_updated", "version": v, "product": {"id": f"p{i}"}}
            for v in range(1, 4)
            for i in range(6)
        ]
        positions = publisher.publish_many(events)
    finally:
        publisher.close()
    partitions: dict[str, set[str]] = {}
    for event, where in zip(events, positions, strict=True):
        partitions.setdefault(event["product"]["id"], set()).add(where.split(":")[0])
    assert all(len(found) == 1 for found in partitions.values())
    assert len(set().union(*partitions.values())) > 1  # spread over partitions


def test_a_rebalance_commits_what_was_applied_and_hands_over_the_rest(
    kafka_settings: Settings, sources: list[KafkaEventSource]
) -> None:
    publisher = open_event_publisher(kafka_settings)
    try:
        for i in range(6):  # one request each, so the broker's offsets are exact
            publisher.publish({"type": "product_deleted", "version": 1, "product": {"id": f"p{i}"}})
    finally:
        publisher.close()
    a = open_member(kafka_settings, "member-a", sources)
    taken = receive_until(a, 6)
    by_partition: dict[int, list[Delivery]] = {}
    for delivery in taken:
        by_partition.setdefault(int(delivery.id.split(":")[0]), []).append(delivery)
    # One event left unresolved (as while it waits for a retry), in a partition with an
    # event after it that was applied.
    busy = next(p for p, ds in by_partition.items() if len(ds) > 1)
    unresolved = by_partition[busy][0]
    a.ack([d for d in taken if d is not unresolved])
    assert a.backlog().partitions[str(busy)] == len(by_partition[busy])  # held back

    b = open_member(kafka_settings, "member-b", sources)
    b.receive(10, 0)  # joins: the group rebalances
    deadline = time.monotonic() + 30
    revoked: list[str] = []
    while unresolved.id not in revoked:
        assert time.monotonic() < deadline, "member A never gave up its partitions"
        a.receive(10, 200)
        revoked += a.revoked()
    assert revoked == [unresolved.id]  # only what A had not resolved
    assert a.redeliver([unresolved]) == []  # no longer A's to try again
    # Whoever owns the partition now gets the unresolved event and the one after it again
    # (the committed offset stopped at it); everything else stays done.
    again: list[Delivery] = []
    deadline = time.monotonic() + 30
    while len(again) < len(by_partition[busy]):
        assert time.monotonic() < deadline, f"redelivered {again}"
        again += a.receive(10, 100) + b.receive(10, 100)
    assert sorted(d.id for d in again) == sorted(d.id for d in by_partition[busy])
    assert sum(a.backlog().partitions.values()) == len(by_partition[busy])


def test_a_kafka_tombstone_deletes_its_product(
    kafka_settings: Settings, photo_folder, sources: list[KafkaEventSource]
) -> None:
    """A message with a key and no value (what log compaction keeps of a deleted key)."""
    from confluent_kafka import Producer

    from lookalike import Engine
    from lookalike.ingest.consumer import StreamConsumer
    from tests.support.http_files import serve_folder

    location = parse_kafka_url(kafka_settings.events_url)
    image = photo_folder / "cat0" / "item_0000.png"
    with (
        serve_folder(photo_folder) as photos,
        Engine(
            kafka_settings.model_copy(update={"fetch_allow_hosts": [photos.allow_entry]})
        ) as engine,
    ):
        publisher = open_event_publisher(kafka_settings)
        for pid in ("keep", "drop"):
            product = {"id": pid, "image": photos.url_of(image, photo_folder)}
            publisher.publish({"type": "product_created", "product": product})
        publisher.close()
        producer = Producer({"bootstrap.servers": location.brokers})
        producer.produce(location.topic, key=b"drop", value=None)
        assert producer.flush(10) == 0
        source = open_member(kafka_settings, "member-a", sources)
        consumer = StreamConsumer(source, engine, block_ms=100)
        deadline = time.monotonic() + 60
        while consumer.stats.applied < 3:
            assert time.monotonic() < deadline, consumer.stats
            consumer.step()
        assert [p.id for p in engine.catalog.iter_products()] == ["keep"]
        assert engine.catalog.versions(["drop"]) == {"drop": 2}  # its tombstone
