"""Catalog-side parts of bounded state and trustworthy clicks, the same on every backend:
a logged search's results read back, logs pruned by age in batches, "who still points at
this content" for uploaded media, and filters whose size is capped before any SQL runs
(1000 attribute keys used to give SQLite "Expression tree is too large")."""

from __future__ import annotations

import time

import numpy as np
import pytest

from lookalike.catalog import (
    Catalog,
    ClickRecord,
    Product,
    ProductFilter,
    ProductWrite,
    SearchRecord,
)
from lookalike.catalog.filters import (
    MAX_FILTER_ATTRIBUTES,
    MAX_FILTER_TOTAL_VALUES,
    MAX_FILTER_VALUES,
    ValueSet,
    filter_sql,
)
from lookalike.catalog.sql import core
from lookalike.catalog.sql.dialects import SQLITE
from lookalike.errors import InvalidInput
from tests.support.catalog_backends import Backend

DAY = 86_400.0


def search(search_id: str, ts: float, ids: tuple[str, ...] = ("a", "b")) -> SearchRecord:
    return SearchRecord(
        search_id,
        ts,
        "text",
        ids,
        tuple(None for _ in ids),
        len(ids),
        1.0,
        similarities=tuple(0.5 for _ in ids),  # shown hits are logged, each with its score
    )


def test_a_logged_search_reads_back_its_results(catalog: Catalog) -> None:
    catalog.write_search_logs([search("s1", time.time(), ("p3", "p1", "p2"))], [])
    assert catalog.search_results("s1") == ("p3", "p1", "p2")
    assert catalog.search_results("nope") is None


def test_logs_are_pruned_by_age_in_batches(
    catalog: Catalog, backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "PRUNE_BATCH", 3)  # several batches for a handful of rows
    now = time.time()
    old = [search(f"old{i}", now - 100 * DAY) for i in range(7)]
    new = [search(f"new{i}", now - DAY) for i in range(2)]
    clicks = [ClickRecord(s.search_id, "a", 1, s.ts + 5) for s in (*old, *new)]
    catalog.write_search_logs([*old, *new], clicks)

    assert catalog.prune_search_logs(now - 90 * DAY) == (7, 7)
    assert backend.run("SELECT COUNT(*) FROM search_log")[0][0] == 2
    assert backend.run("SELECT COUNT(*) FROM click_log")[0][0] == 2
    # The pruned searches' shown hits (features included) went with them.
    assert backend.run("SELECT COUNT(*) FROM search_log_hits")[0][0] == 2 * 2
    assert catalog.search_results("old0") is None and catalog.search_results("new0")
    assert catalog.prune_search_logs(now - 90 * DAY) == (0, 0)  # again: nothing left


def test_image_sources_by_content_hash(catalog: Catalog) -> None:
    vector = np.ones(4, dtype=np.float32) / 2
    writes = [
        ProductWrite(Product("a", image_source="/m/ab/h1", content_hash="h1"), vector),
        ProductWrite(Product("b", image_source="/m/ab/h1", content_hash="h1"), vector),
        ProductWrite(Product("c", image_source="https://x/c.jpg", content_hash="h2"), vector),
        ProductWrite(Product("d", image_source=None, content_hash="h3")),
    ]
    catalog.upsert(writes)
    assert catalog.image_sources(["h1", "h2", "h3", "h4"]) == {"/m/ab/h1", "https://x/c.jpg"}
    catalog.delete(["a"])
    assert catalog.image_sources(["h1"]) == {"/m/ab/h1"}
    catalog.delete(["b"])
    assert catalog.image_sources(["h1"]) == set()
    assert catalog.image_sources([]) == set()


def test_the_schema_indexes_what_pruning_and_media_read(backend: Backend) -> None:
    backend.open().close()
    sql = (
        "SELECT name FROM sqlite_master WHERE type = 'index'"
        if backend.name == "sqlite"
        else "SELECT indexname FROM pg_indexes WHERE schemaname = 'public'"
    )
    names = {name for (name,) in backend.run(sql)}
    assert {"click_log_ts", "products_content_hash", "search_log_ts"} <= names


def test_a_filter_on_a_thousand_attributes_is_refused_before_any_sql(catalog: Catalog) -> None:
    huge = ProductFilter(attributes={f"k{i}": ("x",) for i in range(1000)})
    with pytest.raises(InvalidInput, match=f"at most {MAX_FILTER_ATTRIBUTES}"):
        catalog.count_matching(huge)
    # The largest allowed filter runs on every backend (SQLite included, whose expression
    # depth and bound-parameter limits the caps keep it under).
    values = MAX_FILTER_TOTAL_VALUES // MAX_FILTER_ATTRIBUTES
    widest = ProductFilter(
        attributes={f"k{i}": tuple(f"v{j}" for j in range(values)) for i in range(16)}
    )
    assert catalog.count_matching(widest) == 0


def test_the_caps_keep_sqlite_within_its_own_limits() -> None:
    """Without the caps, SQLite itself refuses these (the error the caps stand in for)."""
    import sqlite3

    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE products (attributes TEXT, vector_id INTEGER)")
    allowed = ProductFilter(attributes={f"k{i}": ("x",) for i in range(MAX_FILTER_ATTRIBUTES)})
    where, params = filter_sql(allowed, SQLITE)
    conn.execute(f"SELECT COUNT(*) FROM products WHERE {where}", params)
    # Render 1000 attributes the way the dialect would, bypassing the check.
    clauses, params = [], []
    for i in range(1000):
        sql, more = SQLITE.attribute(f"k{i}", ValueSet(strings=("x",)))
        clauses.append(sql)
        params.extend(more)
    with pytest.raises(sqlite3.OperationalError, match=r"too large|too many"):
        conn.execute(f"SELECT COUNT(*) FROM products WHERE {' AND '.join(clauses)}", params)


@pytest.mark.parametrize(
    ("product_filter", "message"),
    [
        (ProductFilter(categories=tuple(f"c{i}" for i in range(101))), "at most 100"),
        (ProductFilter(brands=("x" * 2001,)), "at most 2000"),
        (ProductFilter(attributes={"colour": tuple(range(MAX_FILTER_VALUES + 1))}), "per field"),
        (
            ProductFilter(
                categories=tuple(f"c{i}" for i in range(100)),
                brands=tuple(f"b{i}" for i in range(100)),
                attributes={f"k{i}": tuple(range(40)) for i in range(8)},
            ),
            f"at most {MAX_FILTER_TOTAL_VALUES}",
        ),
        (ProductFilter(attributes={"colour": (float("nan"),)}), "finite"),
        (ProductFilter(categories=("a\x00b",)), "NUL"),
    ],
)
def test_filters_over_the_caps_are_refused(
    catalog: Catalog, product_filter: ProductFilter, message: str
) -> None:
    with pytest.raises(InvalidInput, match=message):
        catalog.filter_vector_ids(product_filter)
