"""`lookalike migrate`: an embedded installation copied to PostgreSQL + Milvus, idempotently."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("pymilvus", reason="needs lookalike[milvus]")

from lookalike.catalog import Product, ProductFilter, ProductWrite
from lookalike.catalog.postgres import PostgresCatalog
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.cli import app
from lookalike.config import Settings
from lookalike.index import FlatIndex, IndexMeta, open_index
from lookalike.index.live import rebuild_from_catalog

DIM = 12
MODEL = "m1"


def vectors(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def embedded_install(data_dir: Path, n: int = 60) -> SQLiteCatalog:
    catalog = SQLiteCatalog(data_dir / "catalog.db")
    catalog.upsert(
        [
            ProductWrite(
                Product(
                    f"p{i}",
                    title=f"item {i}",
                    category=["a", "b", "c"][i % 3],
                    price=float(i),
                    attributes={"color": ["red", "blue"][i % 2]},
                    content_hash=f"h{i}",
                    model_id=MODEL,
                ),
                v,
            )
            for i, v in enumerate(vectors(n, 0))
        ]
        + [ProductWrite(Product("no-image", title="metadata only"))]
    )
    return catalog


def migrate(data_dir: Path, catalog_url: str, index_url: str):
    result = CliRunner().invoke(
        app,
        ["migrate", "--catalog", catalog_url, "--index", index_url, "--data-dir", str(data_dir)],
    )
    assert result.exit_code == 0, result.output
    return result.output


def comparable(p: Product) -> tuple:
    return (p.title, p.category, p.brand, p.price, p.attributes, p.content_hash, p.model_id)


def test_migrate_copies_without_reencoding_and_is_idempotent(tmp_path, postgres_url, monkeypatch):
    monkeypatch.setenv("LOOKALIKE_FILTERABLE_ATTRIBUTES", '["color"]')
    data_dir = tmp_path / "data"
    source = embedded_install(data_dir)
    index_url = str(tmp_path / "vectors.db")

    output = migrate(data_dir, postgres_url, index_url)
    assert "61 copied, 0 metadata updated, 0 unchanged" in output
    assert "products" in output  # the progress bar
    target = PostgresCatalog(postgres_url)
    assert {p.id: comparable(p) for p in target.iter_products()} == {
        p.id: comparable(p) for p in source.iter_products()
    }
    for i in (0, 17, 59):
        np.testing.assert_array_equal(target.embedding(f"p{i}")[1], source.embedding(f"p{i}")[1])
    head = target.log_head()

    # The vector store answers as the embedded FAISS index does, filters included.
    settings = Settings(
        data_dir=tmp_path / "server",
        catalog_url=postgres_url,
        index_url=index_url,
        filterable_attributes=["color"],
    )
    milvus = open_index(settings, target, DIM, MODEL).index
    assert not milvus.created and len(milvus) == 60
    faiss = rebuild_from_catalog(FlatIndex(IndexMeta("flat", DIM, MODEL), None), source)
    query = vectors(1, 1)
    red = ProductFilter(categories=("a",), attributes={"color": ("red",)})
    assert milvus.supports_filter(red)
    m_ids = milvus.search_filtered(query, 10, red)[1][0]
    f_ids = faiss.search(query, 10, allowed_ids=source.filter_vector_ids(red))[1][0]
    by_m = target.by_vector_ids([i for i in m_ids if i >= 0])
    by_f = source.by_vector_ids([i for i in f_ids if i >= 0])
    assert [by_m[i].id for i in m_ids if i >= 0] == [by_f[i].id for i in f_ids if i >= 0]

    # Again: nothing to copy, nothing appended to the log.
    output = migrate(data_dir, postgres_url, index_url)
    assert "0 copied, 0 metadata updated, 61 unchanged" in output
    assert target.log_head() == head

    # Changes since: a new product, a new image, a price change.
    source.upsert(
        [
            ProductWrite(Product("new", content_hash="hn", model_id=MODEL), vectors(1, 2)[0]),
            ProductWrite(Product("p1", content_hash="h1b", model_id=MODEL), vectors(1, 3)[0]),
            ProductWrite(
                Product(
                    "p2",
                    title="item 2",
                    category="c",
                    price=99.0,
                    attributes={"color": "red"},
                    content_hash="h2",
                    model_id=MODEL,
                )
            ),
        ]
    )
    output = migrate(data_dir, postgres_url, index_url)
    assert "2 copied, 1 metadata updated, 59 unchanged" in output
    assert "61 vectors" in output
    np.testing.assert_array_equal(target.embedding("p1")[1], vectors(1, 3)[0])
    milvus = open_index(settings, target, DIM, MODEL).index
    pricey = milvus.search_filtered(query, 5, ProductFilter(price_min=90))[1][0]
    assert [target.by_vector_ids([i])[i].id for i in pricey if i >= 0] == ["p2"]
    # Versions come along: p1 and p2 were written twice in the source.
    assert target.versions(["p0", "p1", "p2"]) == source.versions(["p0", "p1", "p2"])
    assert target.get("p1").version == 2

    # A product written in the target since (a newer version) is kept as it is.
    target.upsert([ProductWrite(Product("p3", title="edited on the server"), version=100)])
    source.upsert([ProductWrite(Product("p3", title="edited at the source"))])
    output = migrate(data_dir, postgres_url, index_url)
    assert "0 copied, 0 metadata updated, 61 unchanged, 1 newer in the target" in output
    assert target.get("p3").title == "edited on the server"
    target.close()
    source.close()


def test_migrating_onto_itself_is_refused(tmp_path):
    data_dir = tmp_path / "data"
    embedded_install(data_dir, n=2).close()
    result = CliRunner().invoke(
        app,
        ["migrate", "--catalog", f"sqlite:///{data_dir / 'catalog.db'}", "-d", str(data_dir)],
    )
    assert result.exit_code == 2 and "source catalog" in result.output
