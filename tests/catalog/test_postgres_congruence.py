"""PostgreSQL catalog against a real server, held to the SQLite catalog (congruence tests)."""

from __future__ import annotations

import itertools
import threading
from pathlib import Path

import numpy as np
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lookalike.catalog import Product, ProductFilter, ProductWrite
from lookalike.catalog.changes import OP_METADATA
from lookalike.catalog.migrations import POSTGRES_MIGRATIONS
from lookalike.catalog.postgres import PostgresCatalog
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.errors import CatalogError, InvalidInput, NotFound
from lookalike.index import FlatIndex, IndexMeta, LiveIndex

DIM = 8


def vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def write(pid: str, seed: int | None, **fields) -> ProductWrite:
    product = Product(id=pid, model_id="m1", content_hash=f"h{seed}", **fields)
    return ProductWrite(product, None if seed is None else vec(seed))


@pytest.fixture
def pg(postgres_url: str):
    catalog = PostgresCatalog(postgres_url)
    yield catalog
    catalog.close()


@pytest.fixture
def lite(tmp_path: Path):
    catalog = SQLiteCatalog(tmp_path / "catalog.db")
    yield catalog
    catalog.close()


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


def run_script(catalog) -> list:
    """Apply SCRIPT, recording every read after every step."""
    observed = []
    for op, arg in SCRIPT:
        if op == "upsert":
            catalog.upsert(arg)
        else:
            observed.append(("deleted", catalog.delete(arg)))
        observed.append(snapshot(catalog))
    return observed


def snapshot(catalog) -> dict:
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


def test_same_operations_give_the_same_results(pg, lite):
    assert run_script(pg) == run_script(lite)


def test_metadata_change_of_an_embedded_product_is_logged(pg, postgres_url):
    pg.upsert([write("a", 1, category="x")])
    head = pg.log_head()
    pg.upsert([write("a", None, category="y")])
    changes = pg.changes_since(head)
    assert changes.update_ids.tolist() == [pg.get("a").vector_id]
    assert changes.add_ids.tolist() == [] and changes.remove_ids.tolist() == []
    np.testing.assert_allclose(changes.update_vectors[0], vec(1))
    with psycopg.connect(postgres_url) as conn:
        ops = conn.execute("SELECT op FROM vector_log ORDER BY seq").fetchall()
    assert [o for (o,) in ops][-1] == OP_METADATA


def test_reads_and_errors(pg):
    pg.upsert([write("a", 1, title="x", attributes={"k": [1, 2]})])
    assert pg.get("a").attributes == {"k": [1, 2]}
    vector_id, embedding = pg.embedding("a")
    assert vector_id == pg.get("a").vector_id
    np.testing.assert_allclose(embedding, vec(1))
    with pytest.raises(NotFound):
        pg.get("zzz")
    pg.upsert([write("meta-only", None)])
    with pytest.raises(NotFound, match="has no embedding"):
        pg.embedding("meta-only")
    pg.set_meta("k", "v1")
    pg.set_meta("k", "v2")
    assert pg.get_meta("k") == "v2" and pg.get_meta("nope") is None
    # A value PostgreSQL cannot store is bad input, not a crash.
    with pytest.raises(InvalidInput):
        pg.upsert([write("nul", 2, title="a\x00b")])
    with pytest.raises(InvalidInput, match="bad attribute name"):
        pg.filter_vector_ids(ProductFilter(attributes={"x'; drop table products; --": ("1",)}))


def test_migrations_run_once_and_refuse_a_newer_schema(postgres_url):
    first = PostgresCatalog(postgres_url)
    first.close()
    # Replicas starting together: every step applied exactly once.
    errors: list[Exception] = []

    def open_close():
        try:
            PostgresCatalog(postgres_url).close()
        except Exception as exc:  # pragma: no cover - reported by the assert below
            errors.append(exc)

    threads = [threading.Thread(target=open_close) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with psycopg.connect(postgres_url) as conn:
        versions = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert [v for (v,) in versions] == list(range(1, len(POSTGRES_MIGRATIONS) + 1))
        conn.execute("INSERT INTO schema_version (version, name) VALUES (999, 'from the future')")
    with pytest.raises(CatalogError, match="newer than this Lookalike knows"):
        PostgresCatalog(postgres_url)


def test_migrations_start_from_an_empty_database(postgres_url):
    PostgresCatalog(postgres_url).close()
    with psycopg.connect(postgres_url) as conn:
        tables = {
            name
            for (name,) in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
            )
        }
    assert {"products", "vector_log", "meta", "schema_version"} <= tables


