"""What every Kafka client of Lookalike shares: the events URL, the client properties
(secrets from the SecretStr settings, redacted wherever shown), the topics, producing with
acknowledgements, and reading a message's parts.

    LOOKALIKE_EVENTS_URL=kafka://broker1:9092,broker2:9092/lookalike-events
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from lookalike.config import Settings
from lookalike.errors import ConfigError, QueueError
from lookalike.ingest.event_sources import DeadLetter
from lookalike.redact import redact_config

if TYPE_CHECKING:
    from confluent_kafka import Message, Producer

log = logging.getLogger(__name__)

TIMEOUT_S = 10.0  # metadata, commits and flushes: a broker that takes longer is down
_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
_BROKER = re.compile(r"^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):[0-9]{1,5}$")
MAX_ERROR_HEADER = 4096
HEADER_PREFIX = "lookalike."


@dataclass(frozen=True)
class KafkaLocation:
    brokers: str  # bootstrap.servers: host:port,host:port
    topic: str


def parse_kafka_url(url: str) -> KafkaLocation:
    """`kafka://host:9092[,host:9092...]/topic` -> brokers and topic (ConfigError else)."""
    parts = urlsplit(url)
    if parts.scheme != "kafka":
        raise ConfigError(f"not a kafka:// URL: {url!r}")
    if "@" in parts.netloc:
        raise ConfigError(
            "Kafka credentials do not belong in the URL: set sasl.username in "
            "LOOKALIKE_KAFKA_CONFIG and LOOKALIKE_KAFKA_SASL_PASSWORD"
        )
    brokers = [b.strip() for b in parts.netloc.split(",") if b.strip()]
    if not brokers or not all(_BROKER.match(b) for b in brokers):
        raise ConfigError(f"Kafka URL needs brokers as host:port[,host:port]: {url!r}")
    topic = parts.path.strip("/")
    if not _TOPIC.match(topic):
        raise ConfigError(f"Kafka URL needs a topic (letters, digits, . _ -): {url!r}")
    if parts.query or parts.fragment:
        raise ConfigError(
            f"Kafka URL takes no query: client options go in LOOKALIKE_KAFKA_CONFIG ({url!r})"
        )
    return KafkaLocation(",".join(brokers), topic)


def dead_letter_topic(topic: str) -> str:
    return f"{topic}.dead"


def client_config(location: KafkaLocation, settings: Settings) -> dict[str, Any]:
    """Properties every client gets: the brokers, the settings' properties, the passwords."""
    config: dict[str, Any] = {"bootstrap.servers": location.brokers, **settings.kafka_config}
    if settings.kafka_sasl_password is not None:
        config["sasl.password"] = settings.kafka_sasl_password.get_secret_value()
    if settings.kafka_ssl_key_password is not None:
        config["ssl.key.password"] = settings.kafka_ssl_key_password.get_secret_value()
    # librdkafka's own log lines go through Python logging, at their level.
    config["logger"] = log
    config["error_cb"] = _log_client_error
    return config


# Properties of one kind of client (librdkafka warns when another kind is given them; one
# LOOKALIKE_KAFKA_CONFIG serves consumers, producers and the admin client).
_CONSUMER_ONLY = (
    "session.timeout.ms",
    "heartbeat.interval.ms",
    "max.poll.interval.ms",
    "auto.offset.reset",
    "group.",
    "partition.assignment.strategy",
    "fetch.",
    "isolation.level",
    "enable.auto.",
    "auto.commit.",
    "queued.",
    "check.crcs",
    "enable.partition.eof",
)
_PRODUCER_ONLY = (
    "acks",
    "request.required.acks",
    "linger.ms",
    "queue.buffering.",
    "batch.",
    "compression.",
    "enable.idempotence",
    "transactional.id",
    "message.send.max.retries",
    "retries",
    "delivery.timeout.ms",
    "message.timeout.ms",
    "partitioner",
    "sticky.partitioning.linger.ms",
)


def for_client(config: Mapping[str, Any], kind: str) -> dict[str, Any]:
    """`config` without the properties a `kind` (consumer, producer, admin) does not take."""
    drop = {
        "consumer": _PRODUCER_ONLY,
        "producer": _CONSUMER_ONLY,
        "admin": _CONSUMER_ONLY + _PRODUCER_ONLY,
    }[kind]
    return {k: v for k, v in config.items() if not k.startswith(drop)}


def make_client(kind: str, config: Mapping[str, Any]) -> Any:
    """A confluent-kafka Consumer, Producer or AdminClient; properties librdkafka refuses
    (unknown, malformed, a missing CA file) are a ConfigError."""
    from confluent_kafka import Consumer, KafkaException, Producer
    from confluent_kafka.admin import AdminClient

    cls = {"consumer": Consumer, "producer": Producer, "admin": AdminClient}[kind]
    try:
        return cls(for_client(config, kind))
    except (KafkaException, ValueError, TypeError) as exc:
        raise ConfigError(
            f"Kafka client properties refused (LOOKALIKE_KAFKA_CONFIG): {exc}"
        ) from exc


