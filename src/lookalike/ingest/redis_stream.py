"""Product events from a Redis Stream, read by a consumer group.

- new events: XREADGROUP `>`; an event stays in the group's pending list until XACK;
- after a crash, the consumer (same name) first re-reads its own pending list (id `0`);
- a failed event is taken again with XCLAIM, which counts the delivery;
- events a vanished consumer left pending for `claim_idle_s` are taken over (XAUTOCLAIM);
- dead letters: XADD to `<stream>:dead` and XACK in one MULTI/EXEC transaction.

Publishing an event: `XADD lookalike:events * event '{"type": "product_created", ...}'`.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from lookalike.config import Settings
from lookalike.errors import QueueError
from lookalike.ingest.event_sources import (
    Backlog,
    DeadLetter,
    Delivery,
    EventBackend,
    EventSourceCapabilities,
    events_url,
    register_events,
)

if TYPE_CHECKING:
    import redis

T = TypeVar("T")

RECOVER_BATCH = 500


def dead_letter_stream(stream: str) -> str:
    return f"{stream}:dead"


class RedisStreamSource:
    """A member of a Redis Streams consumer group (see the module docstring)."""

    # A group hands a product's events to whichever consumer reads next, and XAUTOCLAIM can
    # move a slow consumer's events to another: no order across consumers.
    capabilities = EventSourceCapabilities(ordered_per_product=False, dead_letters=True)

    def __init__(
        self,
        client: redis.Redis,
        stream: str,
        group: str,
        consumer: str,
        *,
        claim_idle_s: float = 60.0,
    ) -> None:
        self.client = client
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.dead_stream = dead_letter_stream(stream)
        self.name = f"redis stream {stream} (group {group}, consumer {consumer})"
        self.claim_idle_ms = int(claim_idle_s * 1000)
        self._next_claim = 0.0
        self._call(self._ensure_group)

    @classmethod
    def from_settings(cls, settings: Settings, url: str | None = None) -> RedisStreamSource:
        """The group member the settings describe (`url`: the events URL, else settings')."""
        url = url or events_url(settings)
        # Blocking reads last up to consumer_block_ms: the socket must wait longer.
        client = _connect(url, settings, socket_timeout=settings.consumer_block_ms / 1000 + 10)
        return cls(
            client,
            settings.stream_name,
            settings.consumer_group,
            settings.consumer_name or socket.gethostname(),
            claim_idle_s=settings.consumer_claim_idle_s,
        )

    def describe(self) -> dict[str, Any]:
        from lookalike.redact import redact_url

        kwargs = self.client.connection_pool.connection_kwargs
        where = f"{kwargs.get('host', kwargs.get('path', '?'))}:{kwargs.get('port', '')}"
        return {
            "type": "redis",
            "server": redact_url(where),
            "stream": self.stream,
            "group": self.group,
            "consumer": self.consumer,
            "dead_letters": self.dead_stream,
        }

    def _ensure_group(self) -> None:
        import redis

        try:
            # From the start of the stream: events published before the first consumer
            # ever ran are applied too.
            self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    # --- reading -------------------------------------------------------------------------
    def recover(self) -> list[Delivery]:
        out: list[Delivery] = []
        last = "0"
        while True:
            reply = self._call(
                self.client.xreadgroup,
                self.group,
                self.consumer,
                {self.stream: last},
                count=RECOVER_BATCH,
            )
            entries = reply[0][1] if reply else []
            if not entries:
                break
            # An entry deleted from the stream while pending comes back without fields:
            # nothing is left to apply.
            gone = [entry_id for entry_id, fields in entries if not fields]
            if gone:
                self._call(self.client.xack, self.stream, self.group, *gone)
            found = [(entry_id, fields) for entry_id, fields in entries if fields]
            counts = self._delivery_counts([entry_id for entry_id, _ in found])
            out.extend(
                _delivery(entry_id, fields, counts.get(_text(entry_id), 1))
                for entry_id, fields in found
            )
            last = _text(entries[-1][0])
        return out

    def receive(self, count: int, block_ms: int) -> list[Delivery]:
        claimed = self._claim_abandoned(count)
        if claimed:
            return claimed
        reply = self._call(
            self.client.xreadgroup,
            self.group,
            self.consumer,
            {self.stream: ">"},
            count=count,
            block=block_ms if block_ms > 0 else None,
        )
        if not reply:
            return []
        return [_delivery(entry_id, fields, 1) for entry_id, fields in reply[0][1]]

    def _claim_abandoned(self, count: int) -> list[Delivery]:
        """Events another consumer was given and left idle too long (it is gone)."""
        now = time.monotonic()
        if now < self._next_claim:
            return []
        self._next_claim = now + self.claim_idle_ms / 2000
        reply = self._call(
            self.client.xautoclaim,
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=self.claim_idle_ms,
            start_id="0-0",
            count=count,
        )
        entries = [(entry_id, fields) for entry_id, fields in reply[1] if entry_id and fields]
        if not entries:
            return []
        counts = self._delivery_counts([entry_id for entry_id, _ in entries])
        return [
            _delivery(entry_id, fields, counts.get(_text(entry_id), 1))
            for entry_id, fields in entries
        ]

    def redeliver(self, deliveries: Sequence[Delivery]) -> list[Delivery]:
        if not deliveries:
            return []
        before = {d.id: d.deliveries for d in deliveries}
        entries = self._call(
            self.client.xclaim,
            self.stream,
            self.group,
            self.consumer,
            min_idle_time=0,
            message_ids=list(before),
        )
        # Entries deleted from the stream meanwhile are not returned (Redis drops them from
        # the pending list).
        return [
            _delivery(entry_id, fields, before[_text(entry_id)] + 1)
            for entry_id, fields in entries
            if entry_id and fields
        ]

    def _delivery_counts(self, entry_ids: list[Any]) -> dict[str, int]:
        if not entry_ids:
            return {}
        rows = self._call(
            self.client.xpending_range,
            self.stream,
            self.group,
            min=entry_ids[0],
            max=entry_ids[-1],
            count=len(entry_ids) + 100,
            consumername=self.consumer,
        )
        return {_text(row["message_id"]): int(row["times_delivered"]) for row in rows}

    # --- outcomes ------------------------------------------------------------------------
    def ack(self, deliveries: Sequence[Delivery]) -> None:
        if deliveries:
            self._call(self.client.xack, self.stream, self.group, *[d.id for d in deliveries])

    def dead_letter(self, delivery: Delivery, error: str, attempts: int) -> None:
        event = delivery.fields.get("event")
        if event is None or len(delivery.fields) > 1:
            event = json.dumps(delivery.fields)
        record = {
            "event": event,
            "error": error,
            "source_id": delivery.id,
            "attempts": str(attempts),
            "consumer": self.consumer,
            "failed_at": f"{time.time():.3f}",
        }

        def both() -> None:
            pipe = self.client.pipeline(transaction=True)
            pipe.xadd(self.dead_stream, record)
            pipe.xack(self.stream, self.group, delivery.id)
            pipe.execute()

        self._call(both)

    def revoked(self) -> list[str]:
        # A group never takes events back from a member; XAUTOCLAIM can hand a slow
        # member's events to another meanwhile, and versions keep that harmless.
        return []

    def lag(self) -> dict[str, int]:
        group = self._group_info()
        if group is None:
            return {"lag": 0, "pending": 0}
        return {"lag": int(group.get("lag") or 0), "pending": int(group["pending"])}

    def backlog(self) -> Backlog:
        group = self._group_info()
        if group is None:
            return Backlog(0, 0, oldest_s=0.0)
        # The oldest event not acknowledged: the first pending one, or the first one not
        # handed out yet (after the group's last-delivered id).
        times = []
        if int(group["pending"]):
            summary = self._call(self.client.xpending, self.stream, self.group)
            times.append(_id_time(summary["min"]))
        last = _text(group["last-delivered-id"])
        after = self._call(self.client.xrange, self.stream, min=f"({last}", max="+", count=1)
        if after:
            times.append(_id_time(after[0][0]))
        oldest = max(0.0, time.time() - min(times)) if times else 0.0
        lag = int(group.get("lag") or 0)
        return Backlog(lag, int(group["pending"]), oldest_s=oldest)

    def _group_info(self) -> dict[str, Any] | None:
        for group in self._call(self.client.xinfo_groups, self.stream):
            if _text(group["name"]) == self.group:
                return group
        return None

    def close(self) -> None:
        self.client.close()

    def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Redis failures become QueueError: the consumer waits them out."""
        import redis

        try:
            return method(*args, **kwargs)
        except redis.RedisError as exc:
            raise QueueError(f"{self.name}: {exc}") from exc


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _id_time(entry_id: bytes | str) -> float:
    """When Redis added an entry (its id's milliseconds part), in Unix seconds."""
    return int(_text(entry_id).split("-", 1)[0]) / 1000


def _delivery(entry_id: bytes | str, fields: dict, deliveries: int) -> Delivery:
    decoded = {
        _text(key): value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        for key, value in fields.items()
    }
    return Delivery(_text(entry_id), decoded, deliveries, queued_at=_id_time(entry_id))


def publish(client: redis.Redis, stream: str, event: Mapping[str, Any]) -> str:
    """Add one event to the stream (as JSON in its `event` field); returns the entry id."""
    return _text(client.xadd(stream, {"event": json.dumps(event)}))


class RedisStreamPublisher:
    """Writes events to the stream a group reads; reads its dead-letter stream back."""

    def __init__(self, url: str, settings: Settings) -> None:
        self.client = _connect(url, settings, socket_timeout=10)
        self.stream = settings.stream_name

    def publish(self, event: Mapping[str, Any]) -> str:
        try:
            return publish(self.client, self.stream, event)
        except _redis_errors() as exc:
            raise QueueError(f"cannot publish to redis stream {self.stream}: {exc}") from exc

    def publish_many(self, events: Sequence[Mapping[str, Any]]) -> list[str]:
        pipe = self.client.pipeline(transaction=False)
        for event in events:
            pipe.xadd(self.stream, {"event": json.dumps(event)})
        try:
            return [_text(entry_id) for entry_id in pipe.execute()]
        except _redis_errors() as exc:
            raise QueueError(f"cannot publish to redis stream {self.stream}: {exc}") from exc

    def discard_dead_letters(self, letters: Sequence[DeadLetter]) -> None:
        if not letters:
            return
        dead = dead_letter_stream(self.stream)
        try:
            self.client.xdel(dead, *[letter.id for letter in letters])
        except _redis_errors() as exc:
            raise QueueError(f"cannot delete from {dead}: {exc}") from exc

    def dead_letters(self, limit: int = 1000) -> list[DeadLetter]:
        try:
            entries = self.client.xrange(dead_letter_stream(self.stream), count=limit)
        except _redis_errors() as exc:
            raise QueueError(f"cannot read {dead_letter_stream(self.stream)}: {exc}") from exc
        out = []
        for entry_id, raw in entries:
            fields = {_text(k): _text(v) for k, v in raw.items()}
            try:
                event = json.loads(fields.get("event", "null"))
            except json.JSONDecodeError:
                event = None
            out.append(
                DeadLetter(
                    id=_text(entry_id),
                    event=event if isinstance(event, dict) else {"raw": fields.get("event", "")},
                    error=fields.get("error", ""),
                    attempts=int(fields.get("attempts", "0") or 0),
                    source_id=fields.get("source_id", ""),
                )
            )
        return out

    def close(self) -> None:
        self.client.close()


def _connect(url: str | None, settings: Settings, *, socket_timeout: float) -> redis.Redis:
    from lookalike.cache.redis import connect_redis
    from lookalike.errors import ConfigError

    if not url:
        raise ConfigError("the event stream needs LOOKALIKE_EVENTS_URL or LOOKALIKE_REDIS_URL")
    return connect_redis(url, socket_timeout=socket_timeout)


def _redis_errors() -> tuple[type[Exception], ...]:
    import redis

    return (redis.RedisError,)


register_events("redis", "rediss", "unix")(
    EventBackend(
        source=lambda url, settings: RedisStreamSource.from_settings(settings, url),
        publisher=RedisStreamPublisher,
    )
)
