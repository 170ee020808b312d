"""Filtered search: recall@k and latency against brute force, by filter selectivity.

    PYTHONPATH=src python benchmarks/filtered_search.py            # 100k x 256-d, ~3 min
    PYTHONPATH=src python benchmarks/filtered_search.py --n 20000  # a quick look

Synthetic clustered, L2-normalised vectors go into a real SQLite catalog with a price
drawn uniformly from [0, 1000); a `price <= p` filter then matches a known fraction of
the items (50%, 5%, 0.5%, 0.05%), independently of the vectors. Each method answers the
same queries (perturbed catalog vectors); recall@k is measured against brute force over
the matching items, computed in the same run:

* brute force   numpy over the matching vectors held in memory (the reference)
* top-100 post  HNSW top-100 without the filter, then filtered (what not to do)
* auto          Lookalike's SearchService on an HNSW index, strategy chosen by selectivity
* ann           the same, every filter forced through ANN + post-filter + widening
* exact         the same, every filter forced through exact subset scoring
* flat auto     Lookalike's SearchService on the exact flat index

Latency covers everything a query does after encoding: SQLite count / id / row reads,
index search, post-filtering. The HNSW index is built here (FAISS IndexHNSWFlat in an
IndexIDMap, efSearch raised to k per query) so the filtered ANN path can be measured
before an HNSW family lands in `index/`.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np
from tqdm import tqdm

from lookalike.catalog.base import Product, ProductFilter, ProductWrite
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.config import Settings
from lookalike.index.base import IndexMeta
from lookalike.index.faiss_index import FaissIndex, FlatIndex
from lookalike.index.live import LiveIndex
from lookalike.search import Reranker, RerankWeights, SearchService

SELECTIVITIES = (0.5, 0.05, 0.005, 0.0005)
PRICE_TOP = 1000.0
MODEL_ID = "synthetic"
SIMILARITY_ONLY = Reranker(RerankWeights())


class BenchHNSW(FaissIndex):
    """HNSW for this benchmark; efSearch grows with k, or HNSW returns fewer than k ids."""

    kind: ClassVar[str] = "hnsw-bench"

    def _build(self, dim: int, params: dict[str, Any]) -> Any:
        hnsw = faiss.IndexHNSWFlat(dim, params["M"], faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = params["ef_construction"]
        return faiss.IndexIDMap(hnsw)

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        if allowed_ids is not None:
            raise NotImplementedError("the benchmark's HNSW takes no selector")
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        params = faiss.SearchParametersHNSW(efSearch=max(self.meta.params["ef_search"], k))
        with self._lock.read():
            return self._index.search(queries, k, params=params)


def clustered_vectors(n: int, dim: int, clusters: int, rng: np.random.Generator) -> np.ndarray:
    centres = rng.standard_normal((clusters, dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    members = rng.integers(0, clusters, n)
    vectors = centres[members] + 0.08 * rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def build_catalog(path: Path, vectors: np.ndarray, prices: np.ndarray) -> SQLiteCatalog:
    catalog = SQLiteCatalog(path)
    batch = 5_000
    with tqdm(total=len(vectors), desc="catalog", unit="item") as bar:
        for start in range(0, len(vectors), batch):
            catalog.upsert(
                [
                    ProductWrite(
                        Product(
                            id=f"p{i}",
                            category=f"c{i % 50}",
                            price=float(prices[i]),
                            model_id=MODEL_ID,
                        ),
                        vectors[i],
                    )
                    for i in range(start, min(start + batch, len(vectors)))
                ]
            )
            bar.update(min(batch, len(vectors) - start))
    return catalog


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="catalog size")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--clusters", type=int, default=200)
    parser.add_argument("--queries", type=int, default=50, help="queries per selectivity")
    parser.add_argument("--k", type=int, default=20, help="results per query (recall@k)")
    parser.add_argument("--hnsw-m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=64)
    parser.add_argument("--ef-search", type=int, default=64)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="FAISS threads; 1 measures single-query latency without OpenMP contention",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temp dir")
    args = parser.parse_args()

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    vectors = clustered_vectors(args.n, args.dim, args.clusters, rng)
    prices = np.floor(rng.uniform(0, PRICE_TOP, args.n) * 100) / 100
    workdir = args.data_dir or Path(tempfile.mkdtemp(prefix="lookalike-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    catalog = build_catalog(workdir / "catalog.db", vectors, prices)
    catalog_s = time.perf_counter() - started
    ids, stored = next(catalog.iter_embeddings(batch_size=args.n, model_id=MODEL_ID))
    # Vector ids follow insertion order, so row i of `vectors` is product p{i}.
    if not np.array_equal(stored, vectors):
        raise SystemExit("catalog embeddings are not in insertion order")
    row_of_id = {int(v): row for row, v in enumerate(ids)}

    started = time.perf_counter()
    hnsw = BenchHNSW(
        IndexMeta(
            BenchHNSW.kind,
            args.dim,
            MODEL_ID,
            params={
                "M": args.hnsw_m,
                "ef_construction": args.ef_construction,
                "ef_search": args.ef_search,
            },
        ),
        None,
    )
    for start in tqdm(range(0, args.n, 10_000), desc="hnsw", unit="batch"):
        hnsw.add(ids[start : start + 10_000], stored[start : start + 10_000])
    hnsw_s = time.perf_counter() - started
    flat = FlatIndex(IndexMeta("flat", args.dim, MODEL_ID), None)
    flat.add(ids, stored)
    for index in (hnsw, flat):
        index.meta.watermark = catalog.log_head()

    def service(index: FaissIndex, **overrides: Any) -> SearchService:
        return SearchService(catalog, LiveIndex(index, catalog), Settings(**overrides))

    methods = {
        "auto": service(hnsw),
        "ann": service(hnsw, filter_exact_max_items=0),
        "exact": service(hnsw, filter_exact_max_items=10**9),
        "flat auto": service(flat),
    }
    query_rows = rng.integers(0, args.n, args.queries)
    queries = vectors[query_rows] + 0.05 * rng.standard_normal((args.queries, args.dim)).astype(
        np.float32
    )
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)

    rows: list[tuple] = []
    for selectivity in SELECTIVITIES:
        price_max = PRICE_TOP * selectivity
        product_filter = ProductFilter(price_max=price_max)
        mask = prices <= price_max
        matching = int(mask.sum())
        truth: list[set[int]] = []
        brute_ms: list[float] = []
        for query in queries:
            t = time.perf_counter()
            subset = np.flatnonzero(mask)
            sims = vectors[subset] @ query
            top = subset[np.argsort(-sims)[: args.k]]
            brute_ms.append((time.perf_counter() - t) * 1000)
            truth.append(set(top.tolist()))
        wanted = min(args.k, matching)
        rows.append((selectivity, matching, "brute force", 1.0, brute_ms, 1.0, "numpy, in RAM"))

        naive_ms, naive_recall, naive_full = [], [], []
        for query, expected in zip(queries, truth, strict=True):
            t = time.perf_counter()
            _, found = hnsw.search(query, 100)
            kept = [row_of_id[int(v)] for v in found[0] if v >= 0 and mask[row_of_id[int(v)]]]
            kept = kept[: args.k]
            naive_ms.append((time.perf_counter() - t) * 1000)
            naive_recall.append(len(set(kept) & expected) / wanted)
            naive_full.append(len(kept) == wanted)
        rows.append(
            (
                selectivity,
                matching,
                "top-100 post",
                float(np.mean(naive_recall)),
                naive_ms,
                float(np.mean(naive_full)),
                "HNSW, filter after",
            )
        )

        for name, svc in methods.items():
            latencies, recalls, full, strategies = [], [], [], set()
            for query, expected in zip(queries, truth, strict=True):
                t = time.perf_counter()
                results = svc.by_vector(query, args.k, product_filter, rerank=SIMILARITY_ONLY)
                latencies.append((time.perf_counter() - t) * 1000)
                got = {int(h.product.id[1:]) for h in results.hits}
                recalls.append(len(got & expected) / wanted)
                full.append(len(results.hits) == wanted)
                strategies.add(results.strategy)
            rows.append(
                (
                    selectivity,
                    matching,
                    name,
                    float(np.mean(recalls)),
                    latencies,
                    float(np.mean(full)),
                    "/".join(sorted(strategies)),
                )
            )

    print()
    print(
        f"{args.n:,} items x {args.dim}-d ({args.clusters} clusters), {args.queries} queries "
        f"per selectivity, k={args.k}; HNSW M={args.hnsw_m} efConstruction="
        f"{args.ef_construction} efSearch=max({args.ef_search}, k); defaults: "
        f"filter_exact_max_items={Settings().filter_exact_max_items}, "
        f"filter_oversample={Settings().filter_oversample}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"faiss {faiss.__version__} ({args.threads} thread); "
        f"catalog load {catalog_s:.0f} s, HNSW build {hnsw_s:.0f} s"
    )
    print()
    print("| selectivity | matching | method | recall@k | full lists | p50 ms | p95 ms | path |")
    print("|---|---|---|---|---|---|---|---|")
    for selectivity, matching, name, recall, latencies, full, note in rows:
        print(
            f"| {selectivity:.2%} | {matching:,} | {name} | {recall:.3f} | {full:.0%} | "
            f"{percentile(latencies, 50):.2f} | {percentile(latencies, 95):.2f} | {note} |"
        )
    catalog.close()


if __name__ == "__main__":
    main()
