"""The demo's text tower (MiniLM, BERT) per text: numpy vs ONNX Runtime fp32 vs int8.

In-process, one thread each (as a server runs it: `api/serving.py: server_threads`),
batch 1 (one query per call) and batch 8 (what dynamic batching hands the tower), every
call on distinct texts. numpy is the baseline of the same run; each ONNX variant's
minimum cosine to numpy over the texts says how far its vectors are. The int8 row is
measured even where the serving default rejects it (cosine to fp32 < 0.99 on the
sample), so the table shows what the rejection costs. Load averages (`uptime`) are
printed beside: the machine is shared.

    PYTHONPATH=src python benchmarks/text_tower.py              # measure, append results
    PYTHONPATH=src python benchmarks/text_tower.py --report     # docs table
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
from records import append_result, uptime

from lookalike.encode.ort_cache import min_cosine, open_session, quantize_int8
from lookalike.encode.text import DEFAULT_TEXT_MODEL, load_text_tower
from lookalike.encode.text.bert_onnx import export_bert, run_session

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "text_tower.jsonl"
WORDS = [
    "red",
    "blue",
    "black",
    "white",
    "green",
    "floral",
    "striped",
    "vintage",
    "leather",
    "wool",
    "cotton",
    "linen",
    "denim",
    "summer",
    "winter",
    "running",
    "women's",
    "men's",
    "kids'",
    "slim",
    "oversized",
    "long",
    "short",
    "warm",
    "light",
]
ITEMS = [
    "dress",
    "sneakers",
    "jacket",
    "handbag",
    "boots",
    "scarf",
    "shirt",
    "trousers",
    "coat",
    "sandals",
    "hat",
]


def queries(count: int, seed: int = 0) -> list[str]:
    """Distinct shop-like queries of 2-6 words."""
    rng = np.random.default_rng(seed)
    out: list[str] = []
    while len(out) < count:
        words = rng.choice(WORDS, size=int(rng.integers(1, 6)), replace=False)
        out.append(" ".join([*words, str(rng.choice(ITEMS)), str(len(out))]))
    return out


def per_text_ms(encode: Any, texts: list[str], batch: int) -> dict[str, float]:
    encode(texts[:batch])  # warm-up
    times = []
    for start in range(batch, len(texts) - batch + 1, batch):
        began = time.perf_counter()
        encode(texts[start : start + batch])
        times.append((time.perf_counter() - began) * 1000 / batch)
    return {"mean": float(np.mean(times)), "p50": float(np.median(times))}


def measure(count: int) -> dict[str, Any]:
    native = load_text_tower(DEFAULT_TEXT_MODEL, threads=1)
    texts = queries(count)
    with tempfile.TemporaryDirectory() as tmp:
        exported = export_bert(native, Path(tmp), threads=1)
        fp32_path = Path(tmp) / f"bert-{native.fingerprint}-fp32.onnx"
        int8_path = Path(tmp) / "int8.onnx"
        quantize_int8(fp32_path, int8_path)  # what the export tries, kept whatever it measures
        sessions = {
            "onnx fp32": open_session(fp32_path, 1),
            "onnx int8": open_session(int8_path, 1),
        }
        variants = {"numpy": native.encode}
        for label, session in sessions.items():
            variants[label] = lambda batch, s=session: native.encode_with(
                batch, lambda t, m: run_session(s, t, m)
            )
        reference = native.encode(texts[:64])
        rows = []
        for label, encode in variants.items():
            row: dict[str, Any] = {"runtime": label}
            for batch in (1, 8):
                row[f"batch{batch}"] = per_text_ms(encode, texts, batch)
            row["min_cosine_to_numpy"] = min_cosine(encode(texts[:64]), reference)
            rows.append(row)
    return {
        "time": time.strftime("%FT%T"),
        "texts": count,
        "threads": 1,
        "cpus": os.cpu_count(),
        "uptime": uptime(),
        "serving_default": exported.precision,
        "int8_vs_fp32_on_sample": exported.record["int8_vs_fp32_min_cosine"],
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    base = {b: result["rows"][0][f"batch{b}"]["mean"] for b in (1, 8)}
    lines = [
        "| runtime (1 thread) | batch 1: ms/text (p50) | speed-up | batch 8: ms/text (p50) "
        "| speed-up | min cosine to numpy |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        cells = [row["runtime"]]
        for batch in (1, 8):
            stats = row[f"batch{batch}"]
            cells.append(f"{stats['mean']:.2f} ({stats['p50']:.2f})")
            cells.append(f"{base[batch] / stats['mean']:.1f}x")
        cells.append(f"{row['min_cosine_to_numpy']:.4f}")
        lines.append("| " + " | ".join(cells) + " |")
    lines.append(
        f"\nServing default chosen by the export: {result['serving_default']} (int8 vs fp32 "
        f"min cosine on the sample {result['int8_vs_fp32_on_sample']}; 0.99 needed). "
        f"{result['texts']} distinct texts; load: {result['uptime']}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=400)
    parser.add_argument("--report", action="store_true", help="print the last result's table")
    args = parser.parse_args()
    if args.report:
        print(table(json.loads(RESULTS.read_text().splitlines()[-1])))
        return
    print("before:", uptime())
    result = measure(args.texts)
    append_result(RESULTS, result)
    print(table(result))


if __name__ == "__main__":
    main()
