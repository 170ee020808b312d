"""Product events from a Kafka topic, read by a consumer group (confluent-kafka, standard
client API only).

    LOOKALIKE_EVENTS_URL=kafka://broker1:9092,broker2:9092/lookalike-events

- The message key is the product id: a product's events stay in one partition, in order,
  and one member of the group holds them at a time.
- Offsets are committed only after the catalog transaction that applied the events (at
  least once; applying again changes nothing). A partition's committed offset stops at its
  oldest event not yet resolved (one waiting for a retry holds it back), so a restarted or
  rebalanced consumer is handed every unresolved event again.
- Rebalancing: partitions are revoked inside `consume`, between batches, so the batch in
  flight has finished; what it applied is committed, and the events still unresolved are
  dropped from this consumer (`revoked()`) for the new owner to read from the committed
  offset.
- Dead letters go to `<topic>.dead` (same key, the original value, the error in headers)
  and are flushed before the event's offset counts as done: a crash between the two parks
  an event twice, never loses it.
- A message with a key and no value (a Kafka tombstone) deletes that product.

Client properties (SASL, TLS, timeouts) come from `LOOKALIKE_KAFKA_CONFIG`, passwords from
the SecretStr settings (`kafka_client.py`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from lookalike.config import Settings
from lookalike.errors import QueueError
from lookalike.ingest.event_sources import (
    Backlog,
    Delivery,
    EventBackend,
    EventSourceCapabilities,
    register_events,
)
from lookalike.ingest.kafka_client import (
    HEADER_PREFIX,
    MAX_ERROR_HEADER,
    TIMEOUT_S,
    KafkaLocation,
    client_config,
    dead_letter_topic,
    ensure_topics,
    make_client,
    message_fields,
    message_time,
    parse_kafka_url,
    position,
    produce_and_flush,
    shown_config,
)
from lookalike.ingest.kafka_publisher import KafkaEventPublisher

if TYPE_CHECKING:
    from confluent_kafka import Consumer, Producer

log = logging.getLogger(__name__)
T = TypeVar("T")


class KafkaEventSource:
    """A member of a Kafka consumer group (see the module docstring)."""

    # Keyed partitions: one member holds a product's events, in order. Offsets cannot count
    # how often a crashed consumer was handed an event.
    capabilities = EventSourceCapabilities(
        ordered_per_product=True, dead_letters=True, counts_deliveries=False
    )

    def __init__(self, location: KafkaLocation, settings: Settings, consumer: str) -> None:
        self.location = location
        self.topic = location.topic
        self.dead_topic = dead_letter_topic(location.topic)
        self.group = settings.consumer_group
        self.consumer = consumer
        self.name = f"kafka topic {self.topic} (group {self.group}, consumer {consumer})"
        base = client_config(location, settings)
        self._shown = shown_config({k: v for k, v in base.items() if k != "bootstrap.servers"})
        self._member_config = {
            "auto.offset.reset": "earliest",  # a new group applies what is already there
            **base,
            "group.id": self.group,
            "client.id": consumer,
            # Offsets move only when the consumer says the catalog has the events.
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
        }
        ensure_topics(base, location, settings.kafka_topic_partitions)  # fails fast when down
        self._client: Consumer = make_client("consumer", self._member_config)
        dead_letters = {**base, "client.id": f"{consumer}-dead-letters"}
        self._producer: Producer = make_client("producer", dead_letters)
        self._subscribed = False
        # Per partition we own: offset -> resolved (acked), in offset order.
        self._held: dict[int, dict[int, bool]] = {}
        self._raw: dict[str, tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]] = {}
        self._revoked: list[str] = []
        self._uncommitted: dict[int, int] = {}  # partition -> offset to commit (retried)
        self._unresolved = 0  # read by backlog() from a metrics thread
        self._inspector: Consumer | None = None
        self._inspect_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, url: str) -> KafkaEventSource:
        name = settings.consumer_name or socket.gethostname()
        return cls(parse_kafka_url(url), settings, name)

    def describe(self) -> dict[str, Any]:
        return {
            "type": "kafka",
            "brokers": self.location.brokers,
            "topic": self.topic,
            "group": self.group,
            "consumer": self.consumer,
            "dead_letters": self.dead_topic,
            "client_config": self._shown,
        }

    # --- reading -------------------------------------------------------------------------
    def recover(self) -> list[Delivery]:
        # Nothing to ask for: the group hands out everything after the committed offsets.
        return []

    def receive(self, count: int, block_ms: int) -> list[Delivery]:
        from confluent_kafka import KafkaError

        if not self._subscribed:
            self._client.subscribe(
                [self.topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            self._subscribed = True
        self._commit_uncommitted()
        # Wait for the first message only, then take what is already there (as XREADGROUP
        # does): `consume` alone would wait out the whole block for `count` messages.
        first = self._call(self._client.poll, timeout=block_ms / 1000)
        messages = [] if first is None else [first]
        if first is not None and count > 1:
            messages += self._call(self._client.consume, num_messages=count - 1, timeout=0)
        out = []
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    continue
                if error.fatal():
                    raise QueueError(f"{self.name}: {error}")
                log.warning("%s: %s", self.name, error)
                continue
            held = self._held.get(message.partition())
            if held is None:  # not ours (any more)
                continue
            delivery_id = f"{message.partition()}:{message.offset()}"
            held[message.offset()] = False
            self._raw[delivery_id] = (message.key(), message.value(), message.headers() or [])
            out.append(Delivery(delivery_id, message_fields(message), 1, message_time(message)))
        self._count_unresolved()
        return out

    def redeliver(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        # Kafka does not hand an offset out twice to one member: a retry is ours to count.
        return [
            Delivery(d.id, d.fields, d.deliveries + 1, d.queued_at)
            for d in deliveries
            if self._owns(d.id)
        ]

    def revoked(self) -> list[str]:
        gone, self._revoked = self._revoked, []
        return gone

    # --- outcomes ------------------------------------------------------------------------
    def ack(self, deliveries: Sequence[Delivery]) -> None:
        touched = set()
        for delivery in deliveries:
            partition, offset = position(delivery.id)
            held = self._held.get(partition)
            if held is None or offset not in held:
                continue  # revoked meanwhile: the new owner applies it again, harmlessly
            held[offset] = True
            self._raw.pop(delivery.id, None)
            touched.add(partition)
        for partition in touched:
            held = self._held[partition]
            commit = None
            while held:  # the resolved prefix of what we hold
                first = next(iter(held))
                if not held[first]:
                    break
                del held[first]
                commit = first + 1
            if commit is not None:
                self._uncommitted[partition] = commit
        self._count_unresolved()
        self._commit_uncommitted()

    def dead_letter(self, delivery: Delivery, error: str, attempts: int) -> None:
        raw = self._raw.get(delivery.id)
        if raw is None:
            return  # revoked meanwhile: its new owner decides
        key, value, headers = raw
        if value is None:
            value = delivery.fields.get("event", "").encode()
        partition, offset = position(delivery.id)
        record = {
            "error": error[:MAX_ERROR_HEADER],
            "attempts": str(attempts),
            "source": f"{self.topic}:{partition}:{offset}",
            "consumer": self.consumer,
            "failed_at": f"{time.time():.3f}",
        }
        kept = [(k, v) for k, v in headers if not k.startswith(HEADER_PREFIX)]
        headers = kept + [(HEADER_PREFIX + k, v.encode()) for k, v in record.items()]
        produce_and_flush(self._producer, self.dead_topic, [(key, value, headers)], self.name)
        self.ack([delivery])

    def lag(self) -> dict[str, int]:
        backlog = self.backlog()
        return {"lag": backlog.lag, "pending": backlog.pending}

    def backlog(self) -> Backlog:
        """Per partition: the newest offset minus the group's committed one (a separate
        client, so a metrics scrape never touches the member's)."""
        from confluent_kafka import TopicPartition

        with self._inspect_lock:
            inspector = self._inspector_client()
            topic = self._call(inspector.list_topics, self.topic, timeout=TIMEOUT_S)
            partitions = sorted(topic.topics[self.topic].partitions)
            wanted = [TopicPartition(self.topic, p) for p in partitions]
            committed = self._call(inspector.committed, wanted, timeout=TIMEOUT_S)
            behind: dict[str, int] = {}
            starts = []
            for tp in committed:
                low, high = self._call(
                    inspector.get_watermark_offsets,
                    TopicPartition(self.topic, tp.partition),
                    timeout=TIMEOUT_S,
                )
                start = tp.offset if tp.offset >= 0 else low
                behind[str(tp.partition)] = max(0, high - start)
                if high > start:
                    starts.append(TopicPartition(self.topic, tp.partition, start))
            oldest = self._oldest_age(inspector, starts) if starts else 0.0
        pending = self._unresolved
        return Backlog(max(0, sum(behind.values()) - pending), pending, behind, oldest)

    def _oldest_age(self, inspector: Consumer, starts: list[Any]) -> float | None:
        """Age of the oldest of the first unacknowledged messages of these partitions."""
        inspector.assign(starts)
        try:
            found: dict[int, float] = {}
            deadline = time.monotonic() + TIMEOUT_S / 2
            while len(found) < len(starts) and time.monotonic() < deadline:
                for message in inspector.consume(num_messages=len(starts), timeout=0.5):
                    stamp = message_time(message) if message.error() is None else None
                    if stamp is not None:
                        found.setdefault(message.partition(), stamp)
        finally:
            inspector.unassign()
        return max(0.0, time.time() - min(found.values())) if found else None

    def _inspector_client(self) -> Consumer:
        if self._inspector is None:
            # The group's id to read its offsets; it never subscribes (never joins the group)
            # and never commits.
            config = {**self._member_config, "client.id": f"{self.consumer}-lag"}
            self._inspector = make_client("consumer", config)
        return self._inspector

    def close(self) -> None:
        with self._inspect_lock:
            if self._inspector is not None:
                self._inspector.close()
                self._inspector = None
        try:
            self._commit_uncommitted()
        except QueueError as exc:
            log.warning("%s: last commit failed (those events come again): %s", self.name, exc)
        self._client.close()  # leaves the group: its partitions move at once
        self._producer.flush(TIMEOUT_S)

    # --- group membership (called inside consume) ----------------------------------------
    def _on_assign(self, _consumer: Any, partitions: list[Any]) -> None:
        for tp in partitions:
            self._held.setdefault(tp.partition, {})
        log.info("%s: assigned partitions %s", self.name, [tp.partition for tp in partitions])

    def _on_revoke(self, _consumer: Any, partitions: list[Any]) -> None:
        """Between batches: commit what was applied, give up the rest."""
        try:
            self._commit_uncommitted()
        except QueueError as exc:
            log.warning("%s: commit on revoke failed (events come again): %s", self.name, exc)
        self._drop(partitions)

    def _on_lost(self, _consumer: Any, partitions: list[Any]) -> None:
        """Taken away without a chance to commit (the session expired)."""
        self._drop(partitions)

    def _drop(self, partitions: list[Any]) -> None:
        for tp in partitions:
            held = self._held.pop(tp.partition, {})
            self._uncommitted.pop(tp.partition, None)
            for offset, resolved in held.items():
                delivery_id = f"{tp.partition}:{offset}"
                self._raw.pop(delivery_id, None)
                if not resolved:
                    self._revoked.append(delivery_id)
        self._count_unresolved()
        log.info("%s: revoked partitions %s", self.name, [tp.partition for tp in partitions])

    # --- helpers -------------------------------------------------------------------------
    def _owns(self, delivery_id: str) -> bool:
        partition, offset = position(delivery_id)
        return offset in self._held.get(partition, {})

    def _count_unresolved(self) -> None:
        self._unresolved = sum(
            1 for held in self._held.values() for resolved in held.values() if not resolved
        )

    def _commit_uncommitted(self) -> None:
        from confluent_kafka import TopicPartition

        if not self._uncommitted:
            return
        offsets = [TopicPartition(self.topic, p, o) for p, o in self._uncommitted.items()]
        self._call(self._client.commit, offsets=offsets, asynchronous=False)
        self._uncommitted.clear()

    def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Client failures become QueueError: the consumer waits them out."""
        from confluent_kafka import KafkaException

        try:
            return method(*args, **kwargs)
        except KafkaException as exc:
            raise QueueError(f"{self.name}: {exc}") from exc


register_events("kafka")(
    EventBackend(
        source=lambda url, settings: KafkaEventSource.from_settings(settings, url),
        publisher=KafkaEventPublisher,
    )
)
