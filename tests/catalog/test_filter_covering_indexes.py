"""Filter counts and id lists are answered from covering indexes (never the wide rows that
hold embeddings), and a catalog made before those indexes is upgraded in place."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from lookalike.catalog.base import Product, ProductFilter
from lookalike.catalog.filters import filter_sql
from lookalike.catalog.sql.dialects import SQLITE
from lookalike.catalog.sql.migrations import MIGRATIONS, apply_migrations
from lookalike.catalog.sqlite import SQLiteCatalog
from tests.support.synthetic_catalog import fill_catalog, unit_vectors


@pytest.mark.parametrize(
    "product_filter",
    [
        ProductFilter(categories=("a", "b")),
        ProductFilter(brands=("x",)),
        ProductFilter(price_min=10.0, price_max=20.0),
    ],
)
def test_filter_queries_use_a_covering_index(tmp_path, product_filter):
    catalog = SQLiteCatalog(tmp_path / "catalog.db")
    where, params = filter_sql(product_filter, SQLITE)
    conn = sqlite3.connect(tmp_path / "catalog.db")
    for select in ("COUNT(*)", "vector_id"):
        plan = conn.execute(
            f"EXPLAIN QUERY PLAN SELECT {select} FROM products"
            f" WHERE vector_id IS NOT NULL AND {where}",
            params,
        ).fetchall()
        detail = " ".join(row[-1] for row in plan)
        assert "COVERING INDEX" in detail, detail
    conn.close()
    catalog.close()


def test_a_first_version_catalog_is_upgraded(tmp_path):
    path = tmp_path / "catalog.db"
    conn = sqlite3.connect(path, isolation_level=None)
    apply_migrations(conn, SQLITE, MIGRATIONS[:1])
    conn.close()
    products = [Product(id=f"u{i}", category="a" if i % 2 else "b", price=i) for i in range(10)]
    catalog, _ = fill_catalog(path, products, unit_vectors(10, 8, np.random.default_rng(0)))
    assert catalog.count_matching(ProductFilter(categories=("a",))) == 5
    assert len(catalog.filter_vector_ids(ProductFilter(price_max=4.0))) == 5
    versions = sqlite3.connect(path).execute("SELECT MAX(version) FROM schema_version")
    assert versions.fetchone()[0] == MIGRATIONS[-1].number  # numbers are reserved: gaps
    catalog.close()
