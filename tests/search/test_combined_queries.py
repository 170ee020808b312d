"""Combined queries through Engine.search with the tiny real open_clip model: hybrid
weights, several images (mean / best), negative texts, similar-to-product, ranking options."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from lookalike.catalog.base import Product, ProductFilter, ProductWrite
from lookalike.config import Settings
from lookalike.engine import Diversity, Engine, SearchRequest
from lookalike.errors import InvalidInput, NotFound
from lookalike.search import hybrid, mean_direction, subtract
from tests.support.synthetic_catalog import unit_vectors
from tests.support.tiny_models import build_tiny_openclip

N = 300
NO_RERANK = {"popularity": 0, "rating": 0, "conversion": 0, "freshness": 0}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    model_dir = build_tiny_openclip(tmp_path_factory.mktemp("model"))
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("data"), model_checkpoint=str(model_dir), device="cpu"
    )
    engine = Engine(settings)
    dim = engine.encoder.info.dim
    vectors = unit_vectors(N, dim, np.random.default_rng(1))
    engine.catalog.upsert(
        [
            ProductWrite(
                Product(
                    id=f"e{i}",
                    category=f"cat{i % 6}",
                    brand=f"brand{i % 4}",
                    price=float(i),
                    model_id=engine.encoder.model_id,
                ),
                vectors[i],
            )
            for i in range(N)
        ]
    )
    engine.live_index.catch_up()
    yield engine
    engine.close()


def noise_image(seed: int) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def ranking(results) -> list[tuple[str, float]]:
    return [(h.product.id, round(h.similarity, 5)) for h in results.hits]


def by_vector(engine: Engine, query: np.ndarray, limit: int = 10, **options):
    return engine.pipeline.by_vector(query, limit, rerank=NO_RERANK, **options)


def test_hybrid_weight_one_is_image_search_and_zero_is_text_search(engine):
    image, text = noise_image(0), "a red shoe"
    image_only = engine.search(SearchRequest(images=[image], limit=10, rerank=NO_RERANK))
    text_only = engine.search(SearchRequest(texts=[text], limit=10, rerank=NO_RERANK))
    assert ranking(image_only) != ranking(text_only)
    for weight, expected in ((1.0, image_only), (0.0, text_only)):
        both = engine.search(
            SearchRequest(
                images=[image], texts=[text], image_weight=weight, limit=10, rerank=NO_RERANK
            )
        )
        assert ranking(both) == ranking(expected)


def test_hybrid_default_weight_comes_from_settings(engine):
    image, text = noise_image(1), "a blue bag"
    image_vector = engine.encoder.encode_images([image])[0]
    text_vector = engine.encoder.encode_texts([text])[0]
    expected = by_vector(engine, hybrid(image_vector, text_vector, engine.settings.image_weight))
    got = engine.search(SearchRequest(images=[image], texts=[text], limit=10, rerank=NO_RERANK))
    assert ranking(got) == ranking(expected)


def test_several_images_mean_and_best(engine):
    images = [noise_image(2), noise_image(3), noise_image(4)]
    encoded = engine.encoder.encode_images(images)
    mean = engine.search(SearchRequest(images=images, limit=10, rerank=NO_RERANK))
    assert ranking(mean) == ranking(by_vector(engine, mean_direction(encoded)))

    best = engine.search(
        SearchRequest(images=images, multi_image="best", limit=10, rerank=NO_RERANK)
    )
    # Brute force over the stored embeddings: each product's best similarity to any image.
    ids, stored = next(engine.catalog.iter_embeddings(batch_size=N))
    best_sims = (stored @ encoded.T).max(axis=1)
    products = engine.catalog.by_vector_ids(ids.tolist())
    order = np.argsort(-best_sims)[:10]
    assert [h.product.id for h in best.hits] == [products[int(ids[i])].id for i in order]
    np.testing.assert_allclose([h.similarity for h in best.hits], best_sims[order], atol=1e-5)


def test_negative_text_is_subtracted(engine):
    image = noise_image(5)
    plain = engine.search(SearchRequest(images=[image], limit=10, rerank=NO_RERANK))
    request = SearchRequest(images=[image], negative_texts=["red"], limit=10, rerank=NO_RERANK)
    without_red = engine.search(request)
    query = subtract(
        engine.encoder.encode_images([image])[0],
        engine.encoder.encode_texts(["red"])[0],
        engine.settings.negative_weight,
    )
    assert ranking(without_red) == ranking(by_vector(engine, query))
    assert ranking(without_red) != ranking(plain)


def test_similar_to_product_excludes_itself(engine):
    results = engine.search_similar("e7", limit=10)
    ids = [h.product.id for h in results.hits]
    assert "e7" not in ids and len(ids) == 10
    assert results.total_found == N - 1
    same_category = engine.search(
        SearchRequest(product_id="e7", filters=ProductFilter(categories=("cat1",)), limit=100)
    )
    assert {h.product.category for h in same_category.hits} == {"cat1"}
    assert len(same_category.hits) == N // 6 - 1 == same_category.total_found
    with pytest.raises(NotFound):
        engine.search_similar("no-such-product")


def test_ranking_options_through_the_engine(engine):
    capped = engine.search(
        SearchRequest(
            texts=["a hat"],
            limit=12,
            diversity=Diversity(max_per_category=2, max_per_brand=3),
        )
    )
    assert len(capped.hits) == 12
    categories = [h.product.category for h in capped.hits]
    assert max(categories.count(c) for c in set(categories)) <= 2
    assert all(h.score >= h.similarity for h in capped.hits)  # default weights are >= 0
    mmr = engine.search(
        SearchRequest(texts=["a hat"], limit=12, diversity=Diversity(mmr_lambda=0.3))
    )
    assert len(mmr.hits) == 12
    assert "rank_ms" in mmr.timings_ms and "encode_ms" in mmr.timings_ms


@pytest.mark.parametrize(
    "request_",
    [
        SearchRequest(texts=["x"], multi_image="worst"),
        SearchRequest(texts=["x"], rerank={"bogus": 1.0}),
        SearchRequest(texts=["x"], diversity=Diversity(max_per_brand=0)),
        SearchRequest(negative_texts=["red"]),  # nothing to be unlike
        SearchRequest(texts=["x"], image_weight=2.0),
        SearchRequest(texts=["x"], limit=0),
    ],
)
def test_bad_requests_are_typed_errors(engine, request_):
    with pytest.raises(InvalidInput):
        engine.search(request_)


def test_cli_search_with_ranking_options(engine, monkeypatch):
    from typer.testing import CliRunner

    from lookalike.cli import app

    monkeypatch.setenv("LOOKALIKE_MODEL_CHECKPOINT", engine.settings.model_checkpoint)
    monkeypatch.setenv("LOOKALIKE_DEVICE", "cpu")
    data_dir = str(engine.settings.data_dir)
    runner = CliRunner()
    result = runner.invoke(
        app,
        [
            "search",
            "--text",
            "a green hat",
            "--not",
            "red",
            "--max-per-category",
            "1",
            "--rerank",
            "rating=0.1",
            "--limit",
            "6",
            "--json",
            "-d",
            data_dir,
        ],
    )
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)["results"]
    assert len(hits) == 6 and len({h["category"] for h in hits}) == 6
    assert all(h["score"] >= h["similarity"] for h in hits)
    bad = runner.invoke(app, ["search", "--text", "x", "--rerank", "rating", "-d", data_dir])
    assert bad.exit_code == 2 and "name=weight" in bad.output
