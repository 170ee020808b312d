"""Serving a learned ranker: from a model directory or the catalog's promoted model,
reloaded without a restart, rolled back; a missing, corrupt or mismatched model never
fails a search: the hand-weighted ranker stands in and the results say why. Also the A/B
arms and the randomised slots."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path

import numpy as np
import pytest

from lookalike.catalog.base import Product
from lookalike.config import Settings
from lookalike.errors import InvalidInput, RankerModelError
from lookalike.search import SearchPipeline, SearchResults
from lookalike.search.ranking import (
    CANDIDATE,
    CONTROL,
    FEATURES,
    assign_arm,
    create_ranker,
    load_model,
    write_model_dir,
)
from lookalike.search.ranking.arms import bucket
from lookalike.search.ranking.explore import shuffle_top
from lookalike.search.ranking.learned import PromotedModel
from lookalike.search.results import SearchHit
from tests.support.ranking_logs import small_model
from tests.support.synthetic_catalog import fill_catalog, flat_live_index, unit_vectors

pytest.importorskip("lightgbm", reason="needs lookalike[rank]")

N, DIM = 200, 16


@pytest.fixture(scope="module")
def models() -> dict[str, tuple[dict, str]]:
    return {"v1": small_model("v1", seed=0), "v2": small_model("v2", seed=1)}


@pytest.fixture
def shop(tmp_path: Path):
    """A catalog where the 8th most similar item to the query is the only well-rated one."""
    rng = np.random.default_rng(5)
    vectors = unit_vectors(N, DIM, rng)
    query = vectors[0]
    star = int(np.argsort(-(vectors @ query))[7])
    products = [
        Product(id=f"p{i}", category="c", price=20.0, attributes={"rating": 5 if i == star else 1})
        for i in range(N)
    ]
    catalog, _ = fill_catalog(tmp_path / "catalog.db", products, vectors)
    yield catalog, query, f"p{star}"
    catalog.close()


def pipeline(catalog, **settings) -> SearchPipeline:
    values = {"rerank_popularity": 0.0, "rerank_rating": 0.0, "rerank_freshness": 0.0}
    return SearchPipeline(catalog, flat_live_index(catalog, DIM), Settings(**values, **settings))


def test_a_model_directory_orders_the_results(tmp_path, shop, models):
    catalog, query, star = shop
    folder = write_model_dir(tmp_path / "model", *models["v1"])
    hand = pipeline(catalog).by_vector(query, 10)
    assert star != hand.hits[0].product.id and hand.ranker.startswith("hand@")
    learned = pipeline(catalog, ranker=str(folder)).by_vector(query, 10)
    assert learned.ranker == "learned@v1" and learned.fallback is None
    assert learned.hits[0].product.id == star  # the model learned to like ratings
    assert learned.feature_names == FEATURES and learned.features.shape == (10, len(FEATURES))


def corrupt_checksum(folder: Path) -> str:
    (folder / "model.txt").write_text((folder / "model.txt").read_text() + "\n# edited\n")
    return "checksum"


def unknown_feature(folder: Path) -> str:
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["features"] = [*manifest["features"][:-1], "colour_match"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return "colour_match"


def garbage_model(folder: Path) -> str:
    from lookalike.search.ranking import model_digest

    text = "tree\nversion=v4\nnum_class=banana\n" * 3
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["model_sha256"] = model_digest(text)
    (folder / "model.txt").write_text(text)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return "LightGBM cannot read it"


def missing_model(folder: Path) -> str:
    (folder / "model.txt").unlink()
    return "missing"


def not_json(folder: Path) -> str:
    (folder / "manifest.json").write_bytes(b"\x80\x04\x95pickle?")
    return "cannot read"


@pytest.mark.parametrize(
    "damage", [corrupt_checksum, unknown_feature, garbage_model, missing_model, not_json]
)
def test_a_bad_model_falls_back_to_hand_weights_and_says_why(tmp_path, shop, models, damage):
    catalog, query, _ = shop
    folder = write_model_dir(tmp_path / "model", *models["v1"])
    expected = damage(folder)
    results = pipeline(catalog, ranker=str(folder)).by_vector(query, 10)
    assert results.ranker.startswith("hand@")
    assert results.fallback is not None and expected in results.fallback
    assert len(results.hits) == 10
    with pytest.raises(RankerModelError, match=expected):
        from lookalike.search.ranking import read_model_dir

        load_model(*read_model_dir(folder))


def test_the_promoted_model_reloads_and_rolls_back_without_a_restart(shop, models):
    catalog, query, _ = shop
    service = pipeline(catalog, ranker="learned", ranker_reload_interval_s=0.001)
    results = service.by_vector(query, 10)
    assert results.ranker.startswith("hand@") and "no learned ranker model is promoted" in (
        results.fallback or ""
    )

    def served() -> str:
        # Past the reload interval: catalog writes can take less than its 1 ms.
        time.sleep(0.01)
        return service.by_vector(query, 10).ranker

    for version, (manifest, text) in models.items():
        catalog.save_ranker(version, manifest, text)
    catalog.promote_ranker("v1")
    assert served() == "learned@v1"
    catalog.promote_ranker("v2")
    assert served() == "learned@v2"
    assert catalog.rollback_ranker() == "v1"
    assert served() == "learned@v1"
    catalog.rollback_ranker()
    time.sleep(0.01)
    assert service.by_vector(query, 10).fallback is not None


def test_the_promoted_model_is_checked_once_per_interval(shop, models):
    catalog, _, _ = shop
    now = [0.0]
    catalog.save_ranker("v1", *models["v1"])
    catalog.save_ranker("v2", *models["v2"])
    catalog.promote_ranker("v1")
    source = PromotedModel(catalog, 5.0, clock=lambda: now[0])
    assert source.current().version == "v1"
    catalog.promote_ranker("v2")
    now[0] = 4.0
    assert source.current().version == "v1"  # not looked again yet
    now[0] = 5.5
    assert source.current().version == "v2"


def test_requests_name_registered_rankers_never_paths(tmp_path, models):
    settings = Settings(ranker=str(write_model_dir(tmp_path / "m", *models["v1"])))
    assert create_ranker(settings).name == "learned"  # the setting may be a path
    assert create_ranker(settings, "similarity").name == "similarity"
    with pytest.raises(InvalidInput, match="unknown ranker"):
        create_ranker(settings, str(tmp_path / "m"))  # a request may not


def test_arms_are_stable_per_session_and_split_by_share():
    settings = Settings(ranker_candidate="learned", ranker_candidate_share=0.3)
    sessions = [f"session-{i}" for i in range(2000)]
    arms = [assign_arm(settings, None, s) for s in sessions]
    assert arms == [assign_arm(settings, None, s) for s in sessions]
    candidates = [a for a in arms if a.arm == CANDIDATE]
    assert all(a.ranker == "learned" for a in candidates)
    assert all(a.ranker is None for a in arms if a.arm == CONTROL)
    assert 0.25 < len(candidates) / len(arms) < 0.35
    # A larger share only adds sessions to the candidate arm.
    wider = Settings(ranker_candidate="learned", ranker_candidate_share=0.6)
    assert all(
        assign_arm(wider, None, a_s).arm == CANDIDATE for a_s in sessions if bucket(a_s) < 0.3
    )
    # Outside the experiment: no session, a ranker named, or hand weights given.
    assert assign_arm(settings, None, None).arm is None
    assert assign_arm(settings, "hand", "session-1") == assign_arm(settings, "hand", None)
    assert assign_arm(settings, None, "session-1", overridden=True).arm is None
    assert assign_arm(Settings(), None, "session-1").arm is None


def test_randomised_slots_shuffle_hits_with_their_features():
    hits = [SearchHit(Product(id=f"p{i}"), 1 - i / 10, 1 - i / 10) for i in range(6)]
    features = np.arange(6 * 2, dtype=float).reshape(6, 2)
    results = SearchResults(list(hits), 6, features=features.copy(), feature_names=("a", "b"))
    shuffled = shuffle_top(results, 4, random.Random(3))
    assert shuffled.explored == 4
    ids = [h.product.id for h in shuffled.hits]
    assert sorted(ids[:4]) == ["p0", "p1", "p2", "p3"] and ids[4:] == ["p4", "p5"]
    assert ids[:4] != ["p0", "p1", "p2", "p3"]  # this seed moves them
    for row, hit in enumerate(shuffled.hits):
        assert shuffled.features[row].tolist() == features[int(hit.product.id[1:])].tolist()
    single = SearchResults(hits[:1], 1)
    assert shuffle_top(single, 4, random.Random(0)).explored == 0
