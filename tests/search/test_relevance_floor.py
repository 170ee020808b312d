"""The relevance floor: calibrated per model and query kind from the catalog, applied as a
pipeline stage before ranking, per request or by default, part of the result-cache key."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from lookalike import Engine
from lookalike.errors import InvalidInput
from lookalike.search import SearchRequest
from lookalike.search.calibration import (
    Calibration,
    LabelledSample,
    calibrate,
    format_calibration,
    noise_images,
    noise_texts,
    vectors_kth_best,
)
from lookalike.search.floor import apply_floor, meta_key


def test_apply_floor_keeps_the_prefix_above_and_counts_the_page_below() -> None:
    sims = np.array([0.9, 0.8, 0.5, 0.4, 0.3], np.float32)
    assert apply_floor(sims, 0.45, limit=3) == (3, 0)  # the best 3 are all above
    assert apply_floor(sims, 0.45, limit=4) == (3, 1)  # of the best 4, one is under
    assert apply_floor(sims, 0.45, limit=5) == (3, 2)
    assert apply_floor(sims, 0.95, limit=5) == (0, 5)
    assert apply_floor(sims, None, limit=5) == (5, 0)
    assert apply_floor(np.zeros(0, np.float32), 0.5, limit=5) == (0, 0)


def test_nonsense_queries_are_seeded_and_varied() -> None:
    assert noise_texts(seed=3) == noise_texts(seed=3) != noise_texts(seed=4)
    assert len(set(noise_texts())) == len(noise_texts())
    images = noise_images(8)
    assert len({img.tobytes() for img in images}) == 8


class _TableEncoder:
    """Texts and images looked up in fixed tables: the rule itself, without a model."""

    def __init__(self, texts: dict[str, np.ndarray], default_text, image) -> None:
        self.texts, self.default_text, self.image = texts, default_text, image

    def encode_texts(self, texts):
        return np.stack([self.texts.get(t, self.default_text) for t in texts])

    def encode_images(self, images):
        return np.stack([self.image] * len(images))


def test_the_rule_is_the_midpoint_of_noise_and_related_levels() -> None:
    # Two categories on two axes; nonsense sits between them on a third.
    e = np.eye(4, dtype=np.float32)
    rng = np.random.default_rng(0)
    vectors = np.concatenate([e[0] + 0.1 * rng.random((50, 4)), e[1] + 0.1 * rng.random((50, 4))])
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.repeat([0, 1], 50)
    noise = (e[2] + 0.3 * e[0]) / np.linalg.norm(e[2] + 0.3 * e[0])
    prompts = {"a photo of a shoe": e[0], "shoe": e[0], "a photo of a bag": e[1], "bag": e[1]}
    encoder = _TableEncoder(prompts, noise, noise)
    sample = LabelledSample(vectors.astype(np.float32), labels, ["Shoe", "Bag"])
    calibration = calibrate(
        sample, encoder, vectors_kth_best(vectors, 5), model_id="m", k=5, image_weight=0.7
    )
    text = calibration.kinds["text"]
    related = np.concatenate([vectors[labels == i] @ e[i] for i in (0, 1) for _ in (0, 1)])
    assert text.related_level == pytest.approx(np.quantile(related, 0.05), abs=1e-4)
    assert text.noise_level == pytest.approx(float(np.sort(vectors @ noise)[-5]), abs=1e-4)
    assert text.min_score == pytest.approx((text.noise_level + text.related_level) / 2, abs=1e-4)
    # Image noise is the same vector: the same level; an item against its category is high.
    assert calibration.kinds["image"].min_score is not None
    # Stored and read back whole; the printed table names every kind.
    again = Calibration.from_json(calibration.to_json())
    assert again.kinds["text"].min_score == text.min_score
    table = format_calibration(calibration)
    assert all(f"| {kind} |" in table for kind in ("text", "image", "hybrid"))


def test_a_model_that_cannot_tell_noise_from_matches_gets_no_floor() -> None:
    e = np.eye(3, dtype=np.float32)
    vectors = np.tile(e[0], (20, 1))
    encoder = _TableEncoder({}, e[0], e[0])  # nonsense lands on the items themselves
    sample = LabelledSample(vectors, np.zeros(20, int), ["Thing"])
    calibration = calibrate(
        sample, encoder, vectors_kth_best(vectors, 5), model_id="m", k=5, image_weight=0.7
    )
    assert all(kind.min_score is None and kind.note for kind in calibration.kinds.values())


def test_levels_within_the_minimum_separation_get_no_floor() -> None:
    # A barely trained model: every vector a hair apart, nonsense just below matches.
    rng = np.random.default_rng(0)
    base = np.eye(8, dtype=np.float32)[0]
    vectors = base + rng.normal(0, 1e-3, (20, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    nonsense = base + np.float32(0.15) * np.eye(8, dtype=np.float32)[1]
    nonsense /= np.linalg.norm(nonsense)  # cosine 0.989 to the items: 0.011 below them
    prompts = {"a photo of a thing": base, "thing": base}  # the category's own words
    encoder = _TableEncoder(prompts, nonsense, base)
    sample = LabelledSample(vectors, np.zeros(20, int), ["Thing"])
    calibration = calibrate(
        sample, encoder, vectors_kth_best(vectors, 5), model_id="m", k=5, image_weight=0.7
    )
    text = calibration.kinds["text"]
    assert text.noise_level < text.related_level  # below, but by less than the margin
    assert text.min_score is None and "within" in text.note


@pytest.fixture
def indexed(engine: Engine, photo_folder) -> Engine:
    report = engine.index_path(photo_folder)
    assert report.added == 24
    return engine


def test_calibrate_stores_floors_the_search_uses(indexed: Engine) -> None:
    calibration = indexed.calibrate()
    model_id = indexed.live_index.index.meta.model_id
    stored = json.loads(indexed.catalog.get_meta(meta_key(model_id)))
    assert stored["model_id"] == model_id and set(stored["kinds"]) == {"text", "image", "hybrid"}
    assert calibration.items == 24 and calibration.categories == 2
    for entry in calibration.kinds.values():
        assert entry.noise_queries > 0 and entry.related_pairs > 0
        assert entry.min_score is None or (
            entry.noise_level < entry.min_score < entry.related_level
        )
    # A search without min_score uses the calibrated floor of its kind (or none).
    results = indexed.search(SearchRequest(texts=["cat0"], limit=5))
    assert results.min_score == calibration.kinds["text"].min_score


def test_min_score_per_request_cuts_and_counts(indexed: Engine) -> None:
    full = indexed.search(SearchRequest(texts=["item"], limit=10, min_score=-1))
    assert len(full.hits) == 10 and full.min_score is None and full.below_floor == 0
    sims = [h.similarity for h in full.hits]
    cut = (sims[2] + sims[3]) / 2
    floored = indexed.search(SearchRequest(texts=["item"], limit=10, min_score=cut))
    assert [h.product.id for h in floored.hits] == [h.product.id for h in full.hits[:3]]
    assert floored.min_score == pytest.approx(cut) and floored.below_floor == 7
    assert all(h.similarity >= cut for h in floored.hits)
    # The floor is on raw similarity: with re-ranking and diversity the kept set is the same.
    diverse = indexed.search(
        SearchRequest(texts=["item"], limit=10, min_score=cut, rerank={"rating": 1.0})
    )
    assert {h.product.id for h in diverse.hits} == {h.product.id for h in floored.hits}
    # Nothing above it: no hits, and the whole page counted.
    none = indexed.search(SearchRequest(texts=["item"], limit=10, min_score=1.0))
    assert none.hits == [] and none.below_floor == 10


def test_the_result_cache_keys_on_the_floor(indexed: Engine) -> None:
    assert indexed.pipeline.result_cache.enabled
    loose = indexed.search(SearchRequest(texts=["shoes"], limit=6, min_score=-1))
    tight = indexed.search(SearchRequest(texts=["shoes"], limit=6, min_score=1.0))
    again = indexed.search(SearchRequest(texts=["shoes"], limit=6, min_score=-1))
    assert len(loose.hits) == 6 and tight.hits == [] and len(again.hits) == 6
    assert "result_cache_ms" in again.timings_ms  # served from the cache, its own entry


@pytest.mark.parametrize("bad", [2.0, -1.5, math.nan, True, "0.5"])
def test_min_score_out_of_range_is_refused(indexed: Engine, bad) -> None:
    with pytest.raises(InvalidInput, match="min_score"):
        indexed.search(SearchRequest(texts=["item"], min_score=bad))


def test_settings_min_score_is_the_default_and_can_be_off(settings, photo_folder) -> None:
    with Engine(settings.model_copy(update={"min_score": 1.0})) as engine:
        engine.index_path(photo_folder)
        assert engine.search(SearchRequest(texts=["x"], limit=5)).hits == []
        assert len(engine.search(SearchRequest(texts=["x"], limit=5, min_score=-1)).hits) == 5
    with Engine(settings.model_copy(update={"relevance_floor": False})) as engine:
        engine.calibrate()
        assert engine.search(SearchRequest(texts=["x"], limit=5)).min_score is None
