"""Real SQLite catalogs and FAISS indexes filled with seeded synthetic vectors (no model),
and the brute-force reference the search layer is checked against."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import faiss
import numpy as np

from lookalike.catalog.base import Product, ProductFilter, ProductWrite
from lookalike.catalog.filter_bitmaps import FilterBitmaps
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.index.base import IndexMeta
from lookalike.index.faiss_index import FaissIndex, FlatIndex
from lookalike.index.live import LiveIndex

MODEL_ID = "synthetic"


class HNSWTestIndex(FaissIndex):
    """A real FAISS HNSW index with a small search budget (efSearch 16): approximate, and
    it returns fewer than k ids when k exceeds its budget, as HNSW families may."""

    kind: ClassVar[str] = "hnsw-test"

    def _build(self, dim: int, params: dict[str, Any]) -> Any:
        hnsw = faiss.IndexHNSWFlat(dim, 16, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efSearch = 16
        return faiss.IndexIDMap(hnsw)


def unit_vectors(n: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def fill_catalog(
    path: Path, products: Sequence[Product], vectors: np.ndarray
) -> tuple[SQLiteCatalog, np.ndarray]:
    """Write products with their vectors; returns the catalog and each product's vector id."""
    catalog = SQLiteCatalog(path)
    for product in products:
        product.model_id = MODEL_ID
    writes = [ProductWrite(p, v) for p, v in zip(products, vectors, strict=True)]
    for start in range(0, len(writes), 2_000):
        catalog.upsert(writes[start : start + 2_000])
    by_id = {p.id: p.vector_id for p in catalog.iter_products()}
    return catalog, np.array([by_id[p.id] for p in products], dtype=np.int64)


def flat_live_index(catalog: SQLiteCatalog, dim: int) -> LiveIndex:
    """An exact index kept in step with the catalog through the change log."""
    live = LiveIndex(FlatIndex(IndexMeta("flat", dim, MODEL_ID), None), catalog)
    live.catch_up()
    return live


def hnsw_live_index(catalog: SQLiteCatalog, dim: int) -> LiveIndex:
    """An approximate index filled directly (HNSW cannot remove, so no log replay)."""
    index = HNSWTestIndex(IndexMeta(HNSWTestIndex.kind, dim, MODEL_ID), None)
    for ids, vectors in catalog.iter_embeddings(model_id=MODEL_ID):
        index.add(ids, vectors)
    index.meta.watermark = catalog.log_head()
    return LiveIndex(index, catalog)


def ivfpq_live_index(catalog: SQLiteCatalog, dim: int, **params: Any) -> LiveIndex:
    """A trained IVF-PQ index (small cells, 8-byte codes) that re-ranks exactly from the
    catalog's stored vectors, as the engine builds it."""
    from lookalike.index.ivfpq import IvfPqIndex

    settings = {"nlist": 32, "m": 8, "nbits": 8, "nprobe": 4, "rerank": 4, **params}
    index = IvfPqIndex(
        IndexMeta("ivfpq", dim, MODEL_ID, params=settings),
        None,
        vectors=lambda ids: catalog.embeddings_by_vector_ids(ids, MODEL_ID),
    )
    batches = list(catalog.iter_embeddings(model_id=MODEL_ID))
    index.train(np.concatenate([vectors for _, vectors in batches]))
    for ids, vectors in batches:
        index.add(ids, vectors)
    index.meta.watermark = catalog.log_head()
    return LiveIndex(index, catalog)


def with_filter_bitmaps(live: LiveIndex, **options: Any) -> LiveIndex:
    """`live`, keeping the catalog's filterable fields in memory as the engine opens it."""
    live.filters = FilterBitmaps.from_catalog(live.catalog, MODEL_ID, **options)
    return live


def brute_force(
    products: Sequence[Product],
    vectors: np.ndarray,
    queries: np.ndarray,
    k: int,
    product_filter: ProductFilter | None = None,
    exclude: Sequence[str] = (),
) -> list[tuple[str, float]]:
    """Top-k (product id, best similarity over the queries) among matching products."""
    queries = np.atleast_2d(queries)
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    best = (queries.astype(np.float64) @ vectors.T.astype(np.float64)).max(axis=0)
    matching = [
        i
        for i, p in enumerate(products)
        if p.id not in exclude and (product_filter is None or product_filter.matches(p))
    ]
    ranked = sorted(matching, key=lambda i: -best[i])[:k]
    return [(products[i].id, float(best[i])) for i in ranked]


def assert_same_ranking(
    hits: Sequence[Any], reference: list[tuple[str, float]], tolerance: float = 1e-5
) -> None:
    """Same length, same similarity at every rank, and every hit is a reference item with
    its reference similarity: equal to the reference up to the order of exact ties."""
    got = [(h.product.id, h.similarity) for h in hits]
    assert len(got) == len(reference), (len(got), len(reference))
    assert len({i for i, _ in got}) == len(got), "duplicate results"
    for (_, got_sim), (_, ref_sim) in zip(got, reference, strict=True):
        assert abs(got_sim - ref_sim) <= tolerance, (got, reference)
    ref_ids = dict(reference)
    ties = {i for i, s in reference if abs(s - reference[-1][1]) <= tolerance}
    for product_id, sim in got:
        if product_id not in ref_ids:
            # Only an item tied with the last reference item may stand in for it.
            assert ties and abs(sim - reference[-1][1]) <= tolerance, (product_id, reference)
        else:
            assert abs(ref_ids[product_id] - sim) <= tolerance
