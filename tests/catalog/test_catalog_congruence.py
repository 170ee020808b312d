"""The Catalog protocol's behaviour, the same on every backend (congruence tests).

Each test runs once per backend of `tests/support/catalog_backends.py` (SQLite in a temp
dir, PostgreSQL on a real server): products, stored embeddings, the change log, filters
held to `ProductFilter.matches`, facets, stats, meta, the version counter, the search and
click logs, API keys, and the schema's migrations. Where a result is compared rather than spelled
out, the reference is a SQLite catalog given the same operations.
"""

from __future__ import annotations

import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lookalike.catalog import (
    Catalog,
    ClickRecord,
    DayTotals,
    Product,
    ProductFilter,
    ProductWrite,
    SearchRecord,
)
from lookalike.catalog.changes import OP_METADATA
from lookalike.catalog.keys import ApiKey, new_token, token_digest
from lookalike.catalog.sql.migrations import MIGRATIONS
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.errors import CatalogError, InvalidInput, NotFound
from lookalike.index import FlatIndex, IndexMeta, LiveIndex
from tests.support.catalog_backends import Backend
from tests.support.legacy_catalog_schema import write_legacy_schema

DIM = 8
RELAXED = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def vec(seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def product(pid: str, **kw) -> Product:
    return Product(id=pid, title=kw.pop("title", f"title {pid}"), model_id="m1", **kw)


def write(pid: str, seed: int | None, **fields) -> ProductWrite:
    item = Product(id=pid, model_id="m1", content_hash=f"h{seed}", **fields)
    return ProductWrite(item, None if seed is None else vec(seed))


@pytest.fixture
def reference(tmp_path: Path):
    """A SQLite catalog, for results compared rather than spelled out."""
    opened = SQLiteCatalog(tmp_path / "reference" / "catalog.db")
    yield opened
    opened.close()


# --- products, embeddings and the change log ------------------------------------------
def test_upsert_get_and_embedding_round_trip(catalog: Catalog):
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


def test_reads_and_errors(catalog: Catalog):
    catalog.upsert([write("a", 1, title="x", attributes={"k": [1, 2]})])
    assert catalog.get("a").attributes == {"k": [1, 2]}
    vector_id, embedding = catalog.embedding("a")
    assert vector_id == catalog.get("a").vector_id
    np.testing.assert_allclose(embedding, vec(1))
    with pytest.raises(NotFound):
        catalog.get("zzz")
    catalog.upsert([write("meta-only", None)])
    with pytest.raises(NotFound, match="has no embedding"):
        catalog.embedding("meta-only")
    assert catalog.get_many([]) == {} and catalog.by_vector_ids([]) == {}
    assert catalog.embeddings_by_vector_ids([]) == {}


def test_each_new_embedding_gets_a_fresh_vector_id_and_log_entries(catalog: Catalog):
    catalog.upsert([ProductWrite(product("a"), vec(1))])
    first = catalog.get("a").vector_id
    catalog.upsert([ProductWrite(product("a"), vec(2))])
    second = catalog.get("a").vector_id
    assert second != first
    changes = catalog.changes_since(0)
    assert list(changes.add_ids) == [second] and list(changes.remove_ids) == [first]
    np.testing.assert_array_equal(changes.add_vectors[0], vec(2))
    assert changes.head == catalog.log_head() == 3


def test_metadata_only_update_keeps_the_vector(catalog: Catalog):
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


def test_metadata_change_of_an_embedded_product_is_logged(catalog: Catalog, backend: Backend):
    catalog.upsert([write("a", 1, category="x")])
    head = catalog.log_head()
    catalog.upsert([write("a", None, category="y")])
    changes = catalog.changes_since(head)
    assert changes.update_ids.tolist() == [catalog.get("a").vector_id]
    assert changes.add_ids.tolist() == [] and changes.remove_ids.tolist() == []
    np.testing.assert_allclose(changes.update_vectors[0], vec(1))
    ops = backend.run("SELECT op FROM vector_log ORDER BY seq")
    assert [o for (o,) in ops][-1] == OP_METADATA


def test_delete_logs_a_remove_and_forgets_the_product(catalog: Catalog):
    catalog.upsert([ProductWrite(product(p), vec(i)) for i, p in enumerate("abc")])
    head = catalog.log_head()
    assert catalog.delete(["b", "zzz"]) == 1
    changes = catalog.changes_since(head)
    assert len(changes.remove_ids) == 1 and not len(changes.add_ids)
    assert set(catalog.get_many(["a", "b", "c"])) == {"a", "c"}
    assert catalog.delete([]) == 0 and catalog.delete(["zzz"]) == 0


def test_a_product_written_twice_in_one_batch_ends_as_its_last_write(catalog: Catalog):
    catalog.upsert(
        [
            write("m", None, title="metadata first", category="x"),
            write("m", 1, title="then an image", category="y"),
            write("m", None, title="then metadata again", category="z"),
        ]
    )
    got = catalog.get("m")
    # A metadata write keeps the content hash and model of the stored embedding.
    assert (got.title, got.category, got.content_hash) == ("then metadata again", "z", "h1")
    vector_id, embedding = catalog.embedding("m")
    np.testing.assert_array_equal(embedding, vec(1))
    # One add, and a metadata entry against the vector the batch just added.
    ops = catalog.changes_since(0)
    assert ops.add_ids.tolist() == [vector_id] and ops.remove_ids.tolist() == []
    assert ops.head == catalog.log_head() == 2


def test_changes_since_filters_by_model(catalog: Catalog):
    catalog.upsert([ProductWrite(product("a"), vec(1))])
    catalog.upsert([ProductWrite(Product(id="b", model_id="m2"), vec(2))])
    changes = catalog.changes_since(0, model_id="m1")
    assert len(changes.add_ids) == 1
    assert catalog.get("b").vector_id in set(changes.remove_ids)
    ids = np.concatenate([ids for ids, _ in catalog.iter_embeddings(model_id="m2")])
    assert list(ids) == [catalog.get("b").vector_id]


def test_changes_since_stops_at_the_limit(catalog: Catalog):
    catalog.upsert([ProductWrite(product(f"p{i}"), vec(i)) for i in range(5)])
    first = catalog.changes_since(0, limit=2)
    rest = catalog.changes_since(first.head)
    assert first.head == 2 and first.add_ids.tolist() == [1, 2]
    assert rest.head == 5 and rest.add_ids.tolist() == [3, 4, 5]


def test_iter_embeddings_in_blocks(catalog: Catalog):
    catalog.upsert([ProductWrite(product(f"p{i}"), vec(i)) for i in range(25)])
    blocks = list(catalog.iter_embeddings(batch_size=10))
    assert [len(ids) for ids, _ in blocks] == [10, 10, 5]
    assert all(v.shape == (len(ids), DIM) for ids, v in blocks)
    assert [p.id for p in catalog.iter_products(batch_size=7)] == [f"p{i}" for i in range(25)]


def test_stats_facets_meta(catalog: Catalog):
    catalog.upsert(
        [
            ProductWrite(product("a", category="x", price=1.0), vec(1)),
            ProductWrite(product("b", category="x", price=5.0), vec(2)),
            ProductWrite(product("c", category="y")),
        ]
    )
    stats = catalog.stats()
    assert (stats.products, stats.searchable, stats.models) == (3, 2, {"m1": 2})
    assert stats.log_head == catalog.log_head() == 2 and stats.last_update is not None
    facets = catalog.facets()
    assert facets["category"][0] == {"value": "x", "count": 2}
    assert facets["price"] == {"min": 1.0, "max": 5.0}
    catalog.set_meta("k", "v1")
    catalog.set_meta("k", "v2")
    assert catalog.get_meta("k") == "v2" and catalog.get_meta("nope") is None


def test_facets_sort_by_count_then_bytes_and_honour_the_limit(catalog: Catalog):
    names = ["b", "B", "Äpfel", "apple", "a"]
    catalog.upsert([write(f"p{i}", i, category=c) for i, c in enumerate(names)])
    catalog.upsert([write("q", 9, category="b")])
    assert [f["value"] for f in catalog.facets()["category"]] == ["b", "B", "a", "apple", "Äpfel"]
    assert [f["value"] for f in catalog.facets(limit=2)["category"]] == ["b", "B"]


def test_version_moves_with_every_product_write_and_only_then(catalog: Catalog):
    v0 = catalog.version()
    catalog.upsert([write("a", 1)])
    v1 = catalog.version()
    catalog.upsert([write("a", None, price=2.0)])  # metadata only: the change log is quiet
    v2 = catalog.version()
    catalog.set_meta("k", "v")
    catalog.write_search_logs([search("s", 0.0)], [])
    assert catalog.delete(["missing"]) == 0
    v3 = catalog.version()
    catalog.delete(["a"])
    assert v0 < v1 < v2 == v3 < catalog.version()


def test_a_catalog_has_an_id_that_stays(catalog: Catalog, backend: Backend):
    catalog_id = catalog.get_meta("catalog_id")
    assert catalog_id and len(catalog_id) == 32
    reopened = backend.open()
    try:
        assert reopened.get_meta("catalog_id") == catalog_id
    finally:
        reopened.close()


def test_describe_names_the_backend_and_its_schema(catalog: Catalog, backend: Backend):
    described = catalog.describe()
    assert described["backend"] == backend.name
    assert described["schema"] == MIGRATIONS[-1].name
    assert set(described["capabilities"]) == {"shared_between_machines", "concurrent_writers"}


# --- the same operations, the same results ---------------------------------------------
SCRIPT = [
    (
        "upsert",
        [
            write("a", 1, title="red shoe", category="shoes", brand="acme", price=10.0),
            write("b", 2, title="blue shoe", category="shoes", brand="zed", price=25.5),
            write("c", 3, category="hats", attributes={"color": "red", "size": 3}),
            write("d", None, title="no image yet", category="hats"),
        ],
    ),
    ("upsert", [write("b", 4, title="blue shoe v2", category="shoes", brand="zed", price=20)]),
    ("upsert", [write("c", None, category="hats", attributes={"color": "blue", "size": 3.0})]),
    ("delete", ["a", "missing"]),
    # The same product twice in one batch: the second write replaces the first's vector.
    ("upsert", [write("e", 5, category="bags"), write("e", 6, category="bags", price=1.5)]),
    ("upsert", [write("f", 7, category="Äpfel", brand="acme"), write("g", 8, category="apple")]),
]


def run_script(catalog: Catalog) -> list:
    """Apply SCRIPT, recording every read after every step."""
    observed = []
    for op, arg in SCRIPT:
        if op == "upsert":
            catalog.upsert(arg)
        else:
            observed.append(("deleted", catalog.delete(arg)))
        observed.append(snapshot(catalog))
    return observed


def snapshot(catalog: Catalog) -> dict:
    stats = catalog.stats()
    products = list(catalog.iter_products(batch_size=2))
    embeddings = {
        int(i): v.tolist()
        for ids, vectors in catalog.iter_embeddings(batch_size=2)
        for i, v in zip(ids, vectors, strict=True)
    }
    changes = catalog.changes_since(0)
    return {
        "products": [_comparable(p) for p in products],
        "by_vector": {k: _comparable(p) for k, p in catalog.by_vector_ids(range(30)).items()},
        "embeddings": embeddings,
        "embeddings_m1": sorted(catalog.embeddings_by_vector_ids(range(30), "m1")),
        "changes": (
            changes.head,
            changes.remove_ids.tolist(),
            changes.add_ids.tolist(),
            changes.update_ids.tolist(),
            changes.add_vectors.tolist(),
        ),
        "head": catalog.log_head(),
        "version": catalog.version(),
        "has_catalog_id": bool(catalog.get_meta("catalog_id")),
        "stats": (stats.products, stats.searchable, stats.models, stats.log_head),
        "facets": catalog.facets(),
        "filter": catalog.filter_vector_ids(ProductFilter(categories=("shoes", "bags"))).tolist(),
        "count": catalog.count_matching(ProductFilter(price_min=5)),
    }


def _comparable(p: Product) -> tuple:
    # Timestamps differ between two runs; everything else must be equal.
    return (
        p.id,
        p.title,
        p.category,
        p.brand,
        p.price,
        p.image_source,
        p.attributes,
        p.content_hash,
        p.model_id,
        p.vector_id,
    )


def test_same_operations_give_the_same_results(catalog: Catalog, reference: SQLiteCatalog):
    observed = run_script(catalog)
    assert observed == run_script(reference)
    final = observed[-1]
    # Spelled out too, so that the reference run itself is checked.
    assert [p[0] for p in final["products"]] == ["b", "c", "d", "e", "f", "g"]
    assert final["stats"] == (6, 5, {"m1": 5}, 12) and final["head"] == 12
    assert final["version"] == 6 and final["count"] == 1  # b at 20.0; e at 1.5
    assert final["facets"]["category"][0] == {"value": "hats", "count": 2}


# --- filters: every backend agrees with ProductFilter.matches ---------------------------
def test_bad_attribute_name_in_filter_is_refused(catalog: Catalog):
    with pytest.raises(InvalidInput):
        catalog.filter_vector_ids(ProductFilter(attributes={"x') OR 1=1 --": ("a",)}))
    with pytest.raises(InvalidInput, match="bad attribute name"):
        catalog.filter_vector_ids(ProductFilter(attributes={"x'; drop table products; --": ("1",)}))


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


def _replace_all(catalog: Catalog, writes: list[ProductWrite]) -> None:
    catalog.delete([p.id for p in catalog.iter_products()])
    catalog.upsert(writes)


@settings(RELAXED, max_examples=60)
@given(rows=products_strategy, product_filter=filter_strategy)
def test_sql_filters_agree_with_the_python_reference(catalog: Catalog, rows, product_filter):
    writes = [
        ProductWrite(
            product(f"p{i}", category=c, brand=b, price=p, attributes={"colour": colour}),
            vec(i),
        )
        for i, (c, b, p, colour) in enumerate(rows)
    ]
    _replace_all(catalog, writes)
    expected = sorted(
        catalog.get(w.product.id).vector_id for w in writes if product_filter.matches(w.product)
    )
    assert list(catalog.filter_vector_ids(product_filter)) == expected
    assert catalog.count_matching(product_filter) == len(expected)


SCALAR_VALUES = ["1", "a", "A", "", "[1]", 0, 1, 5, 1.0, 5.0, 0.5, True, False, None]
SCALARS = st.sampled_from(SCALAR_VALUES)
VALUES = st.one_of(SCALARS, st.just([1]), st.just({"x": 1}))
PRODUCTS = st.lists(
    st.fixed_dictionaries(
        {
            "category": st.sampled_from(["shoes", "hats", "Shoes", None]),
            "brand": st.sampled_from(["acme", "zed", None]),
            "price": st.one_of(st.none(), st.sampled_from([0.0, 1.0, 9.99, 10.0, 50.0])),
            "attributes": st.dictionaries(st.sampled_from(["color", "size"]), VALUES, max_size=2),
        }
    ),
    min_size=1,
    max_size=12,
)
FILTERS = st.builds(
    ProductFilter,
    categories=st.lists(st.sampled_from(["shoes", "hats", "bags"]), max_size=2).map(tuple),
    brands=st.lists(st.sampled_from(["acme", "zed", None]), max_size=2).map(tuple),
    price_min=st.one_of(st.none(), st.sampled_from([0.0, 5.0, 10.0])),
    price_max=st.one_of(st.none(), st.sampled_from([9.99, 10.0, 100.0])),
    attributes=st.dictionaries(
        st.sampled_from(["color", "size"]), st.lists(SCALARS, max_size=3).map(tuple), max_size=2
    ),
)


def test_every_attribute_value_against_every_filter_value(catalog: Catalog):
    """Exhaustive over the tricky pairs: "1" vs 1, 1 vs 1.0 vs True, None vs missing, lists."""
    values = [*SCALAR_VALUES, [1], {"x": 1}, "missing"]
    catalog.upsert(
        [
            ProductWrite(
                Product(id=f"p{i}", attributes={} if v == "missing" else {"color": v}), vec(i)
            )
            for i, v in enumerate(values)
        ]
    )
    allowed_sets = [(v,) for v in SCALAR_VALUES] + list(itertools.combinations(SCALAR_VALUES, 2))
    for allowed in allowed_sets:
        product_filter = ProductFilter(attributes={"color": allowed})
        expected = sorted(
            f"p{i}"
            for i, v in enumerate(values)
            if product_filter.matches(
                Product("x", attributes={} if v == "missing" else {"color": v})
            )
        )
        ids = catalog.filter_vector_ids(product_filter)
        got = sorted(p.id for p in catalog.by_vector_ids(ids).values())
        assert got == expected, allowed


@settings(RELAXED, max_examples=60)
@given(products=PRODUCTS, product_filter=FILTERS)
def test_filters_match_the_reference_semantics(catalog: Catalog, products, product_filter):
    _replace_all(
        catalog,
        [ProductWrite(Product(id=f"p{i}", **fields), vec(i)) for i, fields in enumerate(products)],
    )
    expected = sorted(
        f"p{i}"
        for i, fields in enumerate(products)
        if product_filter.matches(Product("x", **fields))
    )
    ids = catalog.filter_vector_ids(product_filter)
    got = sorted(p.id for p in catalog.by_vector_ids(ids).values())
    assert got == expected
    assert catalog.count_matching(product_filter) == len(expected)


@pytest.mark.parametrize(
    "bad",
    [
        ProductFilter(categories=(5,)),  # type: ignore[arg-type]
        ProductFilter(attributes={"size": (float("nan"),)}),
        ProductFilter(attributes={"size": ([1],)}),
        ProductFilter(attributes={"size": "red"}),  # a string, not a list of values
        ProductFilter(price_min=float("nan")),
    ],
)
def test_filters_a_backend_cannot_match_exactly_are_refused(catalog: Catalog, bad):
    with pytest.raises(InvalidInput):
        catalog.filter_vector_ids(bad)


def test_a_nan_price_is_stored_as_no_price(catalog: Catalog):
    catalog.upsert([write("n", 1, price=float("nan")), write("p", 2, price=3.0)])
    assert catalog.get("n").price is None
    assert catalog.count_matching(ProductFilter(price_max=100.0)) == 1


# --- writers and a reader tailing the log -----------------------------------------------
def test_concurrent_writers_never_make_a_tailing_reader_skip_an_entry(backend: Backend):
    """Writers on separate catalogs (pools, connections) commit while an index tails the log;
    at the end the index must hold exactly the catalog's vectors. A log that is not
    commit-ordered lets the tailer move its watermark past an entry that commits later,
    which it never sees."""
    writers = [backend.open() for _ in range(4)]
    reader = backend.open()
    assert reader.capabilities.concurrent_writers
    live = LiveIndex(FlatIndex(IndexMeta("flat", DIM, "m1"), None), reader)
    stop = threading.Event()

    def tail():
        while not stop.is_set():
            live.catch_up()

    def work(n: int, catalog: Catalog):
        for i in range(40):
            catalog.upsert([write(f"p{n}-{i % 7}", n * 1000 + i), write(f"q{i % 5}", i)])
            if i % 9 == 0:
                catalog.delete([f"p{n}-{(i + 3) % 7}"])

    tailer = threading.Thread(target=tail)
    tailer.start()
    threads = [threading.Thread(target=work, args=(n, c)) for n, c in enumerate(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    tailer.join()
    live.catch_up()
    expected = reader.filter_vector_ids(ProductFilter())
    _, found = live.index.search(np.eye(DIM, dtype=np.float32)[:1], len(live.index) + 1)
    assert sorted(int(i) for i in found[0] if i >= 0) == expected.tolist()
    for catalog in [*writers, reader]:
        catalog.close()


# --- search and click logs --------------------------------------------------------------
DAY = 86_400.0
T0 = 1_700_000_000.0 - 1_700_000_000.0 % DAY  # a UTC midnight: 2023-11-14


def search(search_id: str, ts: float, n: int = 4, categories=None) -> SearchRecord:
    ids = tuple(f"p{i}" for i in range(n))
    cats = tuple(categories) if categories is not None else ("x",) * n
    return SearchRecord(search_id, ts, "text", ids, cats, total_found=n * 10, latency_ms=5.0)


def test_search_and_click_logs_sum_per_utc_day(catalog: Catalog):
    day1 = [
        search("a", T0 + 10, categories=("x", "y", "x", "z")),  # 3 of 4 distinct
        search("b", T0 + 20, categories=("x", None, None, "x")),  # 1 of 2 with a category
        search("c", T0 + DAY - 1, categories=(None, None, None, None)),  # no diversity
    ]
    day2 = [search("d", T0 + DAY, n=2, categories=("x", "y"))]
    clicks = [
        ClickRecord("a", "p2", 3, T0 + 11),
        ClickRecord("a", "p0", 1, T0 + 12),  # the first click by position counts for MRR
        ClickRecord("b", "p1", 2, T0 + 30),
        ClickRecord("d", "p1", 2, T0 + DAY + 5),
    ]
    catalog.write_search_logs(day1[:2], clicks[:1])
    # A search logged twice is kept once; clicks and searches may come in any batch.
    catalog.write_search_logs([day1[0], day1[2], *day2], clicks[1:])
    catalog.write_search_logs([], [])
    totals = catalog.daily_search_totals(T0)
    assert totals == [
        DayTotals("2023-11-14", 3, 3, 2, 1 / 1 + 1 / 2, 3 / 4 + 1 / 2, 2, 12),
        DayTotals("2023-11-15", 1, 1, 1, 1 / 2, 2 / 2, 1, 2),
    ]
    assert all(isinstance(t.reciprocal_rank_sum, float) for t in totals)
    assert catalog.daily_search_totals(T0 + DAY) == totals[1:]
    assert catalog.daily_search_totals(T0 + 2 * DAY) == []


def test_logs_of_a_fresh_catalog_are_empty(catalog: Catalog):
    assert catalog.daily_search_totals(0.0) == []


def test_logs_written_from_many_threads_all_arrive(catalog: Catalog):
    now = time.time()

    def log(n: int) -> None:
        for i in range(10):
            sid = f"{n}-{i}"
            catalog.write_search_logs([search(sid, now)], [ClickRecord(sid, "p0", 1, now)])

    threads = [threading.Thread(target=log, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    (today,) = catalog.daily_search_totals(now - 60)
    assert (today.searches, today.clicks, today.clicked_searches) == (40, 40, 40)


# --- API keys ---------------------------------------------------------------------------
def api_key(name: str, scope: str = "write", created: float = T0) -> tuple[str, ApiKey]:
    token = new_token()
    return token, ApiKey(name, scope, token_digest(token), created)  # type: ignore[arg-type]


def test_api_keys_are_found_by_digest_listed_touched_and_revoked(
    catalog: Catalog, backend: Backend
):
    assert catalog.api_keys() == [] and catalog.api_key(token_digest("lk_x")) is None
    token_b, key_b = api_key("shop-front", "search", T0 + 1)
    token_a, key_a = api_key("Importer", "write", T0)
    catalog.add_api_key(key_b)
    catalog.add_api_key(key_a)
    assert catalog.api_key(token_digest(token_a)) == key_a
    assert catalog.api_key(token_digest(token_b)) == key_b
    # Listed by name (bytes order: capitals first), never with the token.
    assert catalog.api_keys() == [key_a, key_b]
    stored = backend.run("SELECT name, digest FROM api_keys")
    assert token_a not in str(stored) and token_b not in str(stored)

    catalog.touch_api_key(key_a.digest, T0 + 60)
    assert catalog.api_key(key_a.digest).last_used_at == T0 + 60
    assert catalog.api_key(key_b.digest).last_used_at is None

    with pytest.raises(InvalidInput, match="exists"):
        catalog.add_api_key(api_key("Importer")[1])  # a name is one key
    assert catalog.api_key(key_a.digest) is not None  # the first is untouched

    assert catalog.revoke_api_key("Importer") is True
    assert catalog.revoke_api_key("Importer") is False
    assert catalog.api_key(key_a.digest) is None
    assert catalog.api_keys() == [key_b]
    token_c, key_c = api_key("Importer")  # the name is free again: rotation
    catalog.add_api_key(key_c)
    assert catalog.api_key(token_digest(token_c)).name == "Importer"


def test_api_key_writes_leave_the_catalog_version_alone(catalog: Catalog):
    before = catalog.version()
    _, key = api_key("k")
    catalog.add_api_key(key)
    catalog.touch_api_key(key.digest, T0 + 5)
    catalog.revoke_api_key("k")
    assert catalog.version() == before


def test_api_keys_are_seen_by_another_connection_at_once(catalog: Catalog, backend: Backend):
    """Replicas share keys through the database: one process's revocation is another's."""
    other = backend.open()
    try:
        token, key = api_key("shared")
        catalog.add_api_key(key)
        assert other.api_key(token_digest(token)) == key
        other.revoke_api_key("shared")
        assert catalog.api_key(token_digest(token)) is None
    finally:
        other.close()


# --- the schema -------------------------------------------------------------------------
def test_migrations_start_from_an_empty_database(backend: Backend):
    assert backend.tables() == set()
    backend.open().close()
    expected = {"products", "vector_log", "meta", "schema_version", "catalog_version"}
    assert expected | {"search_log", "click_log", "api_keys"} <= backend.tables()
    rows = backend.run("SELECT version, name FROM schema_version ORDER BY version")
    assert rows == [(m.number, m.name) for m in MIGRATIONS]


def test_schema_is_versioned_and_reopening_is_a_no_op(backend: Backend):
    backend.open().close()
    before = backend.run("SELECT version, name, applied_at FROM schema_version ORDER BY version")
    backend.open().close()
    assert backend.run("SELECT version, name, applied_at FROM schema_version ORDER BY version") == (
        before
    )
    assert [(v, n) for v, n, _ in before] == [(m.number, m.name) for m in MIGRATIONS]


def test_replicas_opening_together_apply_each_migration_once(backend: Backend):
    errors: list[Exception] = []

    def open_close():
        try:
            backend.open().close()
        except Exception as exc:  # pragma: no cover - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=open_close) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    versions = backend.run("SELECT version FROM schema_version ORDER BY version")
    assert [v for (v,) in versions] == [m.number for m in MIGRATIONS]
    assert backend.run("SELECT COUNT(*) FROM catalog_version") == [(1,)]


def test_newer_schema_is_refused(backend: Backend):
    backend.open().close()
    backend.run(
        "INSERT INTO schema_version (version, name, applied_at)"
        " VALUES (999, '0999_from_the_future', CURRENT_TIMESTAMP)"
    )
    with pytest.raises(CatalogError, match="newer than this Lookalike knows"):
        backend.open()


@pytest.mark.parametrize("steps", [1, 2, 3])
def test_a_schema_from_before_named_migrations_is_upgraded_in_place(backend: Backend, steps):
    """A database the positional migrations made keeps its rows; no step runs twice (a
    re-run would fail: its tables exist) and the missing ones run once."""
    write_legacy_schema(backend.name, backend.run, steps)
    backend.run(
        "INSERT INTO products (id, title, attributes, created_at, updated_at)"
        " VALUES ('old', 'kept', '{}', 1, 1)"
    )
    if steps >= 3:
        catalog_id = backend.run("SELECT value FROM meta WHERE key = 'catalog_id'")
    catalog = backend.open()
    try:
        assert catalog.get("old").title == "kept"
        assert catalog.describe()["schema"] == MIGRATIONS[-1].name
        rows = backend.run("SELECT version, name FROM schema_version ORDER BY version")
        assert rows == [(m.number, m.name) for m in MIGRATIONS]
        if steps >= 3:
            assert backend.run("SELECT value FROM meta WHERE key = 'catalog_id'") == catalog_id
        catalog.upsert([write("new", 1)])
        catalog.write_search_logs([search("s", T0)], [ClickRecord("s", "new", 1, T0)])
        assert catalog.daily_search_totals(T0)[0].clicks == 1
        assert catalog.version() == 1
    finally:
        catalog.close()
