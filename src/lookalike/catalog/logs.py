"""Search and click logs: what the API records per search and per click, and the per-day
sums `lookalike report` turns into CTR, MRR and diversity.

The records live in the catalog's database (tables `search_log` and `click_log`, made by the
migration `0004_search_and_click_logs`), written in batches by `quality.SearchLogger`.
The tables are built to grow by later migrations without breaking readers: new facts of a
search (a hashed session id, ranker and model versions) become nullable columns; per-hit
features and positions a table keyed by (search_id, position); add-to-cart or purchase
events a kind column on clicks whose default is `click`; pruning by age uses the `ts`
columns (both indexed: `search_log_ts`, and `click_log_ts` from migration 0006). A new
field here gets a default, so callers that do not know it keep working.

A search id is 32 hex digits: the time it was made in milliseconds (12), then 80 random
bits. Unguessable, and a click can tell how recent the search it names claims to be.

`0007_ranking_logs` added what a ranker learns from: per search the hashed session, the
ranker (name@version), the encoder's model id, the A/B arm, how many top slots were shown
in random order (`explored`) and the feature names; per shown hit (`search_log_hits`,
keyed by search_id and position) its product, similarity and feature values as computed
when it was served; per event its kind (click, cart, purchase). Training joins events to
the hits by product on the server side: the logged position counts, not the client's.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

_MS_MASK = (1 << 48) - 1


def new_search_id(ts: float) -> str:
    """A fresh search id made at Unix time `ts`."""
    return f"{int(ts * 1000) & _MS_MASK:012x}{secrets.randbits(80):020x}"


def search_id_time(search_id: str) -> float | None:
    """The Unix time a search id says it was made at (None when it is not one of ours)."""
    try:
        return int(search_id[:12], 16) / 1000 if len(search_id) == 32 else None
    except ValueError:
        return None


# Events shoppers report on a result, by strength: the relevance grade training uses.
EVENT_GRADES = {"click": 1, "cart": 2, "purchase": 3}


@dataclass(frozen=True)
class SearchRecord:
    search_id: str
    ts: float
    query_type: str  # image, text, hybrid
    product_ids: tuple[str, ...]  # the results, best first
    categories: tuple[str | None, ...]  # their categories, for diversity
    total_found: int
    latency_ms: float
    session: str | None = None  # the shopper's session, hashed with the server's secret
    ranker: str | None = None  # name@version of the ranker that ordered the results
    model_id: str | None = None  # the encoder that made the query vector
    arm: str | None = None  # A/B arm ("control", "candidate"), None outside an experiment
    explored: int = 0  # top slots shown in random order (position-bias estimation); 0 = none
    feature_names: tuple[str, ...] = ()
    similarities: tuple[float, ...] = ()  # per result (product_ids order); empty = not logged
    features: tuple[tuple[float, ...], ...] = ()  # per result, in feature_names order


@dataclass(frozen=True)
class ClickRecord:
    search_id: str
    product_id: str
    position: int  # 1 = the first result
    ts: float
    kind: str = "click"  # a key of EVENT_GRADES


@dataclass(frozen=True)
class LoggedHit:
    position: int  # 1 = first shown
    product_id: str
    similarity: float
    features: tuple[float, ...]  # in the search's feature_names order


@dataclass(frozen=True)
class LoggedEvent:
    product_id: str
    position: int  # where the search log says the product was shown (0: it was not)
    kind: str
    ts: float


@dataclass(frozen=True)
class LoggedSearch:
    """One logged search read back with its hits and the events joined to them."""

    search_id: str
    ts: float
    query_type: str
    result_count: int
    session: str | None
    ranker: str | None
    arm: str | None
    explored: int
    feature_names: tuple[str, ...]
    hits: tuple[LoggedHit, ...]  # by position; empty when none were logged
    events: tuple[LoggedEvent, ...]

    def grades(self) -> dict[int, int]:
        """Position -> the strongest event's grade, for shown hits with an event."""
        out: dict[int, int] = {}
        for event in self.events:
            if event.position > 0:
                grade = EVENT_GRADES.get(event.kind, 1)
                out[event.position] = max(out.get(event.position, 0), grade)
        return out


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
