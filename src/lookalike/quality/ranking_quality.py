"""Ranking quality from the logs, by UTC day and by A/B arm, with 95% intervals: what
`lookalike report`, the report page and the Prometheus gauges show.

Per search, from the events joined to its logged hits (the logged position counts):

- CTR: whether it got any event (click, add-to-cart, purchase).
- MRR: 1 / position of its first event, over searches with one.
- NDCG@10: of the order shown, with gain `2**grade - 1` per hit (click 1, add-to-cart 3,
  purchase 7), over searches with an event.

Intervals are the normal approximation (mean +- 1.96 standard errors over searches).
Arm "all" is every search of the day; "control" and "candidate" are the sessions of a
running experiment (`ranker_candidate`). Searches logged before feature logging existed
(no logged hits) count in the daily report, not here.
"""

from __future__ import annotations

import math
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from lookalike.catalog.base import Catalog
from lookalike.catalog.logs import EVENT_GRADES, LoggedSearch

DAY_S = 86_400
ALL = "all"
NDCG_AT = 10


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Interval | None:
        if not values:
            return None
        data = np.asarray(values, dtype=np.float64)
        mean = float(data.mean())
        half = 1.96 * float(data.std(ddof=1)) / math.sqrt(len(data)) if len(data) > 1 else 0.0
        return cls(mean, mean - half, mean + half)

    @classmethod
    def of_counts(cls, successes: int, n: int) -> Interval | None:
        """`of` a list of `n` zeros and ones, `successes` of them ones, without the list."""
        if n == 0:
            return None
        mean = successes / n
        if n == 1:
            return cls(mean, mean, mean)
        variance = max(successes - n * mean * mean, 0.0) / (n - 1)
        half = 1.96 * math.sqrt(variance) / math.sqrt(n)
        return cls(mean, mean - half, mean + half)


@dataclass(frozen=True)
class ArmQuality:
    day: str  # UTC date, or "all" for the whole window
    arm: str  # "all", "control", "candidate"
    rankers: str  # the rankers that served it (most searches first)
    searches: int
    ctr: Interval | None
    mrr: Interval | None
    ndcg: Interval | None

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SearchOutcome:
    day: str
    arm: str | None
    ranker: str
    clicked: bool
    reciprocal_rank: float | None
    ndcg: float | None


def outcome(search: LoggedSearch) -> SearchOutcome:
    gains: dict[int, float] = {}
    for event in search.events:
        if event.position > 0:
            gain = 2.0 ** EVENT_GRADES.get(event.kind, 1) - 1
            gains[event.position] = max(gains.get(event.position, 0.0), gain)
    day = time.strftime("%Y-%m-%d", time.gmtime(search.ts))
    ranker = search.ranker or "-"
    if not gains:
        return SearchOutcome(day, search.arm, ranker, False, None, None)
    dcg = sum(g / math.log2(p + 1) for p, g in gains.items() if p <= NDCG_AT)
    ideal = sorted(gains.values(), reverse=True)[:NDCG_AT]
    idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
    return SearchOutcome(day, search.arm, ranker, True, 1 / min(gains), dcg / idcg)


def counts(search: LoggedSearch) -> bool:
    """Whether a search counts here: logged with its hits (by a ranker that logs them)."""
    return bool(search.result_count and (search.feature_names or search.ranker))


def ranking_quality(catalog: Catalog, since_ts: float, until_ts: float) -> list[ArmQuality]:
    """Rows per (day, arm), then per arm over the window (day "all"); oldest day first."""
    outcomes = [
        outcome(s)
        for s in catalog.logged_searches(since_ts, until_ts, with_hits=False)
        if counts(s)
    ]
    groups: dict[tuple[str, str], list[SearchOutcome]] = defaultdict(list)
    for item in outcomes:
        for arm in {ALL, item.arm or ALL}:
            groups[(item.day, arm)].append(item)
            groups[(ALL, arm)].append(item)
    order = {ALL: 0, "control": 1, "candidate": 2}
    keys = sorted(groups, key=lambda k: (k[0] == ALL, k[0], order.get(k[1], 3), k[1]))
    return [_summarise(day, arm, groups[(day, arm)]) for day, arm in keys]


def _summarise(day: str, arm: str, items: list[SearchOutcome]) -> ArmQuality:
    rankers = Counter(item.ranker for item in items)
    clicked = [item for item in items if item.clicked]
    return ArmQuality(
        day,
        arm,
        ", ".join(name for name, _ in rankers.most_common(3)),
        len(items),
        Interval.of([float(item.clicked) for item in items]),
        Interval.of([item.reciprocal_rank or 0.0 for item in clicked]),
        Interval.of([item.ndcg or 0.0 for item in clicked]),
    )


def format_ranking_quality(rows: list[ArmQuality]) -> str:
    lines = [
        f"{'day':<11} {'arm':<10} {'searches':>8}  {'CTR [95% CI]':<22} {'MRR [95% CI]':<22} "
        f"{'NDCG@10 [95% CI]':<22} ranker"
    ]
    for row in rows:
        lines.append(
            f"{row.day:<11} {row.arm:<10} {row.searches:>8}  {_interval(row.ctr):<22} "
            f"{_interval(row.mrr):<22} {_interval(row.ndcg):<22} {row.rankers}"
        )
    return "\n".join(lines)


def _interval(value: Interval | None) -> str:
    if value is None:
        return "-"
    return f"{value.mean:.3f} [{value.low:.3f}, {value.high:.3f}]"
