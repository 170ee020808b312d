"""Prometheus metrics: every metric Lookalike exports, in one registry per Engine.

A registry per engine (not prometheus_client's global one) lets several apps or engines
live in one process, as tests do. The API serves it at `GET /metrics`; `lookalike consume
--metrics-port` serves the consumer's. Values read from live state (index size, cache
counters, consumer lag) are collected when scraped.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from lookalike.cache.base import Cache

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
QUERY_TYPES = ("image", "text", "hybrid")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.search_seconds = Histogram(
            "lookalike_search_seconds",
            "Search latency by query type (image, text, hybrid), from request to response.",
            ["type"],
            buckets=LATENCY_BUCKETS,
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
            "Stream events by outcome (applied, failed try, dead_lettered) and event type.",
            ["outcome", "type"],
            registry=r,
        )
        self.ranker_fallbacks = Counter(
            "lookalike_ranker_fallbacks",
            "Searches the hand-weighted ranker ordered because the asked-for ranker's model "
            "was missing, corrupt or failed, by the ranker asked for.",
            ["ranker"],
            registry=r,
        )
        self.index_vectors = Gauge(
            "lookalike_index_vectors", "Vectors in this process's search index.", registry=r
        )
        self.quality = {
            name: Gauge(
                f"lookalike_quality_{name}",
                f"{label} of the searches of the last 24 hours, by A/B arm (all = every "
                "search), recomputed every quality_refresh_interval_s.",
                ["arm"],
                registry=r,
            )
            for name, label in (
                ("searches", "Logged searches"),
                ("ctr", "Click-through rate (share of searches with an event)"),
                ("mrr", "Mean reciprocal rank of the first event"),
                ("ndcg", "NDCG@10 of the order shown, events as gains"),
            )
        }
        for query_type in QUERY_TYPES:  # present from the start, so rates work at once
            self.search_seconds.labels(query_type)

    def set_quality(self, arm: str, **values: float | None) -> None:
        """The quality gauges of one arm (a None value leaves its gauge as it was)."""
        for name, value in values.items():
            if value is not None:
                self.quality[name].labels(arm).set(value)

    def collect_from(self, collect: Callable[[], Iterable[Metric]]) -> None:
        """Register a callback that yields metric families at each scrape."""
        self.registry.register(_Callback(collect))

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

        self.collect_from(collect)


class _Callback(Collector):
    def __init__(self, collect: Callable[[], Iterable[Metric]]) -> None:
        self._collect = collect

    def collect(self) -> Iterable[Metric]:
        return self._collect()