def shown_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The client properties as `info` and logs may show them."""
    plain = {k: v for k, v in config.items() if isinstance(v, (str, int, float, bool))}
    return redact_config(plain)


def _log_client_error(error: Any) -> None:
    # Brokers going away and coming back: the client reconnects by itself.
    log.warning("kafka client: %s", error)


def ensure_topics(config: Mapping[str, Any], location: KafkaLocation, partitions: int) -> None:
    """Create the events topic and its dead-letter topic where they are missing (a cluster
    that forbids it gets a warning: an administrator creates them)."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import NewTopic

    admin = make_client("admin", config)
    try:
        existing = admin.list_topics(timeout=TIMEOUT_S).topics
    except KafkaException as exc:
        raise QueueError(f"kafka {location.brokers} unreachable: {exc}") from exc
    wanted = {location.topic: partitions, dead_letter_topic(location.topic): 1}
    missing = [
        # -1: the broker's default replication factor.
        NewTopic(name, num_partitions=count, replication_factor=-1)
        for name, count in wanted.items()
        if name not in existing or existing[name].error is not None
    ]
    if not missing:
        return
    for name, future in admin.create_topics(missing, request_timeout=TIMEOUT_S).items():
        try:
            future.result(timeout=TIMEOUT_S)
            log.info("created kafka topic %s", name)
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):  # another process was quicker
                log.warning("cannot create kafka topic %s (create it yourself): %s", name, exc)


def product_key(event: Mapping[str, Any]) -> bytes | None:
    """The message key: the event's product id (so a product's events share a partition)."""
    product = event.get("product")
    source = product if isinstance(product, Mapping) else event
    for name in ("id", "product_id"):
        value = source.get(name)
        if isinstance(value, (str, int)) and str(value).strip():
            return str(value).encode()
    return None


def produce_and_flush(
    producer: Producer,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes, list[tuple[str, bytes]]]],
    what: str,
) -> list[str]:
    """Produce in order and wait for every acknowledgement; returns `partition:offset`s."""
    from confluent_kafka import KafkaException

    positions: list[str | None] = [None] * len(records)
    failures: list[str] = []

    def delivered(index: int) -> Callable[[Any, Message], None]:
        def report(error: Any, message: Message) -> None:
            if error is not None:
                failures.append(str(error))
            else:
                positions[index] = f"{message.partition()}:{message.offset()}"

        return report

    try:
        for index, (key, value, headers) in enumerate(records):
            while True:
                try:
                    producer.produce(
                        topic, value=value, key=key, headers=headers, on_delivery=delivered(index)
                    )
                    break
                except BufferError:  # the client's queue is full: let it drain
                    producer.poll(0.1)
            producer.poll(0)
        left = producer.flush(TIMEOUT_S)
    except KafkaException as exc:
        raise QueueError(f"cannot publish to {what}: {exc}") from exc
    if left or failures or None in positions:
        reason = failures[0] if failures else f"{left} message(s) unacknowledged"
        raise QueueError(f"cannot publish to {what}: {reason}")
    return [p for p in positions if p is not None]


def position(delivery_id: str) -> tuple[int, int]:
    partition, _, offset = delivery_id.partition(":")
    return int(partition), int(offset)


def message_fields(message: Message) -> dict[str, str]:
    value = message.value()
    if value is None:  # a tombstone: the key's product is gone
        key = message.key()
        product_id = key.decode("utf-8", "replace") if key else ""
        return {"event": json.dumps({"type": "product_deleted", "product_id": product_id})}
    return {"event": value.decode("utf-8", "replace")}


def message_time(message: Message) -> float | None:
    from confluent_kafka import TIMESTAMP_NOT_AVAILABLE

    kind, millis = message.timestamp()
    return None if kind == TIMESTAMP_NOT_AVAILABLE or millis < 0 else millis / 1000


def dead_letter_from(message: Message) -> DeadLetter:
    headers = {
        k[len(HEADER_PREFIX) :]: (v or b"").decode("utf-8", "replace")
        for k, v in (message.headers() or [])
        if k.startswith(HEADER_PREFIX)
    }
    text = (message.value() or b"").decode("utf-8", "replace")
    try:
        event = json.loads(text)
    except json.JSONDecodeError:
        event = None
    attempts = headers.get("attempts", "0")
    return DeadLetter(
        id=f"{message.partition()}:{message.offset()}",
        event=event if isinstance(event, dict) else {"raw": text},
        error=headers.get("error", ""),
        attempts=int(attempts) if attempts.isdigit() else 0,
        source_id=headers.get("source", ""),
    )
