"""A LiT model's image tower per image: torch vs ONNX Runtime fp32 vs int8, one thread.

Preprocessed pixels through the tower, batch 1 and batch 8, on a copy of the model (the
export is cached beside the model: the copy keeps the original folder untouched). torch
is the baseline of the same run; each ONNX variant's minimum cosine to torch is printed
beside it, and `uptime` load averages before and after (the machine is shared).

    PYTHONPATH=src python benchmarks/lit_image_tower.py --model demo-data/model
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from records import append_result, uptime

from lookalike.encode.lit import read_config
from lookalike.encode.lit_onnx import export_image_tower, sample_pixels
from lookalike.encode.ort_cache import min_cosine, open_session, quantize_int8

HERE = Path(__file__).parent
RESULTS = HERE / "results" / "lit_image_tower.jsonl"


def per_image_ms(encode: Any, pixels: np.ndarray, batch: int, rounds: int) -> float:
    encode(pixels[:batch])
    began = time.perf_counter()
    for index in range(rounds):
        start = (index * batch) % (len(pixels) - batch + 1)
        encode(pixels[start : start + batch])
    return (time.perf_counter() - began) * 1000 / (rounds * batch)


def measure(model_dir: Path, rounds: int) -> dict[str, Any]:
    import torch

    from lookalike.encode.lit_model import load_model

    torch.set_num_threads(1)
    uptime_before = uptime()
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "model"
        shutil.copytree(model_dir, copy, ignore=shutil.ignore_patterns(".lookalike-onnx"))
        config = read_config(copy)
        model = load_model(copy, "cpu").eval()
        tower = export_image_tower(
            copy, config, "bench", lambda: model, export_dir=Path(tmp), threads=1
        )
        folder = tower.model.path.parent
        fp32 = next(folder.glob("lit-image-*-fp32.onnx"))
        int8 = folder / "bench-int8.onnx"
        quantize_int8(fp32, int8)
        pixels = np.concatenate([sample_pixels(config)] * 4)

        def torch_encode(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return model.encode_image(torch.from_numpy(batch)).numpy()

        variants = {"torch": torch_encode}
        for label, path in (("onnx fp32", fp32), ("onnx int8", int8)):
            session = open_session(path, 1)
            variants[label] = lambda b, s=session: s.run(None, {"pixels": b})[0]
        reference = torch_encode(pixels)
        rows = [
            {
                "runtime": label,
                "batch1_ms": per_image_ms(encode, pixels, 1, rounds),
                "batch8_ms": per_image_ms(encode, pixels, 8, max(1, rounds // 8)),
                "min_cosine_to_torch": min_cosine(encode(pixels), reference),
            }
            for label, encode in variants.items()
        ]
    return {
        "time": time.strftime("%FT%T"),
        "model": str(model_dir),
        "tower": config.tower,
        "image_size": config.image_size,
        "serving_default": tower.model.precision,
        "int8_vs_fp32_on_sample": tower.model.record["int8_vs_fp32_min_cosine"],
        "uptime_before": uptime_before,
        "uptime_after": uptime(),
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    base1, base8 = result["rows"][0]["batch1_ms"], result["rows"][0]["batch8_ms"]
    lines = [
        "| runtime (1 thread) | batch 1: ms/image | speed-up | batch 8: ms/image | speed-up "
        "| min cosine to torch |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['runtime']} | {row['batch1_ms']:.3f} | {base1 / row['batch1_ms']:.1f}x "
            f"| {row['batch8_ms']:.3f} | {base8 / row['batch8_ms']:.1f}x "
            f"| {row['min_cosine_to_torch']:.4f} |"
        )
    lines.append(
        f"\n{result['tower']} at {result['image_size']} px; serving default chosen by the "
        f"export: {result['serving_default']} (int8 vs fp32 min cosine on the sample "
        f"{result['int8_vs_fp32_on_sample']}). Load before: {result['uptime_before']}; "
        f"after: {result['uptime_after']}"
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="a LiT model directory")
    parser.add_argument("--rounds", type=int, default=400)
    args = parser.parse_args()
    result = measure(args.model, args.rounds)
    append_result(RESULTS, result)
    print(table(result))


if __name__ == "__main__":
    main()
