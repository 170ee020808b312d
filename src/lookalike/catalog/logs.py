"""Search and click logs: what the API records per search and per click, and the per-day
sums `lookalike report` turns into CTR, MRR and diversity.

The records live in the catalog's database (tables `search_log` and `click_log`, made by the
migration `0004_search_and_click_logs`), written in batches by `quality.SearchLogger`.
The tables are built to grow by later migrations without breaking readers: new facts of a
search (a hashed session id, ranker and model versions) become nullable columns; per-hit
features and positions a table keyed by (search_id, position); add-to-cart or purchase
events a kind column on clicks whose default is `click`; pruning by age uses the `ts`
columns (`search_log_ts` is indexed). A new field here gets a default, so callers that do
not know it keep working.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SearchRecord:
    search_id: str
    ts: float
    query_type: str  # image, text, hybrid
    product_ids: tuple[str, ...]  # the results, best first
    categories: tuple[str | None, ...]  # their categories, for diversity
    total_found: int
    latency_ms: float


@dataclass(frozen=True)
class ClickRecord:
    search_id: str
    product_id: str
    position: int  # 1 = the first result
    ts: float


@dataclass(frozen=True)
class DayTotals:
    """Sums for one UTC day, from which rates are computed (and combined across days)."""

    day: str
    searches: int
    clicks: int
    clicked_searches: int
    reciprocal_rank_sum: float  # of each clicked search's first click
    diversity_sum: float  # distinct categories / results with one, per search
    diversity_searches: int
    results: int  # results shown, all searches together
