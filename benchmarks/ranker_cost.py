"""Ranking cost per query: the learned ranker (features + LightGBM on one thread) beside the
hand-weighted ranker (the same features + a weighted sum), on pools of 100 candidates.

    PYTHONPATH=src:. python benchmarks/ranker_cost.py              # ~1 minute on 2 cores
    PYTHONPATH=src:. python benchmarks/ranker_cost.py --queries 300 --trees 100

The model is a real lambdarank model over every feature, trained here on a synthetic log
without early stopping so it has exactly `--trees` trees of up to 15 leaves (what
`lookalike train-ranker` makes at most: 300). Each query is one pool of candidates with
realistic attributes (popularity, rating, price, category, brand, published date); the
time is `Ranker.rank`, what the search pipeline calls: computing the features and scoring.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import numpy as np
from tests.support.ranking_logs import RATING_LOVERS, simulate

from lookalike.catalog.base import Product, ProductFilter
from lookalike.learn import build_dataset, ipw_weights
from lookalike.learn.lambdarank import LambdaRankParams, train_lambdarank
from lookalike.learn.propensity import NO_CORRECTION
from lookalike.search.ranking import (
    FEATURES,
    MODEL_FORMAT,
    HandWeightedRanker,
    LearnedRanker,
    RerankWeights,
    SignalScales,
    load_model,
    model_digest,
)
from lookalike.search.request import QueryContext
from lookalike.search.results import SearchHit

NOW = time.time()


def pools(n: int, size: int, rng: np.random.Generator) -> list[list[SearchHit]]:
    out = []
    for q in range(n):
        similarity = np.sort(rng.uniform(0.2, 0.9, size))[::-1]
        hits = []
        for i in range(size):
            product = Product(
                id=f"q{q}-{i}",
                category=f"c{rng.integers(5)}",
                brand=f"b{rng.integers(12)}",
                price=float(rng.uniform(5, 300)),
                attributes={
                    "popularity": int(rng.integers(0, 5000)),
                    "rating": round(float(rng.uniform(1, 5)), 1),
                    "published_at": NOW - float(rng.uniform(0, 200)) * 86_400,
                },
                created_at=NOW - 86_400,
            )
            hits.append(SearchHit(product, float(similarity[i]), float(similarity[i])))
        out.append(hits)
    return out


def timed(ranker, queries: list[list[SearchHit]], context: QueryContext) -> list[float]:
    ranker.rank(context, queries[0], NOW)  # warm up (LightGBM's first call allocates)
    times = []
    for hits in queries:
        started = time.perf_counter()
        ranker.rank(context, hits, NOW)
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--trees", type=int, default=300)
    args = parser.parse_args()

    data = build_dataset(simulate(2000, RATING_LOVERS, seed=0, explore_share=0.0))
    params = LambdaRankParams(rounds=args.trees, num_leaves=15, seed=0, threads=2)
    weights = ipw_weights(data, NO_CORRECTION)
    fitted = train_lambdarank(data, weights, None, None, params, progress=False)
    text, trees = fitted.text, fitted.rounds
    manifest = {
        "format": MODEL_FORMAT,
        "version": "bench",
        "features": list(FEATURES),
        "model_sha256": model_digest(text),
    }
    model = load_model(manifest, text)
    scales = SignalScales()
    hand = HandWeightedRanker(RerankWeights(0.05, 0.05, 0.0, 0.02), scales)
    learned = LearnedRanker(model, scales, hand)
    queries = pools(args.queries, args.candidates, np.random.default_rng(1))
    context = QueryContext("image", ProductFilter(price_max=150.0))

    rows = [("hand-weighted (baseline)", timed(hand, queries, context))]
    rows.append((f"learned, {trees} trees, 1 thread", timed(learned, queries, context)))
    features = [hand.rank(context, hits, NOW).features for hits in queries]
    predict = []
    for matrix in features:
        started = time.perf_counter()
        model.predict(matrix)
        predict.append((time.perf_counter() - started) * 1000)
    rows.append(("  of which LightGBM predict", predict))

    print(f"# {platform.processor() or platform.machine()}, {args.queries} queries")
    print(f"| ranker ({args.candidates} candidates per query) | p50 ms | p99 ms | mean ms |")
    print("|---|---|---|---|")
    for name, times in rows:
        p50 = statistics.median(times)
        p99 = float(np.percentile(times, 99))
        print(f"| {name} | {p50:.3f} | {p99:.3f} | {statistics.fmean(times):.3f} |")


if __name__ == "__main__":
    main()
