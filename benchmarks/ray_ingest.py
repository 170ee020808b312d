"""Batch ingest throughput: the local pipeline and Ray with 1 and 2 encoder actors, each as
a fraction of the raw encoder throughput measured in the same run on the same machine.

    PYTHONPATH=src python benchmarks/ray_ingest.py --images 384

Data: Fashion-MNIST test images (Debian package dataset-fashion-mnist), upscaled to 224 px
and written as PNG files with a JSONL manifest (as a product catalog would be). Model: a
random-init open_clip ViT-B-32 (the default architecture; weights do not change its speed),
written as a local open_clip directory, so nothing is downloaded.

Raw encoder throughput = `encode_pixels` on pre-decoded, pre-processed batches (no I/O,
no decoding): the ceiling an ingest can reach. Ray rates are given end to end (with Ray's
start, workers' model loads) and in steady state (from the first loaded shard to the last).

On a shared machine the raw rate drifts with other people's load, so it is measured before
each configuration and after the last, and each configuration is compared with the mean of
the two measurements around it. "Encoder busy" does not depend on that drift: the share of
time the encoder (each actor, from its first batch to its last) spent in `encode_pixels`;
near 100% means reading and decoding are hidden behind the model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.demo.fashion_mnist import CLASSES, DEBIAN_DIR, read_split


def build_catalog(root: Path, count: int, side: int = 224) -> Path:
    images, labels = read_split(DEBIAN_DIR, "test")
    images, labels = images[:count], labels[:count]
    folder = root / "images"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    lines = []
    for i, (pixels, label) in enumerate(zip(images, labels, strict=True)):
        name = f"fm-{i:05d}.png"
        image = Image.fromarray(255 - pixels).convert("RGB")  # dark item on white, as photos
        image.resize((side, side), Image.Resampling.BICUBIC).save(folder / name)
        lines.append(
            json.dumps(
                {
                    "id": f"fm-{i:05d}",
                    "image": f"images/{name}",
                    "title": f"{CLASSES[label]} {i}",
                    "category": CLASSES[label],
                    "price": round(float(rng.uniform(5, 120)), 2),
                }
            )
        )
    manifest = root / "catalog.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def build_model(directory: Path) -> Path:
    """A random-init ViT-B-32 as an open_clip local directory (no download)."""
    import open_clip
    import torch
    from open_clip.model import CLIP
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    config = open_clip.get_model_config("ViT-B-32")
    torch.manual_seed(0)
    state = {k: v.contiguous() for k, v in CLIP(**config).state_dict().items()}
    save_file(state, str(directory / "open_clip_model.safetensors"))
    preprocess = {
        "size": 224,
        "mean": list(open_clip.OPENAI_DATASET_MEAN),
        "std": list(open_clip.OPENAI_DATASET_STD),
    }
    (directory / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": config, "preprocess_cfg": preprocess})
    )
    return directory


def raw_encoder_rate(settings, manifest: Path, images: int = 64) -> float:
    """Images/s of encode_pixels alone on batches decoded and preprocessed beforehand."""
    from lookalike.encode import ImageLimits, create_encoder, decode_image

    encoder = create_encoder(settings)
    limits = ImageLimits.from_settings(settings)
    paths = [
        manifest.parent / json.loads(line)["image"]
        for line in manifest.read_text().splitlines()[:images]
    ]
    pixels = np.stack([encoder.preprocess(decode_image(p.read_bytes(), limits)) for p in paths])
    encoder.encode_pixels(pixels[: settings.encode_batch_size])  # warm-up
    started = time.perf_counter()
    encoder.encode_pixels(pixels)
    return len(pixels) / (time.perf_counter() - started)


def prepare_rate(settings, manifest: Path, images: int = 128) -> float:
    """Images/s of `prepare_item` (read, hash, decode, validate, preprocess) on one thread:
    how many CPU cores a worker needs to keep its encoder fed."""
    from lookalike.encode import ImageLimits, create_encoder
    from lookalike.files.fetch import Fetcher
    from lookalike.ingest.prepare import prepare_item
    from lookalike.ingest.sources import open_source

    encoder = create_encoder(settings)
    encoder.info  # noqa: B018 - loaded before the clock starts
    specs = [s for _, s in zip(range(images), open_source(manifest), strict=False)]
    fetcher, limits = Fetcher(max_bytes=settings.max_image_bytes), ImageLimits()
    started = time.perf_counter()
    for spec in specs:
        prepare_item(spec, None, fetcher, limits, encoder)
    return len(specs) / (time.perf_counter() - started)


def driver_load_rate(root: Path, rows: int = 20_000, shard: int = 1_000) -> float:
    """Rows/s the driver loads into the default catalog (SQLite) and index (FAISS flat):
    one transaction per shard, then the index catches up, with 512-d embeddings."""
    from lookalike import Settings
    from lookalike.catalog import Product, ProductWrite, open_catalog
    from lookalike.encode.base import l2_normalize
    from lookalike.index import open_index

    settings = Settings(data_dir=root)
    catalog = open_catalog(settings)
    live = open_index(settings, catalog, 512, "synthetic")
    vectors = l2_normalize(np.random.default_rng(0).standard_normal((rows, 512)))
    started = time.perf_counter()
    for start in range(0, rows, shard):
        catalog.upsert(
            [
                ProductWrite(
                    Product(f"p{i}", title=f"product {i}", content_hash=f"{i:064x}"), vectors[i]
                )
                for i in range(start, min(start + shard, rows))
            ]
        )
        live.catch_up()
    live.save(force=True)
    elapsed = time.perf_counter() - started
    catalog.close()
    return rows / elapsed


class TimedEncoder:
    """The real encoder, with the time spent in `encode_pixels` written down."""

    def __init__(self, encoder) -> None:
        self.encoder = encoder
        self.spans: list[tuple[float, float]] = []

    def __getattr__(self, name: str):
        return getattr(self.encoder, name)

    def encode_pixels(self, pixels: np.ndarray) -> np.ndarray:
        started = time.time()
        vectors = self.encoder.encode_pixels(pixels)
        self.spans.append((started, time.time()))
        return vectors

    @property
    def busy(self) -> float:
        window = self.spans[-1][1] - self.spans[0][0]
        return sum(end - start for start, end in self.spans) / window


def local_rate(settings, manifest: Path) -> tuple[float, float, int]:
    """(images/s, share of time the encoder was busy, images added)."""
    from lookalike import Engine
    from lookalike.encode import create_encoder

    encoder = TimedEncoder(create_encoder(settings))
    with Engine(settings, encoder=encoder) as engine:
        engine.encoder.info  # noqa: B018 - the model loads before the clock starts
        engine.live_index  # noqa: B018
        started = time.perf_counter()
        report = engine.index_path(manifest)
        elapsed = time.perf_counter() - started
    return report.added / elapsed, encoder.busy, report.added


def ray_rates(settings, manifest: Path) -> tuple[float, float, float, float, int]:
    """(end-to-end images/s, steady-state images/s, encoders' busy share, seconds to the
    first loaded shard, images added).

    Steady state runs from the first loaded shard to the last but one: Ray Data hands an
    actor's output to the driver one batch late, and the last shards arrive together."""
    from lookalike import Engine

    loaded: list[float] = []
    with Engine(settings) as engine:
        engine.encoder.info  # noqa: B018 - as for the local run: the driver's model is loaded
        engine.live_index  # noqa: B018
        started = time.perf_counter()
        report = engine.index_path_ray(
            manifest, on_shard_loaded=lambda shard: loaded.append(time.perf_counter())
        )
        elapsed = time.perf_counter() - started
    shards = len(loaded) - 2
    steady = shards * settings.ray_shard_size / (loaded[-2] - loaded[0]) if shards > 0 else 0.0
    busy = report.encoder_busy or 0.0
    return report.added / elapsed, steady, busy, loaded[0] - started, report.added


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=384, help="catalog size")
    parser.add_argument("--batch", type=int, default=32, help="encoder batch size")
    parser.add_argument("--shard", type=int, default=32, help="items per Ray shard")
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import ray

    from lookalike import Settings

    root = args.keep or Path(tempfile.mkdtemp(prefix="lookalike-bench-"))
    cores = os.cpu_count() or 1
    try:
        manifest = build_catalog(root / "catalog", args.images)
        model = build_model(root / "model")

        def settings(name: str, **extra) -> Settings:
            return Settings(
                data_dir=root / name,
                model_checkpoint=str(model),
                encode_batch_size=args.batch,
                ray_shard_size=args.shard,
                **extra,
            )

        # Raw throughput is measured before each configuration and once more at the end;
        # each configuration is compared with the mean of the measurements either side of
        # it, which follows the drift of a shared machine's load.
        def raw() -> float:
            rate = raw_encoder_rate(settings("raw", torch_threads=cores), manifest)
            print(f"  raw encoder, {cores} threads: {rate:.1f} img/s", flush=True)
            return rate

        raws = [raw()]
        per_core = prepare_rate(settings("prepare"), manifest)
        print(f"prepare_item on one thread: {per_core:.1f} img/s", flush=True)
        load = driver_load_rate(root / "load")
        print(f"driver load (SQLite + FAISS flat): {load:.0f} rows/s", flush=True)
        rate, busy, added = local_rate(
            settings("local", torch_threads=cores, ingest_workers=cores), manifest
        )
        print(f"local ingest: {rate:.1f} img/s, encoder busy {busy:.0%} ({added} images)")
        rows = [("local ingest (threads)", f"{cores}", rate, rate, busy, "model loaded before")]
        raws.append(raw())

        # One local Ray for both Ray runs; logical CPUs sized for the larger configuration.
        ray.init(address="local", num_cpus=cores + 1, include_dashboard=False)
        for actors in (1, 2):
            threads = max(cores // actors, 1)
            end_to_end, steady, busy, startup, added = ray_rates(
                settings(
                    f"ray{actors}",
                    torch_threads=threads,
                    ray_encoder_actors=actors,
                    ray_read_concurrency=1,
                ),
                manifest,
            )
            print(
                f"Ray, {actors} actor(s): {end_to_end:.1f} img/s end to end, "
                f"{steady:.1f} img/s steady, encoders busy {busy:.0%}, first shard after "
                f"{startup:.0f} s ({added} images)",
                flush=True,
            )
            rows.append(
                (
                    f"Ray, {actors} encoder actor(s)",
                    f"{threads} per actor",
                    end_to_end,
                    steady,
                    busy,
                    f"{startup:.0f} s",
                )
            )
            raws.append(raw())
        ray.shutdown()
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)

    print()
    print(
        f"{args.images} Fashion-MNIST images (224 px PNG), random-init ViT-B-32, batch "
        f"{args.batch}, shards of {args.shard}; {platform.machine()}, {cores} cores, "
        f"load average at the end {os.getloadavg()[0]:.1f}"
    )
    print(
        "raw encoder throughput (encode_pixels on pre-decoded batches, "
        f"{cores} threads), measured {len(raws)} times: " + ", ".join(f"{r:.1f}" for r in raws)
    )
    print(
        f"prepare_item (read, hash, decode, preprocess) on one thread: {per_core:.1f} img/s; "
        f"driver load into SQLite + FAISS flat (shards of 1000, 512-d): {load:.0f} rows/s"
    )
    print()
    print(
        "| engine | torch threads | raw img/s (either side) | img/s end to end | of raw "
        "| img/s steady | of raw | encoder busy | first shard loaded after |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for i, (name, threads, end_to_end, steady, busy, startup) in enumerate(rows):
        base = (raws[i] + raws[i + 1]) / 2
        print(
            f"| {name} | {threads} | {base:.1f} | {end_to_end:.1f} | {end_to_end / base:.0%} "
            f"| {steady:.1f} | {steady / base:.0%} | {busy:.0%} | {startup} |"
        )


if __name__ == "__main__":
    main()
