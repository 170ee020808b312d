"""Every vector index backend, opened through the registry by configuration alone, behaves
alike: the same neighbours as brute force, writes searchable when `apply_writes` returns,
filtered searches complete, a reopened index answering as before, and capabilities that
tell the truth. A new backend joins with one entry in BACKENDS: settings overrides, which
may name the catalog too (a backend that lives in the catalog's database needs one of
its kind); the catalog is opened from the settings, as the engine opens it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lookalike.catalog import Catalog, Product, ProductFilter, ProductWrite, open_catalog
from lookalike.config import Settings
from lookalike.index import LiveIndex, describe_index, open_index
from lookalike.index.base import FilteringIndex, SharedIndex
from lookalike.search import HandWeightedRanker, RerankWeights, SearchPipeline
from tests.support.pgvector_server import pgvector_settings

DIM = 16
MODEL = "m1"
N = 600
SIMILARITY_ONLY = HandWeightedRanker(RerankWeights())


def _milvus_lite(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    pytest.importorskip("pymilvus", reason="needs lookalike[milvus]")
    pytest.importorskip("milvus_lite", reason="needs lookalike[milvus]")
    return {"index_url": str(tmp_path / "vectors.db"), "milvus_index_type": "FLAT"}


# name -> settings overrides (a function of the test's fixtures, for backends on servers).
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], dict[str, Any]]] = {
    "faiss-flat": lambda request, tmp_path: {"index_type": "flat"},
    "faiss-hnsw": lambda request, tmp_path: {"index_type": "hnsw", "hnsw_ef_search": 256},
    # The saved file mapped read-only plus a private delta (`serve --workers N`).
    "faiss-flat-mapped": lambda request, tmp_path: {"index_type": "flat", "index_memory": "mapped"},
    "faiss-hnsw-mapped": lambda request, tmp_path: {
        "index_type": "hnsw",
        "hnsw_ef_search": 256,
        "index_memory": "mapped",
    },
    "milvus-lite": _milvus_lite,
    "pgvector": pgvector_settings,
}


def unit(rows: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((rows, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def product(i: int) -> Product:
    return Product(
        id=f"p{i}",
        category=["shoes", "hats", "bags"][i % 3],
        brand=["acme", "zed"][i % 2],
        price=float(i % 50),
        model_id=MODEL,
    )


class Case:
    """One backend over one catalog: open (and reopen) its index through the registry."""

    def __init__(self, settings: Settings, catalog: Catalog) -> None:
        self.settings = settings
        self.catalog = catalog
        self.live = self.open()

    def open(self) -> LiveIndex:
        return open_index(self.settings, self.catalog, DIM, MODEL)

    def search(self, query: np.ndarray, k: int, product_filter: ProductFilter | None = None):
        pipeline = SearchPipeline(self.catalog, self.live, self.settings)
        results = pipeline.by_vector(query, k, product_filter, rerank=SIMILARITY_ONLY)
        return [h.product.id for h in results.hits], results


@pytest.fixture(params=sorted(BACKENDS))
def case(request: pytest.FixtureRequest, tmp_path: Path):
    overrides = BACKENDS[request.param](request, tmp_path)
    settings = Settings(_env_file=None, data_dir=tmp_path / "data", **overrides)
    catalog = open_catalog(settings)  # SQLite in data_dir unless the backend names one
    vectors = unit(N, 0)
    catalog.upsert([ProductWrite(product(i), vectors[i]) for i in range(N)])
    case = Case(settings, catalog)
    case.vectors = vectors
    yield case
    close = getattr(case.live.index, "close", None)
    if close is not None:
        close()
    catalog.close()


def brute_force(vectors: np.ndarray, query: np.ndarray, k: int, keep=None) -> list[str]:
    scores = vectors @ query
    order = [i for i in np.argsort(-scores, kind="stable") if keep is None or keep(i)]
    return [f"p{i}" for i in order[:k]]


def recall(found: list[str], truth: list[str]) -> float:
    return len(set(found) & set(truth)) / len(truth)


def test_neighbours_match_brute_force(case: Case) -> None:
    queries = unit(20, 1)
    recalls = [recall(case.search(q, 10)[0], brute_force(case.vectors, q, 10)) for q in queries]
    assert np.mean(recalls) >= 0.97, recalls
    assert len(case.live.index) == N
    assert case.live.describe()["vectors"] == N


def test_writes_are_searchable_when_apply_writes_returns(case: Case) -> None:
    fresh = unit(1, 7)[0]
    case.catalog.upsert([ProductWrite(product(N), fresh)])
    case.live.apply_writes()
    assert case.search(fresh, 1)[0] == [f"p{N}"]
    # Replaced: its old vector no longer finds it, the new one does.
    moved = unit(1, 8)[0]
    case.catalog.upsert([ProductWrite(product(N), moved)])
    case.live.apply_writes()
    assert case.search(moved, 1)[0] == [f"p{N}"]
    assert len(case.live.index) == N + 1  # replaced, not added twice
    case.catalog.delete([f"p{N}"])
    case.live.apply_writes()
    assert f"p{N}" not in case.search(moved, 5)[0]


@pytest.mark.parametrize(
    ("product_filter", "keep"),
    [
        (ProductFilter(categories=("hats",)), lambda i: i % 3 == 1),
        (ProductFilter(brands=("zed",), price_max=4.0), lambda i: i % 2 == 1 and i % 50 <= 4),
        (
            ProductFilter(categories=("bags",), price_min=48.0),
            lambda i: i % 3 == 2 and i % 50 >= 48,
        ),
    ],
    ids=["broad", "narrow", "rare"],
)
def test_filtered_search_is_complete(case: Case, product_filter, keep) -> None:
    query = unit(1, 3)[0]
    found, results = case.search(query, 10, product_filter)
    truth = brute_force(case.vectors, query, 10, keep)
    assert len(found) == len(truth)
    assert recall(found, truth) >= 0.9
    assert results.total_found == sum(1 for i in range(N) if keep(i))


def test_a_reopened_index_answers_as_before(case: Case) -> None:
    query = unit(1, 4)[0]
    before = case.search(query, 10)[0]
    case.live.save(force=True)
    case.live = case.open()
    assert case.search(query, 10)[0] == before
    described = describe_index(case.settings)
    assert described["type"] == case.live.describe()["type"]


def test_capabilities_tell_the_truth(case: Case) -> None:
    index = case.live.index
    caps = index.capabilities
    assert index.shared == caps.shared
    if caps.filter_pushdown:
        assert isinstance(index, FilteringIndex)
        assert index.supports_filter(ProductFilter(categories=("hats",)))
    if caps.shared:
        assert isinstance(index, SharedIndex)
    if caps.exact_filtered or caps.selector_scan:
        allowed = np.arange(0, N, 7, dtype=np.int64) + 1  # vector ids start at 1
        _, ids = index.search(unit(1, 5), 5, allowed_ids=allowed)
        assert set(ids[0][ids[0] >= 0].tolist()) <= set(allowed.tolist())
    if caps.max_k is not None:
        assert caps.max_k >= 1000
