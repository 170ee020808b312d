"""`lookalike publish`, `lookalike events dead-letters|replay` and the queue in `lookalike
info`, on every event source (a real redis-server, a real Kafka-protocol broker), run
in-process through Typer's runner; a StreamConsumer applies what they send."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lookalike import Engine, Settings
from lookalike.cli import app
from lookalike.ingest.consumer import StreamConsumer
from lookalike.ingest.event_sources import open_event_publisher, open_event_source
from tests.support.event_backends import EventQueue, consumer_settings
from tests.support.http_files import FolderServer

runner = CliRunner()


@pytest.fixture
def live_settings(event_queue: EventQueue, settings: Settings, photos: FolderServer) -> Settings:
    queue = event_queue.settings(settings)
    return consumer_settings(queue, photos, consumer_name="cli-test", max_deliveries=1)


def env_of(settings: Settings) -> dict[str, str]:
    """The queue settings as the environment a command line would have."""
    names = ("events_url", "stream_name", "consumer_group", "kafka_topic_partitions")
    env = {f"LOOKALIKE_{name.upper()}": str(getattr(settings, name)) for name in names}
    env["LOOKALIKE_KAFKA_CONFIG"] = json.dumps(settings.kafka_config)
    env["LOOKALIKE_DATA_DIR"] = str(settings.data_dir)
    env["LOOKALIKE_MODEL_CHECKPOINT"] = str(settings.model_checkpoint)
    return env


def consume_all(settings: Settings, expected: int) -> StreamConsumer:
    with Engine(settings) as engine:
        source = open_event_source(settings)
        consumer = StreamConsumer(source, engine, block_ms=50, max_deliveries=1)
        try:
            deadline = time.monotonic() + 60
            while consumer.stats.resolved < expected:
                assert time.monotonic() < deadline, consumer.stats
                consumer.step()
        finally:
            source.close()
    return consumer


def product_ids(settings: Settings) -> list[str]:
    with Engine(settings) as engine:
        return sorted(p.id for p in engine.catalog.iter_products())


def test_publish_a_jsonl_file_and_a_single_event(
    live_settings: Settings, photo_folder: Path, photos: FolderServer, tmp_path: Path
) -> None:
    image = photos.url_of(photo_folder / "cat0" / "item_0000.png", photo_folder)
    lines = [
        {"type": "product_created", "version": 1, "product": {"id": f"p{i}", "image": image}}
        for i in range(3)
    ]
    jsonl = tmp_path / "events.jsonl"
    jsonl.write_text("\n".join(json.dumps(e) for e in lines) + "\n\n")
    single = tmp_path / "delete.json"
    delete = {"type": "product_deleted", "version": 2, "product": {"id": "p1"}}
    single.write_text(json.dumps(delete, indent=2))  # one event over several lines
    env = env_of(live_settings)
    result = runner.invoke(app, ["publish", str(jsonl)], env=env)
    assert result.exit_code == 0, result.output
    assert "published 3 event(s)" in result.output
    result = runner.invoke(app, ["publish", str(single)], env=env)
    assert result.exit_code == 0 and "published 1 event(s)" in result.output
    consume_all(live_settings, 4)
    assert product_ids(live_settings) == ["p0", "p2"]


def test_a_bad_event_in_a_file_sends_none(live_settings: Settings, tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    good = {"type": "product_deleted", "product": {"id": "a"}}
    events.write_text(json.dumps(good) + "\n" + json.dumps({**good, "version": "x"}) + "\n")
    result = runner.invoke(app, ["publish", str(events)], env=env_of(live_settings))
    assert result.exit_code == 2
    assert "events.jsonl:2" in result.output and "at version" in result.output
    source = open_event_source(live_settings)
    try:
        assert source.backlog().lag == 0  # the good first line was not sent either
    finally:
        source.close()


def test_dead_letters_listed_and_replayed(
    live_settings: Settings, photo_folder: Path, photos: FolderServer
) -> None:
    later = photo_folder / "later.png"
    publisher = open_event_publisher(live_settings)
    try:
        product = {"id": "p", "image": photos.url_of(later, photo_folder)}
        publisher.publish({"type": "product_created", "version": 3, "product": product})
    finally:
        publisher.close()
    consume_all(live_settings, 1)  # one try: to the dead letters
    env = env_of(live_settings)
    listed = runner.invoke(app, ["events", "dead-letters"], env=env)
    assert listed.exit_code == 0, listed.output
    (letter,) = [json.loads(line) for line in listed.output.splitlines()]
    assert letter["event"]["product"]["id"] == "p" and "404" in letter["error"]

    later.write_bytes((photo_folder / "cat1" / "item_0001.png").read_bytes())
    replayed = runner.invoke(app, ["events", "replay"], env=env)
    assert replayed.exit_code == 0 and "replayed 1 dead letter(s)" in replayed.output
    assert runner.invoke(app, ["events", "dead-letters"], env=env).output == ""
    consume_all(live_settings, 1)
    assert product_ids(live_settings) == ["p"]


def test_info_shows_the_queue_backlog_and_freshness(
    live_settings: Settings, photo_folder: Path, photos: FolderServer
) -> None:
    image = photos.url_of(photo_folder / "cat0" / "item_0000.png", photo_folder)
    publisher = open_event_publisher(live_settings)
    try:
        publisher.publish({"type": "product_created", "product": {"id": "a", "image": image}})
        consume_all(live_settings, 1)
        for pid in ("b", "c"):  # waiting in the queue
            publisher.publish({"type": "product_created", "product": {"id": pid, "image": image}})
    finally:
        publisher.close()
    result = runner.invoke(app, ["info", "--json"], env=env_of(live_settings))
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    events = info["events"]
    assert events["type"] == live_settings.events_url.split("://")[0]
    assert events["backlog"]["lag"] == 2 and events["backlog"]["oldest_s"] >= 0
    assert info["freshness"]["last_commit"] and info["freshness"]["index_behind_s"] == 0.0
    text = runner.invoke(app, ["info"], env=env_of(live_settings)).output
    assert "lag 2 events" in text and "index up to date" in text
