"""Filtered search: recall@k and latency against brute force, by filter selectivity.

    PYTHONPATH=src python benchmarks/filtered_search.py            # 100k x 256-d, ~5 min on 2 cores
    PYTHONPATH=src python benchmarks/filtered_search.py --n 20000  # a quick look
    PYTHONPATH=src python benchmarks/filtered_search.py --legacy   # + the strategy comparison

Each index kind of `index/` (flat, HNSW, IVF-PQ; `--kinds`) answers the same queries twice
in the same run, over the same data: **catalog** (the filter's count and matching ids from
SQLite, as before filter bitmaps) and **bitmaps** (`catalog/filter_bitmaps.py`: both from
memory, the ids handed to the index's selector). The summary table puts each filtered p50
beside the unfiltered p50 of the same index and path (`filtered / unfiltered QPS`, one
client: the inverse ratio of the latencies).

The rest (`--legacy`) compares filtering strategies on an HNSW built here:

Synthetic clustered, L2-normalised vectors go into a real SQLite catalog with a price
drawn uniformly from [0, 1000); a `price <= p` filter then matches a known fraction of
the items (50%, 5%, 0.5%, 0.05%), independently of the vectors. Each method answers the
same queries (perturbed catalog vectors); recall@k is measured against brute force over
the matching items, computed in the same run:

* brute force     numpy over the matching vectors held in memory (the reference)
* <kind> catalog  SearchPipeline on that index, filter evaluated by SQLite
* <kind> bitmaps  SearchPipeline on that index, filter evaluated by the bitmaps
* top-100 post    HNSW top-100 without the filter, then filtered (what not to do)
* auto            Lookalike's SearchPipeline on an HNSW index, strategy chosen by selectivity
* ann (forced)    ANN + post-filter + widening even where the planner would go exact
                  (skipped at 0.05%: k would be most of the index, seconds per query)
* exact (forced)  SearchPipeline scoring every filter's matches exactly
* flat auto       SearchPipeline on the exact flat index

The "none" rows (no filter) give the HNSW index's own recall at this efSearch: a filtered
ANN search cannot beat it.
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
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np
from tqdm import tqdm

from lookalike.catalog.base import Product, ProductFilter, ProductWrite
from lookalike.catalog.filter_bitmaps import FilterBitmaps
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.config import Settings
from lookalike.index.base import IndexMeta
from lookalike.index.faiss_index import FaissIndex, FlatIndex
from lookalike.index.hnsw import HnswIndex
from lookalike.index.ivfpq import IvfPqIndex
from lookalike.index.live import LiveIndex
from lookalike.search import HandWeightedRanker, RerankWeights, SearchPipeline
from lookalike.search.candidates import CandidateFinder, FilterPolicy, Plan

SELECTIVITIES = (0.5, 0.05, 0.005, 0.0005)
PRICE_TOP = 1000.0
MODEL_ID = "synthetic"
SIMILARITY_ONLY = HandWeightedRanker(RerankWeights())


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
    # Per-dimension noise 0.04 puts members of a cluster at cosine ~0.7 from each other.
    vectors = centres[members] + 0.04 * rng.standard_normal((n, dim)).astype(np.float32)
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


# A method answers (query, filter or None) with (result rows best first, path taken).
Method = Callable[[np.ndarray, ProductFilter | None], tuple[list[int], str]]


def build_index(
    kind: str, dim: int, ids: np.ndarray, stored: np.ndarray, catalog: SQLiteCatalog
) -> FaissIndex:
    """One of `index/`'s families with its default parameters, filled from the catalog."""
    if kind == "flat":
        index: FaissIndex = FlatIndex(IndexMeta("flat", dim, MODEL_ID), None)
    elif kind == "hnsw":
        index = HnswIndex(IndexMeta("hnsw", dim, MODEL_ID), None)
    else:
        nlist = max(16, min(1024, int(np.sqrt(len(ids)) * 2)))
        index = IvfPqIndex(
            IndexMeta("ivfpq", dim, MODEL_ID, params={"nlist": nlist}),
            None,
            vectors=lambda found: catalog.embeddings_by_vector_ids(found, MODEL_ID),
        )
        sample = np.random.default_rng(1).choice(len(ids), min(len(ids), nlist * 40), False)
        index.train(stored[np.sort(sample)])
    for start in tqdm(range(0, len(ids), 10_000), desc=kind, unit="batch"):
        index.add(ids[start : start + 10_000], stored[start : start + 10_000])
    index.meta.watermark = catalog.log_head()
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="catalog size")
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--clusters", type=int, default=1_000)
    parser.add_argument("--queries", type=int, default=30, help="queries per selectivity")
    parser.add_argument("--k", type=int, default=20, help="results per query (recall@k)")
    parser.add_argument(
        "--kinds", default="flat,hnsw,ivfpq", help="index families compared, catalog vs bitmaps"
    )
    parser.add_argument(
        "--legacy", action="store_true", help="also the strategy comparison on a bench HNSW"
    )
    parser.add_argument("--hnsw-m", type=int, default=16)
    parser.add_argument("--ef-construction", type=int, default=80)
    parser.add_argument("--ef-search", type=int, default=64)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="FAISS threads while querying; 1 measures single-query latency without OpenMP "
        "contention (the build uses every core)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data-dir", type=Path, default=None, help="default: a temp dir")
    args = parser.parse_args()

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
    bitmaps = FilterBitmaps.from_catalog(catalog, MODEL_ID)
    bitmaps_s = time.perf_counter() - started
    kinds = [k for k in args.kinds.split(",") if k]
    indexes = {kind: build_index(kind, args.dim, ids, stored, catalog) for kind in kinds}
    hnsw_s = 0.0
    if args.legacy:
        started = time.perf_counter()
        params = {"M": args.hnsw_m, "ef_construction": args.ef_construction}
        params["ef_search"] = args.ef_search
        hnsw = BenchHNSW(IndexMeta(BenchHNSW.kind, args.dim, MODEL_ID, params=params), None)
        for start in tqdm(range(0, args.n, 10_000), desc="bench hnsw", unit="batch"):
            hnsw.add(ids[start : start + 10_000], stored[start : start + 10_000])
        hnsw_s = time.perf_counter() - started
        hnsw.meta.watermark = catalog.log_head()
        flat = indexes.get("flat") or build_index("flat", args.dim, ids, stored, catalog)
    faiss.omp_set_num_threads(args.threads)

    def through_service(
        index: FaissIndex, filters: FilterBitmaps | None = None, **overrides: Any
    ) -> Method:
        live = LiveIndex(index, catalog, filters=filters)
        svc = SearchPipeline(catalog, live, Settings(**overrides))

        def run(query: np.ndarray, product_filter: ProductFilter | None) -> tuple[list, str]:
            results = svc.by_vector(query, args.k, product_filter, rerank=SIMILARITY_ONLY)
            return [int(h.product.id[1:]) for h in results.hits], results.strategy

        return run

    methods: dict[str, Method] = {}
    for kind, index in indexes.items():
        methods[f"{kind} catalog"] = through_service(index)
        methods[f"{kind} bitmaps"] = through_service(index, bitmaps)
    if args.legacy:

        def forced_ann(query: np.ndarray, product_filter: ProductFilter | None) -> tuple[list, str]:
            """ANN + post-filter + widening even where the planner would score exactly."""
            finder = CandidateFinder(catalog, hnsw, FilterPolicy.from_settings(Settings()))
            plan = finder.plan(product_filter, args.k)
            plan = Plan("ann", plan.matching, plan.selectivity)
            found = finder.find(query, args.k, product_filter, plan)
            return [int(found.products[int(i)].id[1:]) for i in found.ids], found.path

        def top100_post(
            query: np.ndarray, product_filter: ProductFilter | None
        ) -> tuple[list, str]:
            _, found = hnsw.search(query, 100)
            rows = [row_of_id[int(v)] for v in found[0] if v >= 0]
            if product_filter is not None:
                rows = [r for r in rows if product_filter.matches(_product(r))]
            return rows[: args.k], "HNSW top-100, then filter"

        methods.update(
            {
                "top-100 post": top100_post,
                "auto": through_service(hnsw),
                "ann (forced)": forced_ann,
                "exact (forced)": through_service(hnsw, filter_exact_max_items=10**9),
                "flat auto": through_service(flat),
            }
        )

    def _product(row: int) -> Product:
        return Product(id=f"p{row}", category=f"c{row % 50}", price=float(prices[row]))

    query_rows = rng.integers(0, args.n, args.queries)
    noise = 0.02 * rng.standard_normal((args.queries, args.dim)).astype(np.float32)
    queries = vectors[query_rows] + noise
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    categories = np.arange(args.n) % 50

    cases: list[tuple[str, ProductFilter | None, np.ndarray]] = [
        ("none", None, np.ones(args.n, dtype=bool))
    ]
    for selectivity in SELECTIVITIES:
        price_max = PRICE_TOP * selectivity
        cases.append(
            (f"price {selectivity:.2%}", ProductFilter(price_max=price_max), prices <= price_max)
        )
    # A category (2%) cut by a price ceiling: two fields intersected.
    cases.append(
        (
            "category+price",
            ProductFilter(categories=("c7",), price_max=PRICE_TOP / 4),
            (categories == 7) & (prices <= PRICE_TOP / 4),
        )
    )

    rows: list[tuple] = []
    for label, product_filter, mask in tqdm(cases, desc="filters", unit="filter"):
        unfiltered = product_filter is None
        matching = int(mask.sum())
        wanted = min(args.k, matching)
        truth: list[set[int]] = []
        brute_ms: list[float] = []
        for query in queries:
            t = time.perf_counter()
            subset = np.flatnonzero(mask)
            sims = vectors[subset] @ query
            top = subset[np.argsort(-sims)[: args.k]]
            brute_ms.append((time.perf_counter() - t) * 1000)
            truth.append(set(top.tolist()))
        rows.append((label, matching, "brute force", 1.0, brute_ms, 1.0, "numpy over the matches"))
        for name, method in methods.items():
            if unfiltered and name in ("ann (forced)", "exact (forced)", "top-100 post"):
                continue  # the same as "auto" without a filter
            if name == "ann (forced)" and matching < 0.005 * args.n:
                continue  # k ~ the whole index: seconds per query
            latencies, recalls, full, paths = [], [], [], set()
            method(queries[0], product_filter)  # warm-up (first-use allocations)
            for query, expected in zip(queries, truth, strict=True):
                t = time.perf_counter()
                got, path = method(query, product_filter)
                latencies.append((time.perf_counter() - t) * 1000)
                recalls.append(len(set(got) & expected) / wanted)
                full.append(len(got) == wanted)
                paths.add(path)
            recall, filled = float(np.mean(recalls)), float(np.mean(full))
            rows.append((label, matching, name, recall, latencies, filled, "/".join(sorted(paths))))

    defaults = Settings()
    print()
    print(
        f"{args.n:,} items x {args.dim}-d ({args.clusters} clusters), {args.queries} queries "
        f"per filter, k={args.k}; index defaults (flat, HNSW m=32 efSearch=128, IVF-PQ "
        f"nprobe=32 rerank=4); filter_exact_max_items={defaults.filter_exact_max_items}; "
        f"{platform.machine()}, {os.cpu_count()} cores, faiss {faiss.__version__} "
        f"({args.threads} query thread); load average {os.getloadavg()[0]:.1f}; catalog load "
        f"{catalog_s:.0f} s; bitmaps built in {bitmaps_s:.1f} s, "
        f"{bitmaps.memory_bytes() / 1e6:.1f} MB ({bitmaps.memory_bytes() / args.n:.1f} B/item)"
        + (f"; bench HNSW build {hnsw_s:.0f} s" if args.legacy else "")
    )
    print()
    print("| filter | matching | method | recall@k | full lists | p50 ms | p95 ms | path |")
    print("|---|---|---|---|---|---|---|---|")
    for label, matching, name, recall, latencies, filled, path in rows:
        print(
            f"| {label} | {matching:,} | {name} | {recall:.3f} | {filled:.0%} | "
            f"{percentile(latencies, 50):.2f} | {percentile(latencies, 95):.2f} | {path} |"
        )
    print_summary(rows, kinds)
    catalog.close()


def print_summary(rows: list[tuple], kinds: list[str]) -> None:
    """Per index kind and filter: p50 and recall, catalog path vs bitmaps, and filtered QPS
    as a share of the same path's unfiltered QPS (the goal: at least 1/2)."""
    p50 = {(r[0], r[2]): percentile(r[4], 50) for r in rows}
    recall = {(r[0], r[2]): r[3] for r in rows}
    print()
    print(
        "| index | filter | matching | catalog p50 ms | bitmaps p50 ms | catalog recall@k "
        "| bitmaps recall@k | QPS vs unfiltered: catalog | bitmaps |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for kind in kinds:
        for label, matching, name, *_ in rows:
            if name != f"{kind} bitmaps" or label == "none":
                continue
            before, after = p50[(label, f"{kind} catalog")], p50[(label, name)]
            base_before = p50[("none", f"{kind} catalog")]
            base_after = p50[("none", name)]
            print(
                f"| {kind} | {label} | {matching:,} | {before:.2f} | **{after:.2f}** | "
                f"{recall[(label, f'{kind} catalog')]:.3f} | {recall[(label, name)]:.3f} | "
                f"{base_before / before:.2f} | **{base_after / after:.2f}** |"
            )


if __name__ == "__main__":
    main()
