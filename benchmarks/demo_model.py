"""The demo model's levers, one at a time: train each variant, measure it, print a table.

Every variant trains with `lookalike train`'s code (`train.loop.train`) on the demo
manifest and is measured with `lookalike eval`'s code (`train.evaluate.evaluate`), on the
same items in the same run:
  * image -> image, the shopper's protocol: held-out `test` images as queries against the
    `train` items (P@10, 1-NN accuracy), beside nearest neighbours on raw pixels;
  * text -> image over the held-out split: class prompts, paraphrases, and the same
    queries in other languages (the worst language's P@10 is the column shown);
  * training time (wall seconds, with the machine's load average beside it: the machine
    is shared).

    lookalike demo --no-serve --dir /work/demo-data            # once: the catalog
    PYTHONPATH=src python benchmarks/demo_model.py \\
        --manifest /work/demo-data/fashion-mnist/catalog.jsonl --out /tmp/levers \\
        --train-limit 20000 --eval-limit 2000 --gallery-limit 20000

A finished variant in --out is measured again, not retrained (delete it to retrain).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

from lookalike.config import Settings
from lookalike.encode import create_encoder
from lookalike.encode.lit import read_config
from lookalike.encode.sources import LIT_CONFIG
from lookalike.encode.text.e5 import MODEL_NAME as E5
from lookalike.train.evaluate import evaluate, load_queries
from lookalike.train.loop import TrainConfig, train

MINILM = "sentence-transformers/all-MiniLM-L6-v2"
RESULTS = Path(__file__).parent / "results" / "demo_model.jsonl"
# name -> (what changes against the demo model of before, text tower, TrainConfig fields)
VARIANTS: dict[str, tuple[str, str, dict]] = {
    "minilm": ("the demo model before: rn-tiny 32 px, 2 epochs, MiniLM", MINILM, {}),
    "e5": ("text tower: multilingual-e5-small", E5, {}),
    "e5-augment": ("+ flips and shifts", E5, {"augment": True}),
    "e5-3ep": ("+ 3 epochs", E5, {"epochs": 3}),
    "e5-3ep-augment": ("+ 3 epochs, flips and shifts", E5, {"epochs": 3, "augment": True}),
    "e5-wide": ("+ rn-tiny-wide tower (width 32)", E5, {"tower": "rn-tiny-wide"}),
    "e5-lr": ("+ peak lr 4e-3", E5, {"lr": 4e-3}),
    "e5-batch128": ("+ batch 128 (twice the steps)", E5, {"batch_size": 128}),
    "e5-samecat": (
        "+ same-category captions are no negatives",
        E5,
        {"same_category_negatives": False},
    ),
    "e5-samecat-3ep-augment": (
        "+ same-category no negatives, 3 epochs, flips and shifts",
        E5,
        {"same_category_negatives": False, "epochs": 3, "augment": True},
    ),
    # The category terms (train/loss.py), each beside the demo's recipe ("minilm").
    "minilm-category": (
        "+ each image classified against the class prompts (weight 1)",
        MINILM,
        {"category_loss": 1.0},
    ),
    "minilm-category-3": (
        "+ class prompts, weight 3",
        MINILM,
        {"category_loss": 3.0},
    ),
    "minilm-category-b128": (
        "+ class prompts (1), batch 128 (twice the steps)",
        MINILM,
        {"category_loss": 1.0, "batch_size": 128},
    ),
    "minilm-b128": ("+ batch 128 (control: no category term)", MINILM, {"batch_size": 128}),
    "minilm-b64": ("+ batch 64 (control: no category term)", MINILM, {"batch_size": 64}),
    "minilm-category-b64": (
        "+ class prompts (1), batch 64 (four times the steps)",
        MINILM,
        {"category_loss": 1.0, "batch_size": 64},
    ),
    "minilm-category-contrast": (
        "+ class prompts (1) and same-category images as positives (1)",
        MINILM,
        {"category_loss": 1.0, "category_contrast": 1.0},
    ),
    "minilm-category-3ep-b128": (
        "+ class prompts (1), 3 epochs, batch 128",
        MINILM,
        {"category_loss": 1.0, "epochs": 3, "batch_size": 128},
    ),
    "minilm-category-wide-b128": (
        "+ class prompts (1), rn-tiny-wide tower, batch 128",
        MINILM,
        {"category_loss": 1.0, "tower": "rn-tiny-wide", "batch_size": 128},
    ),
    "minilm-category-64px": (
        "+ class prompts (1), 64 px input (a 2x2 map before pooling, not 1x1)",
        MINILM,
        {"category_loss": 1.0, "image_size": 64},
    ),
    "e5-category": (
        "e5 text tower + class prompts (weight 1)",
        E5,
        {"category_loss": 1.0},
    ),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--manifest", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--train-limit", type=int, help="train on the first N items only")
    parser.add_argument("--eval-limit", type=int, help="first N held-out items as queries")
    parser.add_argument("--gallery-limit", type=int, help="first N train items as gallery")
    parser.add_argument("--queries", type=Path, help="eval queries JSON (default: beside)")
    args = parser.parse_args()
    rows = []
    for name in args.variants.split(","):
        rows.append(run_variant(name, args))
        print(markdown(rows), flush=True)


def run_variant(name: str, args: argparse.Namespace) -> dict:
    what, text_model, fields = VARIANTS[name]
    settings = Settings(data_dir=args.out / "data", text_model=text_model, device="cpu")
    output = args.out / name
    config = replace(TrainConfig(epochs=2), limit=args.train_limit, **fields)
    seconds = None
    if not _finished(output):
        load = os.getloadavg()[0]
        started = time.monotonic()
        train(args.manifest, output, settings, config, resume=True)
        seconds = time.monotonic() - started
    else:
        load = None
    model_settings = settings.model_copy(update={"model_checkpoint": str(output)})
    encoder = create_encoder(model_settings)
    report = evaluate(
        args.manifest,
        model_settings,
        encoder,
        queries=load_queries(args.queries, args.manifest),
        limit=args.eval_limit,
        gallery_limit=args.gallery_limit,
    )
    model = report["results"]["model"]
    languages = model.get("languages", {})
    worst = min(languages.items(), key=lambda kv: kv[1]["P@10"]) if languages else None
    row = {
        "variant": name,
        "what": what,
        "train_s": round(seconds, 1) if seconds is not None else None,
        "load": round(load, 1) if load is not None else None,
        "gallery_P@10": model["held_out_vs_gallery"]["P@10"],
        "gallery_1nn": model["held_out_vs_gallery"]["1-NN accuracy"],
        "raw_P@10": report["results"]["raw-pixels"]["held_out_vs_gallery"]["P@10"],
        "raw_1nn": report["results"]["raw-pixels"]["held_out_vs_gallery"]["1-NN accuracy"],
        "prompts_P@10": model["class_prompts"]["P@10"],
        "paraphrases_P@10": model["paraphrases"]["P@10"],
        "languages": {k: v["P@10"] for k, v in languages.items()},
        "worst_language": f"{worst[0]} {worst[1]['P@10']:.2f}" if worst else "-",
        "train_limit": args.train_limit,
        "eval_items": report["items"],
        "gallery_items": report["gallery"]["items"],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as handle:
        handle.write(json.dumps(row) + "\n")
    return row


def _finished(output: Path) -> bool:
    if not (output / LIT_CONFIG).exists():
        return False
    try:
        return bool(read_config(output).training.get("finished"))
    except Exception:  # a damaged directory: train again
        return False


def markdown(rows: list[dict]) -> str:
    lines = [
        "| variant | change | train s (load) | img P@10 | 1-NN | raw P@10 / 1-NN "
        "| prompts P@10 | paraphrases P@10 | worst language P@10 |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        trained = f"{r['train_s']:.0f} ({r['load']})" if r["train_s"] is not None else "reused"
        lines.append(
            f"| {r['variant']} | {r['what']} | {trained} | {r['gallery_P@10']:.3f} "
            f"| {r['gallery_1nn']:.3f} | {r['raw_P@10']:.3f} / {r['raw_1nn']:.3f} "
            f"| {r['prompts_P@10']:.3f} | {r['paraphrases_P@10']:.3f} | {r['worst_language']} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
