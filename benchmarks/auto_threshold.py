"""Where `auto` should switch from the exact flat index to HNSW, measured on a real catalog.

Reads the embeddings a data directory's catalog holds (the demo's: `lookalike demo`
writes them), takes nested subsets of growing size, and for each builds Lookalike's own
flat and HNSW indexes (the engine's defaults: M=32, efConstruction=80, efSearch=128) and
measures, with one FAISS thread as a server runs each request:

* build time;
* single-query p50 latency, flat beside HNSW;
* Recall@20 and Recall@100 of HNSW against the exact flat answer, for two kinds of
  queries: image queries (catalog items not in the subset, i.e. photos the index has not
  seen) and text queries (the demo model's text tower on shopper-like phrases), whose
  vectors sit away from the images' and are the harder case for a graph.

    PYTHONPATH=src python benchmarks/auto_threshold.py --data demo-data/lookalike-data \
        --model demo-data/model --sizes 5000,10000,20000,40000,60000

Rows append to benchmarks/results/auto_threshold.jsonl.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sqlite3
import time
from pathlib import Path

import faiss
import numpy as np
from tqdm.auto import tqdm

from lookalike.index import FlatIndex, HnswIndex, IndexMeta

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "auto_threshold.jsonl"
COLOURS = ["red", "black", "white", "striped", "dark", "light", "summer", "warm", "casual"]
PIECES = ["t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker"]
MORE = ["bag", "ankle boot", "jacket", "skirt", "shoes", "top"]


def catalog_vectors(data: Path) -> np.ndarray:
    """Every stored embedding of the catalog, in vector-id order (read straight from SQLite)."""
    with sqlite3.connect(f"file:{data / 'catalog.db'}?mode=ro", uri=True) as db:
        rows = db.execute(
            "SELECT embedding FROM products WHERE embedding IS NOT NULL ORDER BY vector_id"
        ).fetchall()
    return np.stack([np.frombuffer(row[0], dtype=np.float32) for row in rows])


def text_queries(model: Path, count: int) -> np.ndarray:
    from lookalike.config import Settings
    from lookalike.encode.factory import create_encoder

    phrases = [
        f"{a} {b} {c}" for a, b, c in itertools.product(COLOURS, COLOURS, PIECES + MORE) if a != b
    ]
    rng = np.random.default_rng(1)
    picked = [phrases[i] for i in rng.choice(len(phrases), count, replace=False)]
    encoder = create_encoder(Settings(model_checkpoint=str(model)))
    return np.ascontiguousarray(encoder.encode_texts(picked), dtype=np.float32)


def recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    hits = sum(len(np.intersect1d(f[:k], t[:k])) for f, t in zip(found, truth, strict=True))
    return hits / (k * len(truth))


def p50_ms(index: FlatIndex | HnswIndex, queries: np.ndarray, k: int) -> float:
    times = []
    for row in queries:
        started = time.perf_counter()
        index.search(row[None, :], k)
        times.append(time.perf_counter() - started)
    return float(np.median(times) * 1e3)


def measure(base: np.ndarray, queries: dict[str, np.ndarray], k: int) -> dict[str, object]:
    ids = np.arange(len(base))
    flat = FlatIndex(IndexMeta("flat", base.shape[1]), None)
    flat.add(ids, base)
    hnsw = HnswIndex(IndexMeta("hnsw", base.shape[1], params=dict(HnswIndex.defaults)), None)
    started = time.perf_counter()
    hnsw.add(ids, base)
    row: dict[str, object] = {"size": len(base), "hnsw_build_s": time.perf_counter() - started}
    for kind, vectors in queries.items():
        truth = flat.search(vectors, k)[1]
        found = hnsw.search(vectors, k)[1]
        row[f"{kind}_recall@20"] = recall(found, truth, 20)
        row[f"{kind}_recall@{k}"] = recall(found, truth, k)
    sample = next(iter(queries.values()))[:100]
    row["flat_p50_ms"] = p50_ms(flat, sample, k)
    row["hnsw_p50_ms"] = p50_ms(hnsw, sample, k)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a data dir (catalog.db)")
    parser.add_argument("--model", type=Path, required=True, help="its model folder")
    parser.add_argument("--sizes", default="5000,10000,20000,40000,60000")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k", type=int, default=100)
    args = parser.parse_args()
    faiss.omp_set_num_threads(1)
    vectors = catalog_vectors(args.data)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(vectors))
    held_out = vectors[order[-args.queries :]]  # never in any subset: unseen photos
    pool = vectors[order[: -args.queries]]
    queries = {"image": held_out, "text": text_queries(args.model, args.queries)}
    load = os.getloadavg()[0]
    sizes = [int(s) for s in args.sizes.split(",") if int(s) <= len(pool)]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    for size in tqdm(sizes, desc="subsets", unit="size"):
        row = measure(pool[:size], queries, args.k)
        row.update({"dim": int(vectors.shape[1]), "load": load, "at": time.time()})
        with RESULTS.open("a") as out:
            out.write(json.dumps(row) + "\n")
        print(
            f"{size:>7,}: build {row['hnsw_build_s']:.1f} s, p50 flat {row['flat_p50_ms']:.2f}"
            f" / hnsw {row['hnsw_p50_ms']:.2f} ms, recall@20 image"
            f" {row['image_recall@20']:.3f} text {row['text_recall@20']:.3f}, recall@{args.k}"
            f" image {row[f'image_recall@{args.k}']:.3f} text {row[f'text_recall@{args.k}']:.3f}"
        )


if __name__ == "__main__":
    main()
