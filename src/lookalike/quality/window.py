"""The quality gauges' figures (CTR, MRR, NDCG@10 by A/B arm over the last 24 hours), kept
current by reading only what is new.

`ranking_quality` reads every logged search of its window into memory: right for a report
someone asks for, wrong for a server that refreshes its gauges every minute. Measured at
100 searches a second, a server's memory grew by ~9 MiB a minute that way (each refresh
held one more minute of searches than the last) and its CPU spiked with it; at the design's
10k QPS a day of searches would not fit at all. So a server keeps, per hour and arm, how
many searches counted and which rankers served them, reading only the searches logged
since its last refresh; the searches that got an event (a small share: CTR) are read again
each time, since an event can arrive long after its search. Figures equal
`ranking_quality`'s "all" rows over [the window's oldest whole hour, now - settle_s).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from lookalike.catalog.base import Catalog
from lookalike.quality.ranking_quality import ALL, ArmQuality, Interval, counts, outcome

HOUR_S = 3_600.0


@dataclass
class _Tally:
    searches: int = 0
    rankers: Counter[str] = field(default_factory=Counter)


class QualityWindow:
    """Not thread-safe: one refresher calls `refresh`."""

    def __init__(
        self,
        catalog: Catalog,
        window_s: float = 86_400.0,
        settle_s: float = 30.0,
        bucket_s: float = HOUR_S,
    ) -> None:
        self.catalog = catalog
        self.window_s = window_s
        # Searches reach the log a moment after they are answered (the logger writes once
        # a second, other processes too): read up to this long ago.
        self.settle_s = settle_s
        self.bucket_s = bucket_s
        self._read_until: float | None = None
        self._tallies: dict[int, dict[str, _Tally]] = defaultdict(lambda: defaultdict(_Tally))

    def refresh(self, now: float) -> list[ArmQuality]:
        """The window's rows by arm (day "all"), "all" first."""
        since, until = now - self.window_s, now - self.settle_s
        start = since if self._read_until is None else max(self._read_until, since)
        # A bucket at a time: a first refresh reads a day of searches an hour at a time.
        while start < until:
            end = min(until, (math.floor(start / self.bucket_s) + 1) * self.bucket_s)
            for search in self.catalog.logged_searches(start, end, with_hits=False):
                if counts(search):
                    bucket = self._tallies[math.floor(search.ts / self.bucket_s)]
                    for arm in {ALL, search.arm or ALL}:
                        bucket[arm].searches += 1
                        bucket[arm].rankers[search.ranker or "-"] += 1
            start = end
        self._read_until = max(until, self._read_until or until)
        oldest = math.floor(since / self.bucket_s)
        for gone in [b for b in self._tallies if b < oldest]:
            del self._tallies[gone]
        return self._rows(oldest * self.bucket_s, until)

    def _rows(self, since: float, until: float) -> list[ArmQuality]:
        totals: dict[str, _Tally] = defaultdict(_Tally)
        for bucket in self._tallies.values():
            for arm, tally in bucket.items():
                totals[arm].searches += tally.searches
                totals[arm].rankers.update(tally.rankers)
        rr: dict[str, list[float]] = defaultdict(list)
        ndcg: dict[str, list[float]] = defaultdict(list)
        for search in self.catalog.logged_searches(
            since, until, with_hits=False, with_events_only=True
        ):
            result = outcome(search)
            if counts(search) and result.clicked:
                for arm in {ALL, search.arm or ALL}:
                    rr[arm].append(result.reciprocal_rank or 0.0)
                    ndcg[arm].append(result.ndcg or 0.0)
        order = {ALL: 0, "control": 1, "candidate": 2}
        return [
            ArmQuality(
                ALL,
                arm,
                ", ".join(name for name, _ in totals[arm].rankers.most_common(3)),
                totals[arm].searches,
                Interval.of_counts(len(rr[arm]), totals[arm].searches),
                Interval.of(rr[arm]),
                Interval.of(ndcg[arm]),
            )
            for arm in sorted(totals, key=lambda a: (order.get(a, 3), a))
        ]
