"""End-to-end search latency against a large catalog: encode / ANN / metadata breakdown.

Builds (once, cached) a SQLite catalog of `--items` products whose embeddings are the
CLIP-like synthetic vectors of benchmarks/synthetic.py, stored under the model id of a
random-init ViT-B-32 (so real-size encoders make the queries). Then the engine opens it
the way `lookalike search` does: `auto` picks the index family by size and builds it
from the stored embeddings, `tune` sets nprobe / efSearch to the recall target, and
queries run warm, in-process (as a server runs them), with each encoder backend:

    text      `lookalike search --text ...`        encode text, ANN, metadata
    image     `lookalike search --image ...`       decode + encode image, ANN, metadata
    similar   `lookalike search --similar ID`      stored embedding (no encoding)
    filtered  text + one category (1/50 of items)  ANN with an id filter

    PYTHONPATH=src python benchmarks/end_to_end.py --items 1000000
    PYTHONPATH=src python benchmarks/end_to_end.py --report
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from models import model_dirs
from PIL import Image
from synthetic import ClipLike, cached
from tqdm.auto import tqdm

from lookalike.catalog import Product, ProductFilter, ProductWrite
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.config import Settings
from lookalike.encode import create_encoder
from lookalike.engine import Engine, SearchRequest

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "end_to_end.jsonl"
CATEGORIES = [f"category-{i:02d}" for i in range(50)]
TEXTS = [
    f"{adjective} {thing}"
    for adjective in ("red", "vintage", "white", "leather", "wooden", "striped", "small", "blue")
    for thing in (
        "car on a mountain road",
        "sneakers",
        "handbag",
        "dining table",
        "lamp",
        "summer dress",
        "wristwatch",
        "sofa",
        "backpack",
        "coffee mug",
        "bicycle",
        "jacket",
        "teapot",
    )
]
STAGES = ("encode_ms", "filter_ms", "ann_ms", "metadata_ms")


def build_catalog(directory: Path, items: int, model_id: str, cache: Path) -> None:
    """A catalog of `items` products with synthetic embeddings (skipped when complete)."""
    catalog = SQLiteCatalog(directory / "catalog.db")
    try:
        if catalog.get_meta("bench_items") == str(items):
            return
        vectors = cached(cache / f"base-{items}.npy", lambda: ClipLike().vectors(items))
        rng = np.random.default_rng(0)
        done = catalog.stats().products
        with tqdm(total=items, initial=done, desc="catalog", unit="item") as bar:
            for start in range(done, items, 20_000):
                stop = min(start + 20_000, items)
                catalog.upsert(
                    [
                        ProductWrite(
                            Product(
                                id=f"sku-{i:07d}",
                                title=f"product {i}",
                                category=CATEGORIES[i % len(CATEGORIES)],
                                brand=f"brand-{i % 400}",
                                price=float(rng.integers(5, 500)),
                                model_id=model_id,
                            ),
                            np.asarray(vectors[i]),
                        )
                        for i in range(start, stop)
                    ]
                )
                bar.update(stop - start)
        catalog.set_meta("bench_items", str(items))
    finally:
        catalog.close()


def query_images(count: int) -> list[bytes]:
    """JPEG uploads of photo-like size (decoding is part of an image query)."""
    rng = np.random.default_rng(1)
    out = []
    for _ in range(count):
        pixels = rng.integers(0, 255, (480, 640, 3), dtype=np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=85)
        out.append(buffer.getvalue())
    return out


def run_queries(engine: Engine, kind: str, count: int, items: int) -> list[dict[str, float]]:
    picked = np.random.default_rng(2).integers(0, items, count + 3)
    product_ids = [f"sku-{i:07d}" for i in picked]
    images = query_images(min(count, 20)) if kind == "image" else []
    requests = {
        "text": lambda i: SearchRequest(texts=[TEXTS[i % len(TEXTS)]], limit=20),
        "image": lambda i: SearchRequest(images=[images[i % len(images)]], limit=20),
        "similar": lambda i: SearchRequest(product_id=product_ids[i], limit=20),
        "filtered": lambda i: SearchRequest(
            texts=[TEXTS[i % len(TEXTS)]],
            limit=20,
            filters=ProductFilter(categories=(CATEGORIES[i % len(CATEGORIES)],)),
        ),
    }
    make = requests[kind]
    for i in range(3):  # warm-up: first calls load weights, page in the index
        engine.search(make(i))
    rows = []
    for i in range(count):
        started = time.perf_counter()
        results = engine.search(make(i))
        wall = (time.perf_counter() - started) * 1000
        rows.append({**{s: results.timings_ms.get(s, 0.0) for s in STAGES}, "total_ms": wall})
    return rows


def cli_cold_start(settings_env: dict[str, str]) -> float:
    """Seconds for one `lookalike search --text` process, start to finish (cold)."""
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "lookalike.cli", "search", "--text", "red sneakers", "--json"],
        env={**os.environ, **settings_env},
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - started


def build_index(data_dir: Path, dirs: dict[str, Path]) -> None:
    """Build as `lookalike build-index` does: plan (memory estimate), build; time saved."""
    settings = Settings(data_dir=data_dir, model_checkpoint=str(dirs["torch"]), device="cpu")
    with Engine(settings, progress=True) as engine:
        started = time.perf_counter()
        plan = engine.index_admin.plan()
        print(f"building {plan.describe()}")
        described = engine.build_index(plan)
        build_s = time.perf_counter() - started
    record(
        data_dir,
        index=described["type"],
        build_s=round(build_s, 1),
        estimate_mib=round(plan.memory_bytes / 2**20),
        build_load=os.getloadavg(),
    )
    print(f"index {described['type']} built in {build_s:.0f} s")


def tune_index(data_dir: Path, dirs: dict[str, Path]) -> None:
    """`lookalike tune`: the cheapest knob value reaching the recall target; time saved."""
    settings = Settings(data_dir=data_dir, model_checkpoint=str(dirs["torch"]), device="cpu")
    with Engine(settings, progress=True) as engine:
        started = time.perf_counter()
        tuned = engine.index_admin.tune(engine.live_index)
        tune_s = time.perf_counter() - started
    record(data_dir, tuned=tuned.chosen, recall=tuned.recall, tune_s=round(tune_s, 1))
    print(f"tuned {tuned.chosen} (Recall@100 {tuned.recall:.3f}) in {tune_s:.0f} s")


def record(data_dir: Path, **values: Any) -> None:
    path = data_dir / "bench_index.json"
    known = json.loads(path.read_text()) if path.exists() else {}
    path.write_text(json.dumps({**known, **values}))


def run(args: argparse.Namespace) -> None:
    run_id = time.strftime("%Y%m%d-%H%M%S")
    dirs = model_dirs(args.cache, "ViT-B-32")
    data_dir = args.cache / f"e2e-{args.items}"
    data_dir.mkdir(parents=True, exist_ok=True)
    encoder = create_encoder(Settings(model_checkpoint=str(dirs["torch"]), data_dir=data_dir))
    if "catalog" in args.steps:
        build_catalog(data_dir, args.items, encoder.model_id, args.cache)
    if "index" in args.steps:
        build_index(data_dir, dirs)
    if "tune" in args.steps:
        tune_index(data_dir, dirs)
    if "queries" not in args.steps:
        return
    built = json.loads((data_dir / "bench_index.json").read_text())
    print(f"run {run_id}: {args.items} items, {os.cpu_count()} cpus, load {os.getloadavg()}")
    rows = []
    for backend in args.backends:
        # Caches off: every query pays its full cost (benchmarks/live_catalog.py measures
        # cache hits); the queries repeat a few texts and images.
        settings = Settings(
            data_dir=data_dir,
            model_checkpoint=str(dirs[backend]),
            device="cpu",
            embedding_cache_ttl_s=0,
            result_cache_ttl_s=0,
        )
        with Engine(settings) as engine:
            index = engine.live_index.describe()
            for kind in args.kinds:
                if kind not in ("text", "image") and backend != args.backends[0]:
                    continue  # no encoding involved: measured once
                timings = run_queries(engine, kind, args.queries, args.items)
                row = {
                    "run": run_id,
                    "items": args.items,
                    "backend": backend,
                    "kind": kind,
                    "queries": len(timings),
                    "index": index["type"],
                    "index_params": {k: v for k, v in index["params"].items() if k != "tuned"},
                    "built": built,
                    "load": os.getloadavg(),
                }
                for stage in (*STAGES, "total_ms"):
                    values = [t[stage] for t in timings]
                    row[stage] = {
                        "p50": float(np.percentile(values, 50)),
                        "p99": float(np.percentile(values, 99)),
                    }
                rows.append(row)
                print(
                    f"{backend:<10} {kind:<8} "
                    + "  ".join(
                        f"{s} {row[s]['p50']:.1f}/{row[s]['p99']:.1f}"
                        for s in (*STAGES, "total_ms")
                    )
                )
    if args.cold:
        env = {
            "LOOKALIKE_DATA_DIR": str(data_dir),
            "LOOKALIKE_MODEL_CHECKPOINT": str(dirs["onnx-fp32"]),
        }
        cold = cli_cold_start(env)
        print(f"`lookalike search --text` cold process (ONNX fp32): {cold:.1f} s")
        rows.append({"run": run_id, "items": args.items, "kind": "cli-cold", "seconds": cold})
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as out:
        out.writelines(json.dumps(row) + "\n" for row in rows)
    report()


def report() -> None:
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    latest = max(r["run"] for r in rows)
    rows = [r for r in rows if r["run"] == latest]
    first = rows[0]
    built = first["built"]
    print(
        f"\nrun {latest}: {first['items']:,} items, index {first['index']} "
        f"{json.dumps(first['index_params'])}; built from stored embeddings in "
        f"{built['build_s']:.0f} s (estimate {built['estimate_mib']} MiB), tuned to "
        f"{json.dumps(built['tuned'])} (Recall@100 {built['recall']:.3f}) in "
        f"{built['tune_s']:.0f} s; load average {first['load']}\n"
    )
    print(
        "| query | encoder | encode p50 / p99 | filter p50 / p99 | ANN p50 / p99 "
        "| metadata p50 / p99 | total p50 / p99 (ms) |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if r["kind"] == "cli-cold":
            continue
        cells = " | ".join(f"{r[s]['p50']:.1f} / {r[s]['p99']:.1f}" for s in (*STAGES, "total_ms"))
        print(f"| {r['kind']} | {r['backend']} | {cells} |")
    for r in rows:
        if r["kind"] == "cli-cold":
            print(
                f"\nOne cold `lookalike search --text` process (ONNX fp32 encoder, loads "
                f"model and index): {r['seconds']:.1f} s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--items", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument(
        "--backends", default="torch,onnx-fp32,onnx-int8", type=lambda s: s.split(",")
    )
    parser.add_argument(
        "--kinds", default="text,image,similar,filtered", type=lambda s: s.split(",")
    )
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "lookalike-bench"
    )
    parser.add_argument(
        "--steps",
        default="catalog,index,tune,queries",
        type=lambda s: s.split(","),
        help="catalog (cached, resumable), index (build), tune, queries",
    )
    parser.add_argument("--cold", action="store_true", help="also time one cold CLI process")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        report()
    else:
        run(args)


if __name__ == "__main__":
    main()
