"""Daily search quality from the logs: click-through rate, mean reciprocal rank of the
first click, and how varied result pages are, each beside a baseline.

- CTR: share of searches with at least one click.
- MRR: mean of 1 / position of the first click over searches with a click (1 = people
  always clicked the top result). Baseline: results in random order, where the first
  click is equally likely at any of the n positions: (1 + 1/2 + ... + 1/n) / n.
- Diversity: distinct categories / results with a category, per search, averaged (1 =
  every result from another category). Baseline: a page of n items drawn at random from
  the catalog, from its category counts.

n is the mean number of results shown per search.

Beside them, `ranking_quality.py`'s rows: CTR, MRR and NDCG@10 with intervals by day and by
A/B arm, from the searches logged with their hits.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

from lookalike.catalog import Catalog, DayTotals
from lookalike.quality.ranking_quality import ArmQuality, format_ranking_quality, ranking_quality

DAY_S = 86_400


@dataclass(frozen=True)
class DayQuality:
    day: str  # UTC date, "all", or "baseline"
    searches: int
    clicks: int
    ctr: float | None
    mrr: float | None
    diversity: float | None


@dataclass(frozen=True)
class QualityReport:
    days: list[DayQuality]  # oldest first, then the "all" row
    baseline: DayQuality  # random order (MRR) and random pages (diversity)
    page_size: float  # mean results per search, the n of the baselines
    arms: list[ArmQuality] = field(default_factory=list)  # by day and A/B arm

    def to_dict(self) -> dict:
        return {
            "days": [asdict(day) for day in self.days],
            "baseline": asdict(self.baseline),
            "page_size": self.page_size,
            "arms": [row.to_dict() for row in self.arms],
        }


def quality_report(catalog: Catalog, days: int = 7, *, now: float | None = None) -> QualityReport:
    """One row per UTC day with searches in the last `days` days, an "all" row, and the
    baselines (from the catalog's products per category), all read through `catalog`."""
    now = time.time() if now is None else now
    today_start = now - now % DAY_S
    since = today_start - (days - 1) * DAY_S
    totals = catalog.daily_search_totals(since)
    category_counts = {
        facet["value"]: facet["count"] for facet in catalog.facets(limit=100_000)["category"]
    }
    rows = [_rates(day) for day in totals]
    searches = sum(t.searches for t in totals)
    page_size = sum(t.results for t in totals) / searches if searches else 0.0
    if totals:
        rows.append(
            _rates(
                DayTotals(
                    "all",
                    searches,
                    sum(t.clicks for t in totals),
                    sum(t.clicked_searches for t in totals),
                    sum(t.reciprocal_rank_sum for t in totals),
                    sum(t.diversity_sum for t in totals),
                    sum(t.diversity_searches for t in totals),
                    sum(t.results for t in totals),
                )
            )
        )
    n = max(round(page_size), 1)
    baseline = DayQuality(
        "baseline",
        0,
        0,
        None,
        sum(1 / k for k in range(1, n + 1)) / n,
        random_page_diversity(category_counts, n),
    )
    return QualityReport(rows, baseline, page_size, ranking_quality(catalog, since, now + 1))


def random_page_diversity(category_counts: Mapping[str | None, int], n: int) -> float | None:
    """Expected distinct categories / n for n items drawn at random (with replacement)
    from the products that have a category."""
    counts = [c for name, c in category_counts.items() if name is not None and c > 0]
    total = sum(counts)
    if not total or n < 1:
        return None
    expected_distinct = sum(1 - (1 - c / total) ** n for c in counts)
    return expected_distinct / n


def _rates(t: DayTotals) -> DayQuality:
    return DayQuality(
        day=t.day,
        searches=t.searches,
        clicks=t.clicks,
        ctr=t.clicked_searches / t.searches if t.searches else None,
        mrr=t.reciprocal_rank_sum / t.clicked_searches if t.clicked_searches else None,
        diversity=t.diversity_sum / t.diversity_searches if t.diversity_searches else None,
    )


def format_report(report: QualityReport) -> str:
    lines = [f"{'day':<12} {'searches':>9} {'clicks':>7} {'CTR':>7} {'MRR':>7} {'diversity':>10}"]
    for row in report.days:
        lines.append(
            f"{row.day:<12} {row.searches:>9} {row.clicks:>7} {_pct(row.ctr):>7} "
            f"{_num(row.mrr):>7} {_num(row.diversity):>10}"
        )
    b = report.baseline
    lines.append(
        f"{'baseline':<12} {'':>9} {'':>7} {'':>7} {_num(b.mrr):>7} {_num(b.diversity):>10}"
        f"   (random order / random page of {max(round(report.page_size), 1)})"
    )
    if report.arms:
        lines += ["", "ranking quality by day and A/B arm:", format_ranking_quality(report.arms)]
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"
