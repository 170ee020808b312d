"""Filtered search on IVF-PQ at a million vectors: post-filtering vs the id-selector scan.

Uses the catalog and index that `end_to_end.py` builds (1M CLIP-like vectors, 50
categories of 2% each, IVF-PQ tuned to Recall@100 >= 0.95). For each query, one category:

    exact        brute force over the category's stored vectors (the ground truth)
    post-filter  top wanted / selectivity x oversample from the index, keep the matching
                 ones (what the search planner did for IVF-PQ before the selector scan)
    selector     the index scans only the category's ids, probing 1/selectivity x more
                 cells (`search(..., allowed_ids=...)`, what the planner does now)

    PYTHONPATH=src python benchmarks/ivfpq_filter.py --items 1000000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from end_to_end import CATEGORIES
from models import model_dirs

from lookalike.catalog import ProductFilter
from lookalike.config import Settings
from lookalike.engine import Engine


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--oversample", type=float, default=3.0)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "lookalike-bench"
    )
    args = parser.parse_args()
    data_dir = args.cache / f"e2e-{args.items}"
    dirs = model_dirs(args.cache, "ViT-B-32")
    settings = Settings(data_dir=data_dir, model_checkpoint=str(dirs["torch"]), device="cpu")
    queries = np.load(args.cache / "queries-1000.npy")[: args.queries].astype(np.float32)
    k = args.k
    with Engine(settings) as engine:
        index, catalog = engine.live_index.index, engine.catalog
        print(f"{args.items:,} vectors, {index.meta.kind} {index.meta.params}")
        print(f"load average {os.getloadavg()}, {args.queries} queries, k={k}\n")
        rows: dict[str, list[tuple[float, float]]] = {"post-filter": [], "selector": []}
        for n, query in enumerate(queries):
            members = catalog.filter_vector_ids(
                ProductFilter(categories=(CATEGORIES[n % len(CATEGORIES)],))
            )
            stored = catalog.embeddings_by_vector_ids(members, index.meta.model_id)
            matrix = np.stack([stored[int(i)] for i in members])
            truth = set(members[np.argsort(-(matrix @ query))[:k]].tolist())
            fetch = int(k / (len(members) / len(index)) * args.oversample)

            started = time.perf_counter()
            _, found = index.search(query[None], fetch)
            kept = found[0][np.isin(found[0], members)][:k]
            spent = (time.perf_counter() - started) * 1000
            rows["post-filter"].append((len(truth & set(kept.tolist())) / k, spent))

            started = time.perf_counter()
            _, found = index.search(query[None], k, allowed_ids=members)
            spent = (time.perf_counter() - started) * 1000
            rows["selector"].append((len(truth & set(found[0].tolist())) / k, spent))
        print(f"| method | recall@{k} | p50 ms | p99 ms |")
        print("|---|---|---|---|")
        for name, values in rows.items():
            recall = np.mean([r for r, _ in values])
            times = [t for _, t in values]
            p50, p99 = np.percentile(times, 50), np.percentile(times, 99)
            print(f"| {name} | {recall:.3f} | {p50:.1f} | {p99:.1f} |")


if __name__ == "__main__":
    main()
