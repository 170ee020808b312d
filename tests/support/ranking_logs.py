"""Seeded synthetic search logs with a known click model, for the ranker-training tests.

Each search shows `k` hits with random feature rows (FEATURES order) in the logging
ranker's order (similarity); a share of searches shows them in random order instead
(`explored`). A shopper clicks a hit when they look at its slot (`examine(position)`) and
like it (`likes(row)`, the preference the test hides or reveals); with `top_click` the
first slot is clicked that often whatever it holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lookalike.catalog import ClickRecord, LoggedEvent, LoggedHit, LoggedSearch, SearchRecord
from lookalike.search.ranking import FEATURES

T0 = 1_800_000_000.0
COLUMN = {name: i for i, name in enumerate(FEATURES)}


@dataclass(frozen=True)
class ClickModel:
    likes: Callable[[np.ndarray], np.ndarray]  # (n, FEATURES) rows -> P(click | looked at)
    examine: Callable[[int], float] = lambda position: 1.0 / position
    top_click: float = 0.0  # slot 1 clicked this often regardless of what it holds


def random_rows(rng: np.random.Generator, k: int) -> np.ndarray:
    rows = np.zeros((k, len(FEATURES)))
    rows[:, COLUMN["similarity"]] = rng.uniform(0.3, 0.9, k)
    for name in ("popularity", "rating", "conversion", "freshness", "category_agreement"):
        rows[:, COLUMN[name]] = rng.uniform(0, 1, k)
    rows[:, COLUMN["brand_agreement"]] = rng.uniform(0, 0.5, k)
    rows[:, COLUMN["price_log"]] = rng.uniform(2, 5, k)
    rows[:, COLUMN["price_vs_pool"]] = rng.normal(0, 0.5, k)
    rows[:, COLUMN["price_in_filter"]] = -1.0
    rows[:, COLUMN["similarity_gap"]] = rows[:, 0].max() - rows[:, 0]
    rows[:, COLUMN["query_image"]] = 1.0
    return rows


def simulate(
    n: int,
    model: ClickModel,
    *,
    seed: int = 0,
    k: int = 10,
    explore_share: float = 0.2,
    start: float = T0,
    step_s: float = 10.0,
) -> list[LoggedSearch]:
    rng = np.random.default_rng(seed)
    out = []
    for s in range(n):
        rows = random_rows(rng, k)
        order = np.argsort(-rows[:, 0], kind="stable")
        explored = k if rng.random() < explore_share else 0
        if explored:
            order = rng.permutation(k)
        shown = rows[order]
        liked = model.likes(shown)
        events = []
        for position in range(1, k + 1):
            top = position == 1 and rng.random() < model.top_click
            looked = rng.random() < model.examine(position)
            if top or (looked and rng.random() < liked[position - 1]):
                events.append(LoggedEvent(f"s{s}-p{order[position - 1]}", position, "click", 0))
        hits = tuple(
            LoggedHit(p + 1, f"s{s}-p{order[p]}", float(shown[p, 0]), tuple(shown[p]))
            for p in range(k)
        )
        ts = start + s * step_s
        out.append(
            LoggedSearch(
                f"s{s:06d}",
                ts,
                "image",
                k,
                f"session-{s % 97}",
                "similarity@0",
                None,
                explored,
                FEATURES,
                hits,
                tuple(LoggedEvent(e.product_id, e.position, e.kind, ts + 1) for e in events),
            )
        )
    return out


def as_records(searches: list[LoggedSearch]) -> tuple[list[SearchRecord], list[ClickRecord]]:
    """The same log as the API writes it (for tests that go through a catalog)."""
    records, clicks = [], []
    for search in searches:
        records.append(
            SearchRecord(
                search.search_id,
                search.ts,
                search.query_type,
                tuple(h.product_id for h in search.hits),
                ("x",) * len(search.hits),
                total_found=100,
                latency_ms=5.0,
                session=search.session,
                ranker=search.ranker,
                model_id="synthetic",
                explored=search.explored,
                feature_names=search.feature_names,
                similarities=tuple(h.similarity for h in search.hits),
                features=tuple(h.features for h in search.hits),
            )
        )
        clicks.extend(
            ClickRecord(search.search_id, e.product_id, e.position, e.ts, e.kind)
            for e in search.events
        )
    return records, clicks


RATING_LOVERS = ClickModel(likes=lambda rows: np.where(rows[:, COLUMN["rating"]] > 0.5, 0.8, 0.05))


def small_model(version: str = "test-1", seed: int = 0) -> tuple[dict, str]:
    """(manifest, LightGBM text) of a real lambdarank model that learned to prefer
    well-rated hits, trained on a small synthetic log (unbiased: every slot looked at)."""
    from lookalike.learn import build_dataset, ipw_weights
    from lookalike.learn.lambdarank import LambdaRankParams, train_lambdarank
    from lookalike.learn.propensity import NO_CORRECTION
    from lookalike.search.ranking import MODEL_FORMAT, model_digest

    model = ClickModel(likes=RATING_LOVERS.likes, examine=lambda position: 1.0)
    data = build_dataset(simulate(400, model, seed=seed, explore_share=0.0))
    params = LambdaRankParams(rounds=30, num_leaves=4, seed=seed, threads=1)
    weights = ipw_weights(data, NO_CORRECTION)
    text = train_lambdarank(data, weights, None, None, params, progress=False).text
    manifest = {
        "format": MODEL_FORMAT,
        "version": version,
        "features": list(FEATURES),
        "model_sha256": model_digest(text),
    }
    return manifest, text
