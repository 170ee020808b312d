"""The whole engine on PostgreSQL + Milvus behaves as on SQLite + FAISS: configuration only."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("pymilvus", reason="needs lookalike[milvus]")

from lookalike.catalog import ProductFilter
from lookalike.config import Settings
from lookalike.encode import create_encoder
from lookalike.engine import Engine
from lookalike.ingest.sources import ItemSpec

COLORS = ["red", "green", "blue", "black"]


def make_catalog(root: Path, n: int = 24) -> Path:
    """Images of random blocks and a CSV manifest with the fields filters use."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        pixels = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8).repeat(8, 0).repeat(8, 1)
        path = root / "images" / f"item{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path)
        rows.append(
            {
                "id": f"sku-{i}",
                "image": f"images/item{i}.png",
                "title": f"item {i}",
                "category": ["shoes", "hats", "bags"][i % 3],
                "brand": ["acme", "zed"][i % 2],
                "price": f"{5 + i * 3.5:.2f}",
                "color": COLORS[i % 4],
                "size": str(i % 5),
            }
        )
    manifest = root / "catalog.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def image_bytes(seed: int) -> bytes:
    import io

    pixels = np.random.default_rng(seed).integers(0, 255, (64, 64, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def same_hits(a, b) -> None:
    assert [h.product.id for h in a.hits] == [h.product.id for h in b.hits]
    np.testing.assert_allclose([h.score for h in a.hits], [h.score for h in b.hits], atol=1e-4)


QUERIES = [
    ProductFilter(),
    ProductFilter(categories=("shoes", "bags")),
    ProductFilter(brands=("zed",), price_min=20, price_max=70),
    ProductFilter(attributes={"color": ("red", "blue")}),
    ProductFilter(attributes={"size": (2, 3)}),
    ProductFilter(attributes={"material": ("wool",)}),  # not stored in Milvus: falls back
]


def test_postgres_and_milvus_give_the_results_of_sqlite_and_faiss(
    tmp_path, tiny_model_dir, postgres_url
):
    manifest = make_catalog(tmp_path / "source")
    base = Settings(
        _env_file=None, data_dir=tmp_path / "embedded", model_checkpoint=str(tiny_model_dir)
    )
    scaled = Settings(
        _env_file=None,
        data_dir=tmp_path / "scaled",
        model_checkpoint=str(tiny_model_dir),
        catalog_url=postgres_url,
        index_url=str(tmp_path / "vectors.db"),
        milvus_index_type="FLAT",
        filterable_attributes=["color", "size"],
    )
    encoder = create_encoder(base)
    with Engine(base, encoder=encoder) as embedded, Engine(scaled, encoder=encoder) as servers:
        assert embedded.index_path(manifest).added == servers.index_path(manifest).added == 24
        assert servers.live_index.index.kind == "milvus"
        for product_filter in QUERIES:
            for search in (
                lambda e, f=product_filter: e.search_text("a red shoe", limit=10, filters=f),
                lambda e, f=product_filter: e.search_similar("sku-4", limit=10, filters=f),
            ):
                a, b = search(embedded), search(servers)
                same_hits(a, b)
                assert a.total_found == b.total_found

        # Writes through the engine are searchable when the call returns.
        for engine in (embedded, servers):
            engine.upsert(ItemSpec("new", None, category="hats", price=1.0), image_bytes(7))
            engine.delete("sku-0")
        query = image_bytes(7)
        first_a = embedded.search_image(query, limit=3).hits[0].product.id
        first_b = servers.search_image(query, limit=3).hits[0].product.id
        assert first_a == first_b == "new"
        same_hits(servers.search_text("a hat", limit=30), embedded.search_text("a hat", limit=30))
        assert servers.info()["index"]["type"] == "milvus"