def test_unreachable_server_is_a_catalog_error():
    with pytest.raises(CatalogError, match="cannot open catalog"):
        PostgresCatalog("postgresql://nobody:secret@127.0.0.1:1/none", connect_timeout_s=2)


def test_password_is_not_shown(postgres_server):
    with pytest.raises(CatalogError) as info:
        PostgresCatalog(
            f"postgresql://postgres:hunter2@127.0.0.1:{postgres_server.port}/no_such_db"
        )
    assert "hunter2" not in str(info.value)


def test_concurrent_writers_never_make_a_tailing_reader_skip_an_entry(postgres_url):
    """Writers on separate pools commit while an index tails the log; at the end the index
    must hold exactly the catalog's vectors. A log that is not commit-ordered lets the
    tailer move its watermark past an entry that commits later, which it never sees."""
    writers = [PostgresCatalog(postgres_url) for _ in range(4)]
    reader = PostgresCatalog(postgres_url)
    live = LiveIndex(FlatIndex(IndexMeta("flat", DIM, "m1"), None), reader)
    stop = threading.Event()

    def tail():
        while not stop.is_set():
            live.catch_up()

    def work(n: int, catalog: PostgresCatalog):
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


# --- filters: both backends agree with ProductFilter.matches ------------------------------
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


def test_every_attribute_value_against_every_filter_value(pg, lite):
    """Exhaustive over the tricky pairs: "1" vs 1, 1 vs 1.0 vs True, None vs missing, lists."""
    values = [*SCALAR_VALUES, [1], {"x": 1}, "missing"]
    for catalog in (pg, lite):
        catalog.upsert(
            [
                ProductWrite(
                    Product(id=f"p{i}", attributes={} if v == "missing" else {"color": v}),
                    vec(i),
                )
                for i, v in enumerate(values)
            ]
        )
    scalars = SCALAR_VALUES
    allowed_sets = [(v,) for v in scalars] + list(itertools.combinations(scalars, 2))
    for allowed in allowed_sets:
        product_filter = ProductFilter(attributes={"color": allowed})
        expected = sorted(
            f"p{i}"
            for i, v in enumerate(values)
            if product_filter.matches(
                Product("x", attributes={} if v == "missing" else {"color": v})
            )
        )
        for catalog in (pg, lite):
            ids = catalog.filter_vector_ids(product_filter)
            got = sorted(p.id for p in catalog.by_vector_ids(ids).values())
            assert got == expected, (type(catalog).__name__, allowed)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(products=PRODUCTS, product_filter=FILTERS)
def test_filters_match_the_reference_semantics_on_both_backends(pg, lite, products, product_filter):
    for catalog in (pg, lite):
        catalog.delete([p.id for p in catalog.iter_products()])
        catalog.upsert(
            [
                ProductWrite(Product(id=f"p{i}", **fields), vec(i))
                for i, fields in enumerate(products)
            ]
        )
    expected = sorted(
        f"p{i}"
        for i, fields in enumerate(products)
        if product_filter.matches(Product("x", **fields))
    )
    for catalog in (pg, lite):
        ids = catalog.filter_vector_ids(product_filter)
        got = sorted(p.id for p in catalog.by_vector_ids(ids).values())
        assert got == expected, type(catalog).__name__
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
def test_filters_a_backend_cannot_match_exactly_are_refused(pg, lite, bad):
    for catalog in (pg, lite):
        with pytest.raises(InvalidInput):
            catalog.filter_vector_ids(bad)
