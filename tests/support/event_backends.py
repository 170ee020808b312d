"""Every event source, for suites that run the same tests on each (congruence tests).

A new source joins with one entry in EVENT_BACKENDS: a function that makes a fresh, empty
queue for one test (starting its server through a fixture) and says how to put a raw
payload on it. `tests/ingest/test_event_source_congruence.py` checks that every registered
source is here.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lookalike.config import Settings
from tests.support.http_files import FolderServer, serve_folder

_groups = itertools.count()


@dataclass(frozen=True)
class EventQueue:
    """A fresh queue of one backend: the settings that name it, and raw access to it."""

    name: str
    overrides: dict[str, Any]
    # Puts a payload on the queue exactly as given (not necessarily JSON).
    publish_raw: Callable[[str], None]

    def settings(self, base: Settings, **more: Any) -> Settings:
        return base.model_copy(update={**self.overrides, **more})


def _redis(request: pytest.FixtureRequest) -> EventQueue:
    import redis

    url = request.getfixturevalue("redis_url")  # skips when redis-server is missing
    stream = "test:events"

    def publish_raw(payload: str) -> None:
        with redis.Redis.from_url(url) as client:
            client.xadd(stream, {"event": payload})

    overrides = {"events_url": url, "stream_name": stream, "consumer_group": "lookalike"}
    return EventQueue("redis", overrides, publish_raw)


def _kafka(request: pytest.FixtureRequest) -> EventQueue:
    from confluent_kafka import Producer

    from lookalike.ingest.kafka_stream import parse_kafka_url
    from tests.support.kafka_server import KAFKA_TEST_CONFIG

    url = request.getfixturevalue("kafka_url")  # skips when no broker is installed
    location = parse_kafka_url(url)

    def publish_raw(payload: str) -> None:
        producer = Producer({"bootstrap.servers": location.brokers})
        producer.produce(location.topic, value=payload.encode(), key=b"raw")
        assert producer.flush(10) == 0

    overrides = {
        "events_url": url,
        # A group per test: the broker outlives tests, and members of an earlier test's
        # group would take part in this one's rebalances.
        "consumer_group": f"test-group-{next(_groups)}",
        "kafka_config": dict(KAFKA_TEST_CONFIG),
        "kafka_topic_partitions": 3,
    }
    return EventQueue("kafka", overrides, publish_raw)


# name -> a fresh queue of that backend (its registry schemes include the name)
EVENT_BACKENDS: dict[str, Callable[[pytest.FixtureRequest], EventQueue]] = {
    "redis": _redis,
    "kafka": _kafka,
}


@pytest.fixture
def photos(photo_folder: Path) -> Iterator[FolderServer]:
    """The test's photo folder over HTTP on loopback: events name images by URL, never a
    local file."""
    with serve_folder(photo_folder) as server:
        yield server


def consumer_settings(base: Settings, photos: FolderServer, **values: Any) -> Settings:
    """`base` for a consumer in a test: quick retries and reads, no download retries, and
    the fetch guard admitting the photo server (where the guard is there)."""
    values = {
        "max_deliveries": 3,
        "consumer_retry_delay_s": 0.05,
        "consumer_block_ms": 50,
        "download_retries": 0,
        **values,
    }
    if "fetch_allow_hosts" in Settings.model_fields:
        values["fetch_allow_hosts"] = [photos.allow_entry]
    return base.model_copy(update=values)


def consumer_for(engine: Any, source: Any, **overrides: Any) -> Any:
    """A StreamConsumer of `source` writing through `engine`, as `lookalike consume` makes
    one from the engine's settings (`overrides` win)."""
    from lookalike.ingest.consumer import StreamConsumer

    settings = engine.settings
    options = {
        "batch_size": settings.consumer_batch_size,
        "block_ms": settings.consumer_block_ms,
        "max_deliveries": settings.max_deliveries,
        "retry_delay_s": settings.consumer_retry_delay_s,
        "metrics": engine.metrics,
        **overrides,
    }
    return StreamConsumer(source, engine, **options)


@pytest.fixture(params=sorted(EVENT_BACKENDS))
def event_queue(request: pytest.FixtureRequest) -> EventQueue:
    """A fresh, empty queue of each backend in turn."""
    return EVENT_BACKENDS[request.param](request)
