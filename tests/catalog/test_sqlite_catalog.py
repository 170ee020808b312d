"""SQLite catalog: products, stored embeddings, the change log, filters, migrations."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookalike.catalog import Product, ProductFilter, ProductWrite
from lookalike.catalog.migrations import SQLITE_MIGRATIONS
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.errors import CatalogError, InvalidInput, NotFound


def vec(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def catalog(tmp_path: Path):
    cat = SQLiteCatalog(tmp_path / "catalog.db")
    yield cat
    cat.close()


def product(pid: str, **kw) -> Product:
    return Product(id=pid, title=kw.pop("title", f"title {pid}"), model_id="m1", **kw)


def test_upsert_get_and_embedding_round_trip(catalog: SQLiteCatalog):
    catalog.upsert(
        [
            ProductWrite(
                product(
                    "a",
                    category="shoes",
                    brand="acme",
                    price=9.5,
                    attributes={"rating": 4.5, "tags": ["x"]},
                ),
                vec(1),
            )
        ]
    )
    got = catalog.get("a")
    assert (got.category, got.brand, got.price, got.attributes) == (
        "shoes",
        "acme",
        9.5,
        {"rating": 4.5, "tags": ["x"]},
    )
    vector_id, embedding = catalog.embedding("a")
    assert vector_id == got.vector_id
    np.testing.assert_array_equal(embedding, vec(1))
    with pytest.raises(NotFound):
        catalog.get("missing")


def test_each_new_embedding_gets_a_fresh_vector_id_and_log_entries(catalog: SQLiteCatalog):
    catalog.upsert([ProductWrite(product("a"), vec(1))])
    first = catalog.get("a").vector_id
    catalog.upsert([ProductWrite(product("a"), vec(2))])
    second = catalog.get("a").vector_id
    assert second != first
    changes = catalog.changes_since(0)
    assert list(changes.add_ids) == [second] and list(changes.remove_ids) == [first]
    np.testing.assert_array_equal(changes.add_vectors[0], vec(2))
    assert changes.head == catalog.log_head() == 3


def test_metadata_only_update_keeps_the_vector(catalog: SQLiteCatalog):
    catalog.upsert([ProductWrite(product("a"), vec(1))])
    before = catalog.get("a")
    head = catalog.log_head()
    catalog.upsert([ProductWrite(product("a", title="new title", price=3.0))])
    after = catalog.get("a")
    assert after.title == "new title" and after.vector_id == before.vector_id
    assert after.created_at == before.created_at
    # Logged as a metadata change only: no vector to add or remove (a vector database that
    # stores filterable fields beside the vectors re-reads them).
    changes = catalog.changes_since(head)
    assert list(changes.add_ids) == [] and list(changes.remove_ids) == []
    assert list(changes.update_ids) == [before.vector_id]


def test_delete_logs_a_remove_and_forgets_the_product(catalog: SQLiteCatalog):
    catalog.upsert([ProductWrite(product(p), vec(i)) for i, p in enumerate("abc")])
    head = catalog.log_head()
    assert catalog.delete(["b", "zzz"]) == 1
    changes = catalog.changes_since(head)
    assert len(changes.remove_ids) == 1 and not len(changes.add_ids)
    assert set(catalog.get_many(["a", "b", "c"])) == {"a", "c"}


def test_changes_since_filters_by_model(catalog: SQLiteCatalog):
    catalog.upsert([ProductWrite(product("a"), vec(1))])
    catalog.upsert([ProductWrite(Product(id="b", model_id="m2"), vec(2))])
    changes = catalog.changes_since(0, model_id="m1")
    assert len(changes.add_ids) == 1
    assert catalog.get("b").vector_id in set(changes.remove_ids)
    ids = np.concatenate([ids for ids, _ in catalog.iter_embeddings(model_id="m2")])
    assert list(ids) == [catalog.get("b").vector_id]


def test_iter_embeddings_in_blocks(catalog: SQLiteCatalog):
    catalog.upsert([ProductWrite(product(f"p{i}"), vec(i)) for i in range(25)])
    blocks = list(catalog.iter_embeddings(batch_size=10))
    assert [len(ids) for ids, _ in blocks] == [10, 10, 5]
    assert all(v.shape == (len(ids), 8) for ids, v in blocks)


def test_stats_facets_meta(catalog: SQLiteCatalog):
    catalog.upsert(
        [
            ProductWrite(product("a", category="x", price=1.0), vec(1)),
            ProductWrite(product("b", category="x", price=5.0), vec(2)),
            ProductWrite(product("c", category="y")),
        ]
    )
    stats = catalog.stats()
    assert (stats.products, stats.searchable, stats.models) == (3, 2, {"m1": 2})
    facets = catalog.facets()
    assert facets["category"][0] == {"value": "x", "count": 2}
    assert facets["price"] == {"min": 1.0, "max": 5.0}
    catalog.set_meta("k", "v1")
    catalog.set_meta("k", "v2")
    assert catalog.get_meta("k") == "v2" and catalog.get_meta("nope") is None


def test_bad_attribute_name_in_filter_is_refused(catalog: SQLiteCatalog):
    with pytest.raises(InvalidInput):
        catalog.filter_vector_ids(ProductFilter(attributes={"x') OR 1=1 --": ("a",)}))


def test_schema_is_versioned_and_reopening_is_a_no_op(tmp_path: Path):
    path = tmp_path / "c.db"
    SQLiteCatalog(path).close()
    SQLiteCatalog(path).close()
    rows = sqlite3.connect(path).execute("SELECT version FROM schema_version").fetchall()
    assert rows == [(i + 1,) for i in range(len(SQLITE_MIGRATIONS))]


def test_newer_schema_is_refused(tmp_path: Path):
    path = tmp_path / "c.db"
    SQLiteCatalog(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO schema_version VALUES (99, 'future', 0)")
    with pytest.raises(CatalogError, match="newer"):
        SQLiteCatalog(path)


CATEGORIES = ["shoes", "bags", "hats"]
BRANDS = ["acme", "zeta", None]

products_strategy = st.lists(
    st.tuples(
        st.sampled_from(CATEGORIES),
        st.sampled_from(BRANDS),
        st.one_of(st.none(), st.floats(0, 100, allow_nan=False)),
        st.sampled_from(["red", "blue", 3, 4.5]),
    ),
    min_size=1,
    max_size=30,
)
filter_strategy = st.builds(
    ProductFilter,
    categories=st.lists(st.sampled_from(CATEGORIES), max_size=2).map(tuple),
    brands=st.lists(st.sampled_from(["acme", "zeta"]), max_size=2).map(tuple),
    price_min=st.one_of(st.none(), st.floats(0, 100, allow_nan=False)),
    price_max=st.one_of(st.none(), st.floats(0, 100, allow_nan=False)),
    attributes=st.one_of(
        st.just({}),
        st.lists(st.sampled_from(["red", "blue", 3, 4.5]), min_size=1, max_size=2).map(
            lambda v: {"colour": tuple(v)}
        ),
    ),
)


@settings(max_examples=60, deadline=None)
@given(rows=products_strategy, product_filter=filter_strategy)
def test_sql_filters_agree_with_the_python_reference(tmp_path_factory, rows, product_filter):
    cat = SQLiteCatalog(tmp_path_factory.mktemp("f") / "c.db")
    try:
        writes = [
            ProductWrite(
                product(f"p{i}", category=c, brand=b, price=p, attributes={"colour": colour}),
                vec(i),
            )
            for i, (c, b, p, colour) in enumerate(rows)
        ]
        cat.upsert(writes)
        expected = sorted(
            cat.get(w.product.id).vector_id for w in writes if product_filter.matches(w.product)
        )
        assert list(cat.filter_vector_ids(product_filter)) == expected
        assert cat.count_matching(product_filter) == len(expected)
    finally:
        cat.close()
