"""`tune`: exact ground truth from the catalog, sweep, cheapest knob meeting the target."""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.config import Settings
from lookalike.index import HnswIndex
from lookalike.index.factory import index_directory, open_index
from lookalike.index.tune import exact_neighbours, recall, sample_queries, tune_index
from tests.support.ann_vectors import catalog_writes, clustered

DIM = 64
MODEL = "test-model"


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> SQLiteCatalog:
    path = tmp_path_factory.mktemp("tune") / "catalog.db"
    catalog = SQLiteCatalog(path)
    catalog.upsert(catalog_writes(clustered(3000, DIM), MODEL))
    return catalog


def test_exact_neighbours_streams_blocks_into_the_true_top_k(catalog):
    ids, queries = sample_queries(catalog, MODEL, 20, seed=1)
    found = exact_neighbours(catalog, MODEL, queries, 15, block=700)
    all_ids, all_vectors = (np.concatenate(x) for x in zip(*catalog.iter_embeddings(), strict=True))
    expected = all_ids[np.argsort(-(queries @ all_vectors.T), axis=1, kind="stable")[:, :15]]
    assert recall(found, expected) == 1.0
    assert (found[:, 0] == ids).all()  # each query's nearest is itself


def test_recall_ignores_padding():
    assert recall(np.array([[1, 2, -1]]), np.array([[1, 3, -1]])) == 0.5


def test_tune_picks_the_cheapest_ef_search_meeting_the_target(catalog, tmp_path):
    # A sparse graph (M=4) needs a wider search than the cheapest to reach the target.
    s = Settings(data_dir=tmp_path, index_type="hnsw", hnsw_m=4)
    index = open_index(s, catalog, DIM, MODEL).index
    report = tune_index(index, catalog, target=0.99, queries=60, k=10)
    assert report.met and report.recall >= 0.99 and len(report.steps) > 1
    chosen = report.chosen["ef_search"]
    assert index.meta.params["ef_search"] == chosen
    # Every cheaper value it tried fell short; the chosen one is the first that did not.
    assert all(s.recall < 0.99 for s in report.steps[:-1])
    assert report.steps[-1].params == {"ef_search": chosen}
    # Saved with the index, with what it was tuned to.
    index.save()
    loaded = HnswIndex.load(index_directory(Settings(data_dir=tmp_path)))
    assert loaded.meta.params["ef_search"] == chosen
    assert loaded.meta.params["tuned"]["recall_target"] == 0.99


def test_an_unreachable_target_keeps_the_best_and_says_so(catalog, tmp_path):
    s = Settings(data_dir=tmp_path, index_type="hnsw", hnsw_m=4)
    index = open_index(s, catalog, DIM, MODEL).index
    report = tune_index(index, catalog, target=1.0, queries=40, k=100)
    best = max(report.steps, key=lambda step: step.recall)
    assert not report.met and report.recall == best.recall < 1.0
    assert index.meta.params["ef_search"] == best.params["ef_search"]
    assert index.meta.params["tuned"]["met"] is False


def test_exact_index_has_nothing_to_tune(catalog, tmp_path):
    live = open_index(Settings(data_dir=tmp_path, index_type="flat"), catalog, DIM, MODEL)
    report = tune_index(live.index, catalog, target=0.95, queries=10, k=10)
    assert report.met and report.steps == []
