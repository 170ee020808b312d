"""Queues of product events, by `LOOKALIKE_EVENTS_URL`: the protocol every source
implements and the registry that maps a URL scheme to one (shaped like the encoder
registry). Built in: Redis Streams (`redis://`, `ingest/redis_stream.py`) and Kafka
(`kafka://broker:9092/topic`, `ingest/kafka_stream.py`); another queue plugs in the same
way (one module that calls `register_events`, one line in the congruence suite).

The URL is `LOOKALIKE_EVENTS_URL`, else `LOOKALIKE_REDIS_URL` (a Redis stream named by
`LOOKALIKE_STREAM_NAME`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol
from urllib.parse import urlsplit

from lookalike.config import Settings
from lookalike.errors import ConfigError


@dataclass
class Delivery:
    """One event as a queue handed it out."""

    id: str  # its position: a Redis stream entry id, a Kafka partition/offset
    fields: dict[str, str]
    deliveries: int = 1  # times the queue has handed it out, this time included
    queued_at: float | None = None  # when the queue took it (Unix seconds), if it says


@dataclass(frozen=True)
class Backlog:
    """How far behind a consumer group is."""

    lag: int  # events not handed out yet
    pending: int  # handed out, not acknowledged (by this member, where the queue tells)
    # Events not yet acknowledged by the group, per partition (queues with partitions).
    partitions: dict[str, int] = field(default_factory=dict)
    # Age of the oldest event the group has not acknowledged, by the queue's timestamps
    # (0 when there is none; None when the queue cannot tell).
    oldest_s: float | None = None


@dataclass(frozen=True)
class EventSourceCapabilities:
    # Each product's events reach one consumer of the group, in order (e.g. Kafka keyed
    # partitions). Without it, two consumers may hold events of one product at once.
    ordered_per_product: bool
    dead_letters: bool  # failed events are parked where they can be read back
    # The queue counts deliveries across consumer restarts (an event that crashed a
    # consumer can be parked before it is tried again); Kafka's offsets cannot.
    counts_deliveries: bool = True


class EventSource(Protocol):
    """A queue of product events with acknowledgements."""

    name: str
    capabilities: EventSourceCapabilities

    def recover(self) -> list[Delivery]:
        """Events handed to this consumer before and never acknowledged (it was killed),
        oldest first. Called once, before `receive`."""
        ...

    def receive(self, count: int, block_ms: int) -> list[Delivery]:
        """Up to `count` new events (or ones a vanished consumer left), oldest first;
        waits up to `block_ms` for one when none is there (0: does not wait)."""
        ...

    def redeliver(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        """Take failed events again for another try (the queue counts the delivery).
        Events that no longer exist are left out."""
        ...

    def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Done with these: never hand them out again."""
        ...

    def dead_letter(self, delivery: Delivery, error: str, attempts: int) -> None:
        """Park the event with its error where failed events go and acknowledge it, both
        or neither."""
        ...

    def revoked(self) -> list[str]:
        """Ids of events handed to this consumer that it no longer owns (a rebalance gave
        their partitions to another member), since the last call: drop them unapplied. The
        queue hands them to their new owner from the last acknowledged position."""
        ...

    def lag(self) -> dict[str, int]:
        """`lag`: events not handed out yet; `pending`: handed out, not acknowledged."""
        ...

    def backlog(self) -> Backlog:
        """Lag in events (per partition where the queue has them) and in seconds. Safe to
        call from another thread (a metrics scrape) while the consumer runs."""
        ...

    def describe(self) -> dict[str, Any]:
        """Type, where (secrets redacted), group and consumer: what `lookalike info` shows."""
        ...

    def close(self) -> None: ...


class EventPublisher(Protocol):
    """Sends product events to the queue a source reads (`lookalike publish`, tests), and
    reads back the ones parked as dead letters (`lookalike events replay`)."""

    def publish(self, event: Mapping[str, Any]) -> str:
        """Send one event (keyed by its product id where the queue partitions); returns
        its position in the queue."""
        ...

    def publish_many(self, events: Sequence[Mapping[str, Any]]) -> list[str]:
        """Send events in order, in as few round trips as the queue allows; returns their
        positions."""
        ...

    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        """Parked events not yet discarded, oldest first."""
        ...

    def discard_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        """Forget parked events (after a replay sent them back). Redis deletes them; a
        Kafka topic is append-only, so a replay group's position moves past them."""
        ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class DeadLetter:
    """An event that failed `max_deliveries` tries, with why."""

    id: str  # its position among the dead letters
    event: dict[str, Any]  # the event as it was published
    error: str
    attempts: int
    source_id: str  # its position in the queue it came from


@dataclass(frozen=True)
class EventBackend:
    """How one kind of queue is read (a consumer group member) and written."""

    source: Callable[[str, Settings], EventSource]  # (url, settings) -> a group member
    publisher: Callable[[str, Settings], EventPublisher]


_BACKENDS: dict[str, EventBackend] = {}


def register_events(*schemes: str) -> Callable[[EventBackend], EventBackend]:
    """Register an event backend for URL schemes."""

    def decorate(backend: EventBackend) -> EventBackend:
        for scheme in schemes:
            _BACKENDS[scheme] = backend
        return backend

    return decorate


def event_schemes() -> list[tuple[str, ...]]:
    """The URL schemes of each registered backend (one tuple per backend)."""
    _register_builtins()
    groups: dict[int, list[str]] = {}
    for scheme, backend in _BACKENDS.items():
        groups.setdefault(id(backend), []).append(scheme)
    return sorted(tuple(sorted(schemes)) for schemes in groups.values())


def events_url(settings: Settings) -> str | None:
    return settings.events_url or settings.redis_url


def event_backend(settings: Settings) -> tuple[str, EventBackend]:
    """(url, backend) the settings name; ConfigError when none is set or known."""
    _register_builtins()
    url = events_url(settings)
    if not url:
        raise ConfigError(
            "no event source: set LOOKALIKE_EVENTS_URL (e.g. redis://localhost:6379/0) "
            "or LOOKALIKE_REDIS_URL"
        )
    scheme = urlsplit(url).scheme
    backend = _BACKENDS.get(scheme)
    if backend is None:
        raise ConfigError(
            f"unsupported event source URL scheme {scheme!r}; known: {', '.join(sorted(_BACKENDS))}"
        )
    return url, backend


def open_event_source(settings: Settings) -> EventSource:
    """This process's member of the consumer group (it connects: fails fast when down)."""
    url, backend = event_backend(settings)
    return backend.source(url, settings)


def describe_events(settings: Settings) -> dict[str, Any] | None:
    """The event queue `LOOKALIKE_EVENTS_URL` names and how far behind its consumer group
    is, for `lookalike info` (opening the queue as a consumer would, without joining the
    group); None when it is unset (a Redis URL alone may be there for the caches only). An
    unreachable queue is reported, not raised."""
    from lookalike.errors import LookalikeError

    if not settings.events_url:
        return None
    try:
        source = open_event_source(settings)
    except LookalikeError as exc:
        return {"error": str(exc)}
    try:
        backlog = source.backlog()
        return {**source.describe(), "backlog": asdict(backlog)}
    except LookalikeError as exc:
        return {**source.describe(), "error": str(exc)}
    finally:
        source.close()


def open_event_publisher(settings: Settings) -> EventPublisher:
    url, backend = event_backend(settings)
    return backend.publisher(url, settings)


def _register_builtins() -> None:
    # Imported here so that the clients (redis, confluent-kafka) stay optional: each module
    # imports its client only when a source or publisher is opened.
    from lookalike.ingest import kafka_stream, redis_stream  # noqa: F401
