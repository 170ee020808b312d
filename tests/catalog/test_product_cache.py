"""The product cache serves a search the rows of its catalog version and no older: a write
through any handle on the catalog (another process's included) empties it, and a search
that read an older version goes past it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lookalike.catalog import Product, ProductWrite
from lookalike.catalog.product_cache import ProductCache
from lookalike.catalog.sqlite import SQLiteCatalog


def _write(pid: str, seed: int, price: float) -> ProductWrite:
    vector = np.random.default_rng(seed).normal(size=8).astype(np.float32)
    item = Product(id=pid, title=f"title {pid}", model_id="m1", price=price)
    return ProductWrite(item, vector / np.linalg.norm(vector))


def _catalogs(tmp_path: Path) -> tuple[SQLiteCatalog, SQLiteCatalog, dict[str, int]]:
    """Two handles on one catalog file (a server's and another writer's) and vector ids."""
    mine = SQLiteCatalog(tmp_path / "catalog.db")
    mine.upsert([_write(f"p{i}", i, 10.0 + i) for i in range(6)])
    theirs = SQLiteCatalog(tmp_path / "catalog.db")
    ids = {pid: p.vector_id for pid, p in mine.get_many([f"p{i}" for i in range(6)]).items()}
    return mine, theirs, ids


def test_rows_repeat_from_memory_until_any_handle_writes(tmp_path: Path):
    mine, theirs, ids = _catalogs(tmp_path)
    cache = ProductCache(100)
    wanted = [ids["p1"], ids["p2"]]
    first = cache.at(mine, mine.version()).by_vector_ids(wanted)
    again = cache.at(mine, mine.version()).by_vector_ids(wanted)
    assert again == first == mine.by_vector_ids(wanted)
    assert (cache.hits, cache.misses) == (2, 2)

    theirs.upsert([ProductWrite(Product(id="p1", title="title p1", model_id="m1", price=99.0))])
    theirs.delete(["p2"])
    after = cache.at(mine, mine.version()).by_vector_ids(wanted)
    assert after[ids["p1"]].price == 99.0  # not the cached 11.0
    assert ids["p2"] not in after
    assert cache.misses == 4


def test_a_search_of_an_older_version_neither_reads_nor_fills_it(tmp_path: Path):
    mine, theirs, ids = _catalogs(tmp_path)
    cache = ProductCache(100)
    old = mine.version()
    theirs.upsert([ProductWrite(Product(id="p3", title="title p3", model_id="m1", price=1.0))])
    new = mine.version()
    assert new > old
    assert cache.at(mine, new).by_vector_ids([ids["p3"]])[ids["p3"]].price == 1.0
    # A search that read `old` before the write: served by the catalog, not cached.
    cache.at(mine, old).by_vector_ids([ids["p4"]])
    assert len(cache) == 1
    assert cache.at(mine, new).by_vector_ids([ids["p4"]])[ids["p4"]].price == 14.0
    assert len(cache) == 2


def test_the_least_recently_used_go_first(tmp_path: Path):
    mine, _, ids = _catalogs(tmp_path)
    cache = ProductCache(3)
    rows = cache.at(mine, mine.version())
    rows.by_vector_ids([ids["p0"], ids["p1"], ids["p2"]])
    rows.by_vector_ids([ids["p0"]])  # p1 is now the least recently used
    rows.by_vector_ids([ids["p5"]])
    assert len(cache) == 3
    hits = cache.hits
    rows.by_vector_ids([ids["p0"], ids["p2"], ids["p5"]])
    assert cache.hits == hits + 3
    rows.by_vector_ids([ids["p1"]])
    assert cache.hits == hits + 3
