"""Prometheus metrics: every metric Lookalike exports, in one registry per Engine.

A registry per engine (not prometheus_client's global one) lets several apps or engines
live in one process, as tests do. The API serves it at `GET /metrics`; `lookalike consume
--metrics-port` serves the consumer's. Values read from live state (index size, cache
counters, consumer lag) are collected when scraped.

Several processes, one set of figures: with `PROMETHEUS_MULTIPROC_DIR` set before
prometheus_client is imported (`lookalike serve --workers N` sets it for its workers),
every process writes its values to files in that folder and a scrape of any worker
reports them merged: counters and histograms summed over every process that ever ran,
gauges by the rule each declares (`multiprocess_mode`: the sum or the largest value over
the live processes). Values read from live state cannot be read from another process, so
each worker copies its own into such files (`publish`) when scraped and at every index
sync; a scrape shows the other workers' as of their last sync.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, values
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from lookalike.cache.base import Cache

log = logging.getLogger(__name__)


class _Appliable(Protocol):
    on_applied: Any  # called with the commit times of the change-log entries it applied


Watched = TypeVar("Watched", bound=_Appliable)

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
# Freshness: seconds to minutes in production, an hour the seed's old goal.
FRESHNESS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0)
# Stages of one search are shorter: sub-millisecond steps (a filter, a cache hit) matter.
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
QUERY_TYPES = ("image", "text", "hybrid")
# Where a search's time goes (`lookalike_search_stage_seconds{type, stage}`): the keys of
# the pipeline's `timings_ms` (without `_ms`), named for what they do, plus the API's own.
STAGE_NAMES = {
    "queue": "queue",  # waiting for an API thread (api/tracking.py)
    "decode": "decode",  # query images decoded and checked (api/tracking.py)
    "batch_wait": "batch_wait",  # waiting for others to share an encoder call (inside encode)
    "encode_ms": "encode",  # the query's embeddings: encoder, embedding cache, stored vector
    "filter_ms": "filter",  # which items match the filters (count, ids)
    "ann_ms": "ann",  # the vector index (or exact scoring of a small filtered set)
    "metadata_ms": "catalog",  # candidates' products read from the catalog
    "rank_ms": "rank",
    "diversity_ms": "diversity",
    "result_cache_ms": "result_cache",  # a result-cache hit: the whole search
    "serialise": "serialise",  # the response model built (api/tracking.py)
}


# Files of gauges that count only live processes, by process id (prometheus_client's names).
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(\d+)\.db")


def multiprocess_mode() -> bool:
    """Whether prometheus_client writes values to shared files (decided at its import)."""
    return values.ValueClass is not values.MutexValue


def prepare_multiprocess_dir(directory: Path | None) -> tuple[Path, bool]:
    """A folder for the metric files of a run's processes: `directory` emptied of an
    earlier run's files, or a new temporary folder. Returns it and whether it is new (then
    the caller removes it after the run)."""
    if directory is None:
        return Path(tempfile.mkdtemp(prefix="lookalike-metrics-")), True
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):  # counters of processes long gone would add up
        stale.unlink()
    return directory, False


def remove_multiprocess_dir(directory: Path) -> None:
    shutil.rmtree(directory, ignore_errors=True)


class Metrics:
    """Every metric; `directory`: the shared folder of multiprocess mode, to tidy up the
    files of workers that died without saying so."""

    def __init__(self, directory: Path | None = None) -> None:
        self.multiprocess = multiprocess_mode()
        self.directory = directory
        # Live-state readers, copied into file-backed metrics in multiprocess mode.
        self._gauges: list[tuple[Gauge, Callable[[], float]]] = []
        self._callbacks: list[tuple[Callable[[], Iterable[Metric]], str]] = []
        self._published: dict[tuple[str, tuple[str, ...]], float] = {}
        self._mirrors: dict[str, Any] = {}
        self.registry = CollectorRegistry()
        r: CollectorRegistry | None = self.registry
        if self.multiprocess:
            self._forget_dead_processes()
            # Metrics write to files; the registry reads every process's files when scraped,
            # after this process has published its live values.
            self.registry.register(_Callback(self._publish_for_scrape))
            MultiProcessCollector(self.registry)
            r = None
        self.search_seconds = Histogram(
            "lookalike_search_seconds",
            "Search latency by query type (image, text, hybrid), from request to response.",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.search_stage_seconds = Histogram(
            "lookalike_search_stage_seconds",
            "Time per stage of a search, by query type: " + ", ".join(STAGE_NAMES.values()),
            ["type", "stage"],
            buckets=STAGE_BUCKETS,
            registry=r,
        )
        self.search_requests = Counter(
            "lookalike_search_requests",
            "Search requests by query type and HTTP status.",
            ["type", "status"],
            registry=r,
        )
        self.http_requests = Counter(
            "lookalike_http_requests",
            "HTTP requests by method, route and status.",
            ["method", "route", "status"],
            registry=r,
        )
        self.ingest_items = Counter(
            "lookalike_ingest_items",
            "Items ingest handled, by outcome (added, reencoded, metadata, unchanged, deleted).",
            ["outcome"],
            registry=r,
        )
        self.ingest_errors = Counter(
            "lookalike_ingest_errors",
            "Items ingest could not use (bad or unreachable images, bad records).",
            registry=r,
        )
        self.consumer_events = Counter(
            "lookalike_consumer_events",
            "Queue events by outcome (applied, failed try, dead_lettered, stale: skipped as "
            "older than the catalog's version) and event type.",
            ["outcome", "type"],
            registry=r,
        )
        self.consumer_unversioned = Counter(
            "lookalike_consumer_unversioned_events",
            "Events applied without a version (in arrival order: with several consumers, "
            "an older one may overwrite a newer one).",
            registry=r,
        )
        self.event_commit_seconds = Histogram(
            "lookalike_event_commit_seconds",
            "Freshness, first half: from an event's time (its occurred_at, else when the "
            "queue took it) to the catalog commit that applied it (in the consumer).",
            buckets=FRESHNESS_BUCKETS,
            registry=r,
        )
        self.commit_searchable_seconds = Histogram(
            "lookalike_commit_searchable_seconds",
            "Freshness, second half: from a catalog commit to its changes being searchable "
            "in this process's index (each server that applies the change log).",
            buckets=FRESHNESS_BUCKETS,
            registry=r,
        )
        self.ranker_fallbacks = Counter(
            "lookalike_ranker_fallbacks",
            "Searches the hand-weighted ranker ordered because the asked-for ranker's model "
            "was missing, corrupt or failed, by the ranker asked for.",
            ["ranker"],
            registry=r,
        )
        self.quality = {
            name: Gauge(
                f"lookalike_quality_{name}",
                f"{label} of the searches of the last 24 hours, by A/B arm (all = every "
                "search), recomputed every quality_refresh_interval_s.",
                ["arm"],
                registry=r,
                multiprocess_mode="livemax",  # every worker computes the same figures
            )
            for name, label in (
                ("searches", "Logged searches"),
                ("ctr", "Click-through rate (share of searches with an event)"),
                ("mrr", "Mean reciprocal rank of the first event"),
                ("ndcg", "NDCG@10 of the order shown, events as gains"),
            )
        }
        self.index_vectors = Gauge(
            "lookalike_index_vectors",
            "Vectors in the search index (with several workers, the largest of their counts).",
            registry=r,
            multiprocess_mode="livemax",
        )
        self.processes = Gauge(
            "lookalike_processes",
            "Processes reporting into these metrics (the workers of `lookalike serve`).",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.processes.set(1)
        for query_type in QUERY_TYPES:  # present from the start, so rates work at once
            self.search_seconds.labels(query_type)

    def set_quality(self, arm: str, **values: float | None) -> None:
        """The quality gauges of one arm (a None value leaves its gauge as it was)."""
        for name, value in values.items():
            if value is not None:
                self.quality[name].labels(arm).set(value)

    def time_searchable(self, live: Watched) -> Watched:
        """Time each catalog commit the live index makes searchable (freshness, second
        half); returns the index."""

        def observe(commit_times: Any) -> None:  # a numpy array of commit times
            now = time.time()
            for committed in commit_times.tolist():
                self.commit_searchable_seconds.observe(max(now - committed, 0.0))

        live.on_applied = observe
        return live

    def observe_stages(self, query_type: str, timings_ms: dict[str, float]) -> None:
        """Record a search's per-stage times (`timings_ms` keys as in STAGE_NAMES; other
        keys are not stages and are left out, so the label set stays fixed)."""
        for key, spent in timings_ms.items():
            stage = STAGE_NAMES.get(key)
            if stage is not None:
                self.search_stage_seconds.labels(query_type, stage).observe(spent / 1000)

    def watch_index(self, size: Callable[[], int]) -> None:
        """Report the index size read from `size` (the live index, when scraped)."""
        self._watch(self.index_vectors, size)

    def _watch(self, gauge: Gauge, read: Callable[[], float]) -> None:
        if self.multiprocess:
            self._gauges.append((gauge, read))
        else:
            gauge.set_function(read)

    def collect_from(
        self, collect: Callable[[], Iterable[Metric]], gauge_mode: str = "livemax"
    ) -> None:
        """Register a callback that yields metric families at each scrape. In multiprocess
        mode its counters are summed over processes and its gauges merged by `gauge_mode`
        (a prometheus_client multiprocess mode: `livesum`, `livemax`, ...)."""
        if self.multiprocess:
            self._callbacks.append((collect, gauge_mode))
        else:
            self.registry.register(_Callback(collect))

    # --- multiprocess mode ---------------------------------------------------------------
    def publish(self) -> None:
        """Copy this process's live values into the shared files (multiprocess mode)."""
        if not self.multiprocess:
            return
        for gauge, read in self._gauges:
            try:
                gauge.set(read())
            except Exception:  # a metric must never break what it measures
                log.exception("reading a gauge's value failed")
        for collect, gauge_mode in self._callbacks:
            try:
                families = list(collect())
            except Exception:
                log.exception("a metrics callback failed")
                continue
            for family in families:
                self._mirror(family, gauge_mode)

    def _mirror(self, family: Metric, gauge_mode: str) -> None:
        """Write a collected family's samples through file-backed metrics of its name."""
        if family.type not in ("counter", "gauge"):
            return
        for sample in family.samples:
            if family.type == "counter" and not sample.name.endswith("_total"):
                continue  # `_created`: not kept in multiprocess mode
            labels = tuple(sorted(sample.labels))
            metric = self._mirrors.get(family.name)
            if metric is None:
                kind: Any = Counter if family.type == "counter" else Gauge
                options = {"multiprocess_mode": gauge_mode} if kind is Gauge else {}
                metric = kind(family.name, family.documentation, labels, registry=None, **options)
                self._mirrors[family.name] = metric
            child = metric.labels(**sample.labels) if labels else metric
            if family.type == "gauge":
                child.set(sample.value)
                continue
            # Counters: add what grew since the last publish (a process's own count).
            key = (family.name, tuple(sample.labels[k] for k in labels))
            grown = sample.value - self._published.get(key, 0.0)
            if grown > 0:
                child.inc(grown)
            self._published[key] = sample.value

    def _publish_for_scrape(self) -> Iterable[Metric]:
        self.publish()
        return []

    def _forget_dead_processes(self) -> None:
        """Drop the live gauges of workers killed before they could (their counters stay:
        what they counted happened)."""
        if self.directory is None or not self.directory.is_dir():
            return
        for path in self.directory.iterdir():
            match = _LIVE_GAUGE_FILE.fullmatch(path.name)
            if match and not _alive(int(match.group(1))):
                mark_process_dead(int(match.group(1)), str(self.directory))

    def close(self) -> None:
        """This process stops reporting: its live gauges leave the merged figures."""
        if self.multiprocess:
            mark_process_dead(os.getpid(), str(self.directory) if self.directory else None)

    def watch_caches(self, caches: Sequence[Cache]) -> None:
        """Export the caches' hit, miss and error counters, labelled by cache name."""

        def collect() -> Iterable[Metric]:
            stats = {cache.name: cache.stats() for cache in caches}
            for field, doc in (
                ("hits", "Cache lookups answered from the cache."),
                ("misses", "Cache lookups that found nothing (the value was computed)."),
                ("errors", "Cache backend failures (answered as misses)."),
            ):
                family = CounterMetricFamily(f"lookalike_cache_{field}", doc, labels=["cache"])
                for name, stat in stats.items():
                    family.add_metric([name], getattr(stat, field))
                yield family
            # In-process caches know their size (shared ones, e.g. Redis, live elsewhere):
            # the memory they hold grows to their bound by design, not by a leak.
            sizes = {c.name: c.size_bytes for c in caches if hasattr(c, "size_bytes")}
            if sizes:
                gauge = GaugeMetricFamily(
                    "lookalike_cache_bytes",
                    "Bytes held by an in-process cache (keys, values, per-entry overhead).",
                    labels=["cache"],
                )
                for name, size in sizes.items():
                    gauge.add_metric([name], size)
                yield gauge

        self.collect_from(collect, gauge_mode="livesum")  # memory: each worker its own caches


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


class _Callback(Collector):
    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()
