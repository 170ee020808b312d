"""Near-duplicate detection on a synthetic set, beside hash-only and embedding-only
baselines, in one run (the set: `near_duplicate_set.py`).

    PYTHONPATH=src:benchmarks .venv/bin/python benchmarks/near_duplicates.py \
        --bases 300 --seed 1 --out /tmp/near-dups

Without `--model`, the catalog's model is trained first, as a shop would: a LiT model
(`lookalike train`, 8 epochs with flips and shifts) on every usable openclipart image with
its file name as title (~17 minutes on 2 busy cores; kept in `<out>/../near-dups-model`).

Steps: the bases are indexed (`Engine.index_path`: hashes and groups kept by the ingest),
then the copies (each joins its group incrementally as it is written); the groups the
writes left are measured ("incremental"; once more in a second catalog with
`duplicate_crops` off: the rule before crops), then each mode's full pass over the whole
catalog (`DuplicateFinder.find_all`, groups not stored): the rule with crop candidates, the
crop check and one original per crop (the default; again linking every crop-check pass, the
rule before one original; again with a stricter check), the rule before crops ("whole"),
hash only, embedding only.

Cost: ms per item of each full pass (hash index built included), ms per copy indexed
(read, encode, hash, write, group: the incremental row); ms per image of hashing
(whole-image hashes alone, and with the sub-crop grid and thumbnail), and the bytes each
image adds.

Recall per transformation: the share of copies that share a group with their base.
Precision: of the pairs of items put in one group, the share made of one base's images;
the pairs that are not count as false positives ("hard" when both come from one
openclipart sub-folder: look-alike products of one class).
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

from near_duplicate_set import TRANSFORMS, SyntheticSet, build_set
from PIL import Image

from lookalike import Engine, Settings
from lookalike.duplicates import DuplicateFinder, DuplicateRules
from lookalike.encode import phash


def measure(groups: dict[str, list[str]], synthetic: SyntheticSet) -> dict[str, float]:
    base_of, folder_of = synthetic.base_of, synthetic.folder_of
    group_of = {pid: g for g, members in groups.items() for pid in members}
    out: dict[str, float] = {}
    for name in TRANSFORMS:
        copies = [c for c, t in synthetic.transform_of.items() if t == name]
        found = sum(
            group_of.get(c) is not None and group_of.get(c) == group_of.get(base_of[c])
            for c in copies
        )
        out[f"recall {name}"] = found / len(copies)
    true = false = hard = 0
    for members in groups.values():
        for a, b in itertools.combinations(members, 2):
            if base_of[a] == base_of[b]:
                true += 1
            else:
                false += 1
                hard += folder_of[base_of[a]] == folder_of[base_of[b]]
    out["precision"] = true / (true + false) if true + false else 1.0
    out["false pairs"] = false
    out["hard-negative false pairs"] = hard
    out["groups"] = len(groups)
    return out


def incremental(engine: Engine, synthetic: SyntheticSet) -> dict[str, float]:
    """Index the bases, then the copies (each grouped as it is written): the groups the
    writes left, and ms per copy indexed whole (read, encode, hash, write, group)."""
    engine.index_path(synthetic.manifest_bases)
    took = time.perf_counter()
    engine.index_path(synthetic.manifest_copies)
    took = time.perf_counter() - took
    groups: dict[str, list[str]] = {}
    for row in engine.catalog.image_hashes():
        if row.group_id is not None:
            groups.setdefault(row.group_id, []).append(row.product_id)
    result = measure(groups, synthetic)
    result["ms per item"] = 1000 * took / len(synthetic.transform_of)
    return result


def run(model: str, bases: int, out: Path, seed: int) -> dict[str, dict[str, float]]:
    started = time.monotonic()
    shutil.rmtree(out, ignore_errors=True)
    synthetic = build_set(out / "set", bases, seed)
    print(
        f"set: {len(synthetic.folder_of)} bases, {len(synthetic.transform_of)} copies "
        f"({time.monotonic() - started:.0f}s)"
    )
    results: dict[str, dict[str, float]] = {}
    # The rule before crops, kept current by the same writes: its groups and its write cost.
    before = Settings(
        _env_file=None,
        data_dir=out / "data-before-crops",
        model_checkpoint=model,
        device="cpu",
        duplicate_crops=False,
    )
    with Engine(before) as engine:
        results["incremental, rule before crops"] = incremental(engine, synthetic)
    settings = before.model_copy(update={"data_dir": out / "data", "duplicate_crops": True})
    with Engine(settings) as engine:
        results["incremental (hash + embedding + crops)"] = incremental(engine, synthetic)
        index = engine.live_index.index
        default = DuplicateRules.from_settings(settings)
        for rules, label in (
            (default, "full pass (hash + embedding + crops)"),
            (
                replace(default, one_original=False),
                "full pass, every crop-check pass linked (before one original)",
            ),
            (
                replace(default, crop_match=0.94, crop_edges=0.88),
                "full pass, stricter crop check (0.94 / 0.88)",
            ),
            (replace(default, mode="whole"), "full pass, rule before crops (hash + embedding)"),
            (replace(default, mode="hash"), "hash only"),
            (replace(default, mode="embedding"), "embedding only"),
        ):
            finder = DuplicateFinder(engine.catalog, index, rules)
            took = time.perf_counter()
            report = finder.find_all(write=False)
            took = time.perf_counter() - took
            results[label] = measure(report.groups, synthetic)
            results[label]["ms per item"] = 1000 * took / max(report.items, 1)
    print(f"done in {time.monotonic() - started:.0f}s")
    print(hashing_cost(synthetic.manifest_bases.parent / "images"))
    return results


def hashing_cost(images: Path, count: int = 200) -> str:
    """ms per image of the whole-image hashes alone and of everything stored, and the
    bytes the sub-crop grid and thumbnail add per image."""
    loaded = [Image.open(p).convert("RGB") for p in sorted(images.glob("*.png"))[:count]]
    took = time.perf_counter()
    for image in loaded:
        grey = image.convert("L").resize((phash.THUMBNAIL, phash.THUMBNAIL), Image.LANCZOS)
        phash._phash(grey), phash._phash(grey.transpose(Image.FLIP_LEFT_RIGHT))
    whole = (time.perf_counter() - took) / len(loaded)
    took = time.perf_counter()
    for image in loaded:
        stored = phash.perceptual_hashes(image)
    every = (time.perf_counter() - took) / len(loaded)
    crops = 8 * len(stored.crops)
    return (
        f"hashing: {1000 * whole:.1f} ms/image whole-image hashes, {1000 * every:.1f} ms/image "
        f"with the sub-crop grid and thumbnail; per image {crops} bytes of sub-crop hashes in "
        f"the binary index (+{len(stored.crops)} row ids), {len(stored.thumbnail)} bytes of "
        "thumbnail in the catalog"
    )


def train_model(directory: Path) -> Path:
    """A LiT model trained on openclipart (reused when already finished)."""
    from near_duplicate_set import build_training_manifest

    from lookalike.train.loop import TrainConfig, train

    model = directory / "model"
    manifest = directory / "train" / "train.jsonl"
    if not manifest.exists():
        build_training_manifest(manifest.parent)
    settings = Settings(_env_file=None, device="cpu")
    train(manifest, model, settings, TrainConfig(epochs=8, augment=True), resume=True)
    return model


def table(results: dict[str, dict[str, float]]) -> str:
    columns = [f"recall {n}" for n in TRANSFORMS] + [
        "precision",
        "false pairs",
        "hard-negative false pairs",
        "ms per item",
    ]
    lines = [
        "| method | " + " | ".join(c.replace("recall ", "") for c in columns) + " |",
        "|---|" + "---|" * len(columns),
    ]
    for method, row in results.items():
        cells = [
            "" if c not in row else f"{row[c]:.3f}" if isinstance(row[c], float) else str(row[c])
            for c in columns
        ]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="the catalog's model (default: train one)")
    parser.add_argument("--bases", type=int, default=300)
    parser.add_argument("--out", type=Path, default=Path("/tmp/lookalike-near-dups"))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = args.model or str(train_model(args.out.parent / "near-dups-model"))
    results = run(model, args.bases, args.out, args.seed)
    print(table(results))
    (args.out / "results.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
