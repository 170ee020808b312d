"""Writing product events to a Kafka topic (keyed by product id) and reading its dead
letters back: `lookalike publish` and `lookalike events replay` for Kafka."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from lookalike.config import Settings
from lookalike.errors import QueueError
from lookalike.ingest.event_sources import DeadLetter
from lookalike.ingest.kafka_client import (
    TIMEOUT_S,
    client_config,
    dead_letter_from,
    dead_letter_topic,
    ensure_topics,
    make_client,
    message_time,
    parse_kafka_url,
    position,
    produce_and_flush,
    product_key,
)

if TYPE_CHECKING:
    from confluent_kafka import Consumer


class KafkaEventPublisher:
    """Writes events to the topic (keyed by product id); reads its dead letters back."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.location = parse_kafka_url(url)
        self.topic = self.location.topic
        self.dead_topic = dead_letter_topic(self.topic)
        self._base = client_config(self.location, settings)
        self._replay_group = f"{settings.consumer_group}.replay"
        ensure_topics(self._base, self.location, settings.kafka_topic_partitions)
        self._producer = make_client("producer", {**self._base, "client.id": "lookalike-publish"})

    def publish(self, event: Mapping[str, Any]) -> str:
        return self.publish_many([event])[0]

    def publish_many(self, events: Sequence[Mapping[str, Any]]) -> list[str]:
        records = [(product_key(e), json.dumps(e).encode(), []) for e in events]
        return produce_and_flush(self._producer, self.topic, records, f"kafka topic {self.topic}")

    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """Dead letters after the replay group's position, oldest first."""
        from confluent_kafka import KafkaException, TopicPartition

        reader = make_client(
            "consumer",
            {
                **self._base,
                "group.id": self._replay_group,
                "client.id": "lookalike-replay",
                "enable.auto.commit": False,
                "enable.auto.offset.store": False,
            },
        )
        letters: list[tuple[float, DeadLetter]] = []
        try:
            meta = reader.list_topics(self.dead_topic, timeout=TIMEOUT_S).topics[self.dead_topic]
            if meta.error is not None:
                return []
            wanted = [TopicPartition(self.dead_topic, p) for p in sorted(meta.partitions)]
            for tp in reader.committed(wanted, timeout=TIMEOUT_S):
                if len(letters) >= limit:
                    break
                letters.extend(self._read_partition(reader, tp, limit - len(letters)))
        except KafkaException as exc:
            raise QueueError(f"cannot read {self.dead_topic}: {exc}") from exc
        finally:
            reader.close()
        return [letter for _, letter in sorted(letters, key=lambda pair: pair[0])]

    def _read_partition(
        self, reader: Consumer, tp: Any, limit: int
    ) -> list[tuple[float, DeadLetter]]:
        from confluent_kafka import TopicPartition

        low, high = reader.get_watermark_offsets(
            TopicPartition(self.dead_topic, tp.partition), timeout=TIMEOUT_S
        )
        start = tp.offset if tp.offset >= 0 else low
        if start >= high:
            return []
        reader.assign([TopicPartition(self.dead_topic, tp.partition, start)])
        out: list[tuple[float, DeadLetter]] = []
        deadline = time.monotonic() + TIMEOUT_S
        position = start
        while position < high and len(out) < limit and time.monotonic() < deadline:
            for message in reader.consume(num_messages=min(500, limit - len(out)), timeout=0.5):
                if message.error() is not None:
                    continue
                position = message.offset() + 1
                out.append((message_time(message) or 0.0, dead_letter_from(message)))
                if len(out) >= limit:
                    break
        reader.unassign()
        return out

    def discard_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        after: dict[int, int] = {}
        for letter in letters:
            partition, offset = position(letter.id)
            after[partition] = max(after.get(partition, 0), offset + 1)
        if not after:
            return
        committer = make_client(
            "consumer",
            {**self._base, "group.id": self._replay_group, "enable.auto.commit": False},
        )
        try:
            offsets = [TopicPartition(self.dead_topic, p, o) for p, o in after.items()]
            committer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            raise QueueError(f"cannot record the replay of {self.dead_topic}: {exc}") from exc
        finally:
            committer.close()

    def close(self) -> None:
        self._producer.flush(TIMEOUT_S)
