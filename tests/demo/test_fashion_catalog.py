"""The Fashion-MNIST catalog builder, on small synthetic IDX files (and the real ones if
the Debian package is installed)."""

from __future__ import annotations

import gzip
import json
import struct

import pytest
from PIL import Image

from lookalike.demo.fashion_mnist import (
    CLASSES,
    DEBIAN_DIR,
    PRICE_RANGE,
    build_catalog,
    read_split,
)
from lookalike.demo.fashion_queries import PARAPHRASES
from lookalike.encode.images import ImageLimits, decode_image
from lookalike.errors import InvalidInput
from lookalike.ingest.sources import open_source
from lookalike.train.captions import caption_variants
from tests.support.fashion_idx import write_idx

FIELDS = {
    "id",
    "image",
    "title",
    "category",
    "brand",
    "price",
    "rating",
    "popularity",
    "split",
    "source_index",
}


@pytest.fixture
def idx_dir(tmp_path):
    return write_idx(tmp_path / "idx", {"train": 30, "test": 10})


def _rows(manifest):
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def test_builds_expected_counts_and_fields(tmp_path, idx_dir):
    summary = build_catalog(tmp_path / "out", idx_dir, progress=False)
    assert summary.items == {"train": 30, "test": 10}
    assert summary.written == 40
    rows = _rows(summary.manifest)
    assert len(rows) == 40
    assert [r["split"] for r in rows].count("test") == 10
    assert len({r["id"] for r in rows}) == 40
    for row in rows:
        assert set(row) == FIELDS
        label = row["source_index"] % 10  # the synthetic labels cycle 0..9
        assert row["category"] == CLASSES[label]
        assert row["title"].startswith(row["brand"]) and row["title"].endswith(row["category"])
        low, high = PRICE_RANGE[row["category"]]
        assert low <= row["price"] <= high + 1
        assert 1.0 <= row["rating"] <= 5.0 and row["popularity"] >= 0
        with Image.open(summary.manifest.parent / row["image"]) as image:
            assert image.size == (64, 64)
    queries = json.loads((summary.manifest.parent / "eval_queries.json").read_text())
    assert set(queries["class_prompts"].values()) == set(CLASSES)


def test_images_pass_default_validation_and_manifest_reads_as_items(tmp_path, idx_dir):
    summary = build_catalog(tmp_path / "out", idx_dir, progress=False)
    items = list(open_source(summary.manifest))
    assert len(items) == 40
    first = items[0]
    assert first.attributes["split"] == "train" and isinstance(first.attributes["rating"], float)
    with open(first.image, "rb") as handle:
        image = decode_image(handle.read(), ImageLimits())  # default limits: 50 px minimum
    assert image.mode == "RGB"
    # Products are dark on a white background, as shops show them.
    assert image.getpixel((0, 0))[0] > 200


def test_rebuild_is_idempotent_and_seeded(tmp_path, idx_dir):
    first = build_catalog(tmp_path / "out", idx_dir, progress=False)
    text = first.manifest.read_text()
    again = build_catalog(tmp_path / "out", idx_dir, progress=False)
    assert again.written == 0
    assert again.manifest.read_text() == text
    other = build_catalog(tmp_path / "other", idx_dir, seed=1, progress=False)
    assert [r["brand"] for r in _rows(other.manifest)] != [
        r["brand"] for r in _rows(first.manifest)
    ]


def test_bad_source_files_are_typed_errors(tmp_path, idx_dir):
    with pytest.raises(InvalidInput, match="lacks the Fashion-MNIST IDX files"):
        build_catalog(tmp_path / "out", tmp_path / "empty", progress=False)
    with gzip.open(idx_dir / "t10k-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(struct.pack(">II", 1234, 10) + bytes(10))
    with pytest.raises(InvalidInput, match="magic"):
        build_catalog(tmp_path / "out", idx_dir, progress=False)
    with gzip.open(idx_dir / "t10k-labels-idx1-ubyte.gz", "wb") as handle:
        handle.write(struct.pack(">II", 2049, 10) + bytes(7))  # truncated
    with pytest.raises(InvalidInput, match="bytes, expected"):
        read_split(idx_dir, "test")


def test_paraphrase_queries_never_appear_in_training_captions(tmp_path, idx_dir):
    summary = build_catalog(tmp_path / "out", idx_dir, progress=False)
    captions = " | ".join(
        text.lower() for item in open_source(summary.manifest) for text in caption_variants(item)
    )
    for query in PARAPHRASES:
        assert query.lower() not in captions


@pytest.mark.skipif(not DEBIAN_DIR.exists(), reason="Debian package dataset-fashion-mnist absent")
def test_reads_the_real_debian_files():
    images, labels = read_split(DEBIAN_DIR, "test")
    assert images.shape == (10_000, 28, 28)
    assert sorted(set(labels.tolist())) == list(range(10))
