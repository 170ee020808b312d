"""The whole engine on PostgreSQL + Milvus behaves as on SQLite + FAISS: configuration only."""

from __future__ import annotations

import pytest

pytest.importorskip("pymilvus", reason="needs lookalike[milvus]")

from lookalike.catalog import ProductFilter
from lookalike.config import Settings
from lookalike.encode import create_encoder
from lookalike.engine import Engine
from lookalike.ingest.sources import ItemSpec
from tests.support.image_catalogs import png_bytes
from tests.support.manifest_catalog import assert_same_hits, write_manifest

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
    manifest = write_manifest(tmp_path / "source")
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
                assert_same_hits(a, b)
                assert a.total_found == b.total_found

        # Writes through the engine are searchable when the call returns.
        for engine in (embedded, servers):
            engine.upsert(ItemSpec("new", None, category="hats", price=1.0), png_bytes(7))
            engine.delete("sku-0")
        query = png_bytes(7)
        first_a = embedded.search_image(query, limit=3).hits[0].product.id
        first_b = servers.search_image(query, limit=3).hits[0].product.id
        assert first_a == first_b == "new"
        assert_same_hits(
            servers.search_text("a hat", limit=30), embedded.search_text("a hat", limit=30)
        )
        assert servers.info()["index"]["type"] == "milvus"
