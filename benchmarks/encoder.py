"""Encoder speed on this CPU: open_clip (torch) vs ONNX Runtime fp32 vs int8.

Images/s (preprocessed pixels through the image tower) and text queries/s (tokenise +
text tower), batch 1 and batch 32, for the tiny test model and a random-init ViT-B-32
(the default architecture; weights do not change speed). Torch is the baseline of the
same run. Also reports how far each ONNX variant's embeddings are from torch's.

    PYTHONPATH=src python benchmarks/encoder.py             # measure, append results
    PYTHONPATH=src python benchmarks/encoder.py --report    # README table
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from models import model_dirs
from PIL import Image

from lookalike.config import Settings
from lookalike.encode import create_encoder

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "encoder.jsonl"
TEXTS = [
    "red vintage car on a mountain road",
    "white sneakers with a blue stripe",
    "a wooden dining table with four chairs",
    "black leather handbag",
    "summer dress with a floral pattern",
    "stainless steel kitchen knife set",
    "a cat sleeping on a sofa",
    "mid-century modern lamp",
]


def rate(work, items: int, seconds: float) -> float:
    """Items per second of `work()`, repeated until `seconds` have passed (after a warm-up)."""
    work()
    done, started = 0, time.perf_counter()
    while True:
        work()
        done += items
        elapsed = time.perf_counter() - started
        if elapsed >= seconds:
            return done / elapsed


def measure(
    model: str, dirs: dict[str, Path], seconds: float, threads: int, run_id: str
) -> list[dict]:
    rng = np.random.default_rng(0)
    rows = []
    reference: dict[str, np.ndarray] = {}
    for backend, directory in dirs.items():
        for batch in (1, 32):
            settings = Settings(
                model_checkpoint=str(directory),
                data_dir=Path(tempfile.gettempdir()) / "unused",
                encode_batch_size=batch,
                torch_threads=threads,
                device="cpu",
            )
            encoder = create_encoder(settings)
            size = encoder.info.image_size
            pictures = [
                Image.fromarray(rng.integers(0, 255, (size + 31, size + 17, 3), dtype=np.uint8))
                for _ in range(batch)
            ]
            pixels = np.stack([encoder.preprocess(p) for p in pictures])
            texts = (TEXTS * 4)[:batch]
            images_s = rate(lambda e=encoder, x=pixels: e.encode_pixels(x), batch, seconds)
            texts_s = rate(lambda e=encoder, t=texts: e.encode_texts(t), batch, seconds)
            # The agreement check uses the same inputs for every backend.
            check = np.random.default_rng(7)
            check_pixels = (
                np.stack(
                    [
                        encoder.preprocess(
                            Image.fromarray(check.integers(0, 255, (size, size, 3), dtype=np.uint8))
                        )
                        for _ in range(32)
                    ]
                )
                if batch == 32
                else None
            )
            row: dict[str, Any] = {
                "model": model,
                "backend": backend,
                "batch": batch,
                "images_s": images_s,
                "texts_s": texts_s,
                "threads": threads,
                "load": os.getloadavg(),
                "run": run_id,
            }
            if check_pixels is not None:
                embeddings = np.vstack(
                    [encoder.encode_pixels(check_pixels), encoder.encode_texts(TEXTS * 4)]
                )
                if backend == "torch":
                    reference[model] = embeddings
                else:
                    ref = reference[model]
                    row["max_abs_diff"] = float(np.abs(embeddings - ref).max())
                    row["min_cosine"] = float(np.sum(embeddings * ref, axis=1).min())
            rows.append(row)
            print(
                f"{model:<9} {threads} thr {backend:<10} batch {batch:>2}: "
                f"{images_s:8.1f} images/s "
                f"{texts_s:8.1f} texts/s"
                + (
                    f"  max|diff| {row['max_abs_diff']:.2e} min cos {row['min_cosine']:.5f}"
                    if "min_cosine" in row
                    else ""
                )
            )
    return rows


def report() -> None:
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]
    latest = max(r["run"] for r in rows)
    rows = [r for r in rows if r["run"] == latest]
    print(f"run {latest}, load average at start {rows[0]['load']}\n")
    print(
        "| model | threads | backend | batch | images/s | vs torch | texts/s | vs torch "
        "| max abs diff | min cosine |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    base = {(r["model"], r["threads"], r["batch"]): r for r in rows if r["backend"] == "torch"}
    for r in rows:
        b = base[(r["model"], r["threads"], r["batch"])]
        diff = f"{r['max_abs_diff']:.1e}" if "max_abs_diff" in r else "-"
        cos = f"{r['min_cosine']:.4f}" if "min_cosine" in r else "-"
        print(
            f"| {r['model']} | {r['threads']} | {r['backend']} | {r['batch']} "
            f"| {r['images_s']:.1f} "
            f"| {r['images_s'] / b['images_s']:.2f}x | {r['texts_s']:.1f} "
            f"| {r['texts_s'] / b['texts_s']:.2f}x | {diff} | {cos} |"
        )


RUN = time.strftime("%Y%m%d-%H%M%S")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="tiny,ViT-B-32")
    parser.add_argument("--seconds", type=float, default=4.0, help="per measurement")
    parser.add_argument(
        "--threads",
        default=f"1,{os.cpu_count() or 1}",
        type=lambda s: [int(t) for t in s.split(",")],
        help="thread counts to measure (torch intra-op and ONNX Runtime intra-op)",
    )
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "lookalike-bench"
    )
    parser.add_argument("--run-id", default=RUN, help="share one id across invocations")
    parser.add_argument("--report", action="store_true")
    args = parser.parse_args()
    if args.report:
        report()
        return
    rows = []
    for model in args.models.split(","):
        dirs = model_dirs(args.cache, model)
        for threads in args.threads:
            rows += measure(model, dirs, args.seconds, threads, args.run_id)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with open(RESULTS, "a") as out:
        out.writelines(json.dumps(row) + "\n" for row in rows)
    report()


if __name__ == "__main__":
    main()
