"""Real-time ingest: apply product events from a queue to the catalog and the index.

Delivery is at least once and the effect exactly once:
- an event is acknowledged only after the catalog transaction that applies it commits
  (the index then catches up from the catalog's change log, as for every write);
- applying an event again is harmless: an upsert of unchanged content is skipped by its
  content hash, a metadata rewrite writes the same values, a delete of a missing product
  does nothing. So a consumer killed between commit and acknowledgement, redelivered
  the same events on restart, leaves the catalog as if it had seen each once.

Events of one product apply in stream order. An event that fails (bad image, unreachable
URL, malformed record) is retried after a growing delay while other products' events go
on; later events of the same product wait behind it, so a retried old event can never
overwrite a newer one. After `max_deliveries` tries it goes to the dead-letter stream
with its error, and the product's later events proceed. An event that was handed out
`max_deliveries` times and never acknowledged (a consumer crashed on it) is dead-lettered
before it is tried again.

When the catalog, index, model or queue itself is unavailable, nothing counts as a
failed try: the consumer backs off and tries again, so an outage never empties the stream
into the dead-letter stream.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol

from lookalike.catalog.base import Catalog
from lookalike.errors import (
    CatalogError,
    IndexError_,
    InvalidInput,
    ModelError,
    QueueError,
)
from lookalike.files.fetch import Fetcher
from lookalike.ingest.event_sources import Delivery, EventSource
from lookalike.ingest.events import ProductEvent, parse_event
from lookalike.ingest.pipeline import IngestReport
from lookalike.ingest.sources import ItemSpec
from lookalike.metrics import Metrics

log = logging.getLogger(__name__)

# Failures of our own infrastructure: wait and try again, never blame the event.
UNAVAILABLE = (CatalogError, IndexError_, ModelError, QueueError)
MAX_BACKOFF_S = 30.0


class CatalogWriter(Protocol):
    """What the consumer writes through (the Engine)."""

    catalog: Catalog

    def index_items(
        self,
        items: Iterable[ItemSpec],
        total: int | None = None,
        *,
        write_report: bool = True,
        save_at_end: bool = True,
        fetcher: Fetcher | None = None,
    ) -> IngestReport: ...

    def stored_fetcher(self) -> Fetcher:
        """Reads image sources the catalog already holds (local ones under their roots)."""
        ...

    def delete_many(self, product_ids: Sequence[str]) -> int: ...

    def sync(self) -> int:
        """Catch the index up with the catalog and save it when a save is due."""
        ...


@dataclass
class _Work:
    delivery: Delivery
    event: ProductEvent | None = None
    parse_error: str | None = None
    attempts: int = 0  # failed tries seen by this process
    error: str = ""
    retry_at: float = 0.0

    @property
    def product_id(self) -> str | None:
        return self.event.product_id if self.event is not None else None


@dataclass
class ConsumerStats:
    applied: int = 0
    failed_tries: int = 0
    dead_lettered: int = 0


class StreamConsumer:
    def __init__(
        self,
        source: EventSource,
        writer: CatalogWriter,
        *,
        batch_size: int = 64,
        block_ms: int = 1000,
        max_deliveries: int = 5,
        retry_delay_s: float = 1.0,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self.writer = writer
        self.batch_size = batch_size
        self.block_ms = block_ms
        self.max_deliveries = max_deliveries
        self.retry_delay_s = retry_delay_s
        self.metrics = metrics
        self.clock = clock
        self.stats = ConsumerStats()
        # Events taken and not yet resolved, in stream order (dicts keep insertion order).
        self._pending: dict[str, _Work] = {}
        self._max_pending = 4 * batch_size
        self._recovered = False
        self._stop = threading.Event()
        if metrics is not None:
            metrics.collect_from(self._lag_metrics)

    # --- loop ----------------------------------------------------------------------------
    def run(self) -> None:
        """Consume until `stop()`; outages of the catalog or queue are waited out."""
        backoff = self.retry_delay_s
        while not self._stop.is_set():
            try:
                self.step()
                self.writer.sync()  # the periodic index save, even while no event comes
            except UNAVAILABLE as exc:
                log.warning("consumer paused: %s; trying again in %.1f s", exc, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF_S)
            else:
                backoff = self.retry_delay_s

    def stop(self) -> None:
        self._stop.set()

    def step(self) -> int:
        """One round: take events, apply every one that may go now, acknowledge what
        committed. Returns how many events were resolved (applied or dead-lettered)."""
        if not self._recovered:
            self._admit(self.source.recover())
            self._recovered = True
        now = self.clock()
        room = self._max_pending - len(self._pending)
        ready = self._select(now)
        if room > 0:
            wait = 0 if ready else self._wait_ms(now)
            self._admit(self.source.receive(min(room, self.batch_size), wait))
            ready = self._select(self.clock())
        elif not ready:  # full of events waiting behind failures: wait for a retry
            self._stop.wait(self._wait_ms(now) / 1000)
            ready = self._select(self.clock())
        return self._apply(ready)

    @property
    def pending(self) -> int:
        """Events taken and not resolved yet (waiting for a retry, or behind one)."""
        return len(self._pending)

    # --- choosing what goes now ----------------------------------------------------------
    def _admit(self, deliveries: Iterable[Delivery]) -> None:
        for delivery in deliveries:
            if delivery.id in self._pending:
                continue  # ours already (taken back from our own pending list)
            work = _Work(delivery)
            try:
                work.event = parse_event(delivery.fields)
            except InvalidInput as exc:
                work.parse_error = str(exc)
            self._pending[delivery.id] = work

    def _select(self, now: float) -> list[_Work]:
        """Events that may be applied now, in stream order: not waiting for a retry, and
        not behind an earlier event of the same product that is."""
        blocked: set[str] = set()
        ready: list[_Work] = []
        for work in self._pending.values():
            product_id = work.product_id
            if product_id is not None and product_id in blocked:
                continue
            if work.attempts and work.retry_at > now:
                if product_id is not None:
                    blocked.add(product_id)
                continue
            ready.append(work)
            if len(ready) >= self.batch_size:
                break
        return ready

    def _wait_ms(self, now: float) -> int:
        """How long to wait for new events: until the next retry is due, at most block_ms."""
        due = [w.retry_at for w in self._pending.values() if w.attempts]
        if not due:
            return self.block_ms
        return max(1, min(self.block_ms, int((min(due) - now) * 1000) + 1))

    # --- applying ------------------------------------------------------------------------
    def _apply(self, ready: list[_Work]) -> int:
        if not ready:
            return 0
        resolved_before = self.stats.applied + self.stats.dead_lettered
        retries = [w for w in ready if w.attempts]
        if retries:
            again = {d.id: d for d in self.source.redeliver([w.delivery for w in retries])}
            for work in retries:
                if work.delivery.id in again:
                    work.delivery = again[work.delivery.id]
                else:  # gone from the stream (trimmed or deleted): nothing left to do
                    self._pending.pop(work.delivery.id, None)
                    ready.remove(work)

        failed_products: set[str] = set()
        run: list[_Work] = []
        for work in ready:
            if work.attempts == 0 and work.delivery.deliveries > self.max_deliveries:
                self._dead_letter(
                    work,
                    f"handed out {work.delivery.deliveries} times and never acknowledged "
                    "(a consumer may have crashed on it)",
                )
                continue
            if work.event is None:
                self._fail(work, work.parse_error or "unreadable event")
                continue
            if work.product_id in failed_products:
                continue  # waits behind its product's failed event
            if run and (
                work.event.kind != run[0].event.kind
                or any(w.product_id == work.product_id for w in run)
            ):
                failed_products |= self._flush(run)
                run = []
                if work.product_id in failed_products:
                    continue
            run.append(work)
        if run:
            self._flush(run)
        return self.stats.applied + self.stats.dead_lettered - resolved_before

    def _flush(self, run: list[_Work]) -> set[str]:
        """Apply a run of same-kind events of distinct products (one catalog transaction
        per encoder batch); returns the products whose event failed."""
        try:
            if run[0].event.kind == "delete":
                self.writer.delete_many([w.product_id for w in run])
                self._ack(run)
                return set()
            return self._upsert(run)
        except UNAVAILABLE:
            raise
        except Exception as exc:  # a bug or an input nobody foresaw: find the culprit
            if len(run) > 1:
                log.warning(
                    "a run of %d events failed (%s); applying them one by one", len(run), exc
                )
                failed: set[str] = set()
                for work in run:
                    failed |= self._flush([work])
                return failed
            log.exception("event %s failed", run[0].delivery.id)
            self._fail(run[0], f"{type(exc).__name__}: {exc}")
            return {run[0].product_id}

    def _upsert(self, run: list[_Work]) -> set[str]:
        failed: dict[str, str] = {}
        without_image = [w.product_id for w in run if w.event.item.image is None]
        stored = self.writer.catalog.get_many(without_image) if without_image else {}
        named: list[ItemSpec] = []  # the event names the image: fetched remote only
        kept: list[ItemSpec] = []  # the stored image, read back where the catalog keeps it
        for work in run:
            item = work.event.item
            if item.image is None:
                existing = stored.get(item.id)
                if existing is None or not existing.image_source:
                    failed[item.id] = (
                        f"product {item.id!r} has no stored image and the event carries none"
                    )
                    continue
                kept.append(dataclasses.replace(item, image=existing.image_source))
            else:
                named.append(item)
        for specs, stored_source in ((named, False), (kept, True)):
            if specs:
                fetcher = self.writer.stored_fetcher() if stored_source else None
                report = self.writer.index_items(
                    specs, write_report=False, save_at_end=False, fetcher=fetcher
                )
                failed.update((bad.id, bad.reason) for bad in report.failed)
        self._ack([w for w in run if w.product_id not in failed])
        for work in run:
            if work.product_id in failed:
                self._fail(work, failed[work.product_id])
        return set(failed)

    # --- outcomes ------------------------------------------------------------------------
    def _ack(self, works: list[_Work]) -> None:
        if not works:
            return
        self.source.ack([w.delivery for w in works])
        for work in works:
            self._pending.pop(work.delivery.id, None)
            self._count("applied", work.event.type if work.event else "unknown")
        self.stats.applied += len(works)

    def _fail(self, work: _Work, error: str) -> None:
        work.attempts += 1
        work.error = error
        self.stats.failed_tries += 1
        self._count("failed", work.event.type if work.event else "unknown")
        if work.attempts >= self.max_deliveries:
            self._dead_letter(work, error)
            return
        delay = self.retry_delay_s * 2 ** (work.attempts - 1)
        work.retry_at = self.clock() + delay
        log.warning(
            "event %s (try %d of %d) failed: %s; retrying in %.1f s",
            work.delivery.id,
            work.attempts,
            self.max_deliveries,
            error,
            delay,
        )

    def _dead_letter(self, work: _Work, error: str) -> None:
        attempts = max(work.attempts, work.delivery.deliveries)
        self.source.dead_letter(work.delivery, error, attempts)
        self._pending.pop(work.delivery.id, None)
        self.stats.dead_lettered += 1
        self._count("dead_lettered", work.event.type if work.event else "unknown")
        log.error(
            "event %s went to the dead-letter stream after %d tries: %s",
            work.delivery.id,
            attempts,
            error,
        )

    def _count(self, outcome: str, event_type: str) -> None:
        if self.metrics is not None:
            self.metrics.consumer_events.labels(outcome, event_type).inc()

    def _lag_metrics(self):
        from prometheus_client.core import GaugeMetricFamily

        try:
            lag = self.source.lag()
        except QueueError:
            return
        family = GaugeMetricFamily(
            "lookalike_consumer_lag",
            "Events not yet handed to the consumer group (lag) or handed out and not "
            "acknowledged (pending).",
            labels=["state"],
        )
        for state, value in lag.items():
            family.add_metric([state], value)
        yield family
        yield GaugeMetricFamily(
            "lookalike_consumer_waiting",
            "Events this consumer holds back: waiting for a retry, or behind one.",
            value=len(self._pending),
        )
