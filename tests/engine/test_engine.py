"""Engine: search by image, text, product; filters; real-time upsert and delete."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lookalike import Engine, SearchRequest, Settings
from lookalike.catalog import ProductFilter
from lookalike.cli import app
from lookalike.errors import InvalidImage, InvalidInput, NotFound
from lookalike.ingest import ItemSpec
from tests.support.images import pattern_image, write_images


def png(seed: int) -> bytes:
    buffer = io.BytesIO()
    pattern_image(seed).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def catalog_manifest(tmp_path: Path) -> Path:
    write_images(tmp_path / "img", 30, categories=3)
    rows = [
        {
            "id": f"sku{i}",
            "image": f"img/cat{i % 3}/item_{i:04d}.png",
            "title": f"thing {i}",
            "category": ["shoes", "bags", "hats"][i % 3],
            "brand": "acme" if i < 15 else "zeta",
            "price": float(i),
            "colour": "red" if i % 2 else "blue",
        }
        for i in range(30)
    ]
    path = tmp_path / "catalog.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    return path


@pytest.fixture
def indexed(engine: Engine, catalog_manifest: Path) -> Engine:
    report = engine.index_path(catalog_manifest)
    assert report.added == 30
    return engine


def test_text_search_returns_ranked_results_with_metadata(indexed: Engine):
    results = indexed.search_text("red vintage car on mountain road", limit=7)
    assert len(results.hits) == 7 and results.total_found == 30
    scores = [h.score for h in results.hits]
    assert scores == sorted(scores, reverse=True)
    hit = results.hits[0].to_dict()
    assert set(hit) >= {"id", "title", "category", "brand", "price", "score", "image_source"}
    assert results.query_time_ms > 0 and "encode_ms" in results.timings_ms


def test_similar_uses_stored_embedding_and_excludes_itself(indexed: Engine):
    results = indexed.search_similar("sku4", limit=29)
    ids = [h.product.id for h in results.hits]
    assert "sku4" not in ids and len(ids) == 29 and results.total_found == 29
    by_image = [h.product.id for h in indexed.search_image(png(4), limit=30).hits]
    assert by_image[0] == "sku4" and by_image[1:] == ids


def test_filters_return_only_matching_items_exactly(indexed: Engine):
    flt = ProductFilter(
        categories=("bags", "hats"),
        brands=("acme",),
        price_min=2,
        price_max=12,
        attributes={"colour": ("red",)},
    )
    results = indexed.search_image(png(0), limit=20, filters=flt)
    expected = {
        f"sku{i}" for i in range(30) if i % 3 in (1, 2) and i < 15 and 2 <= i <= 12 and i % 2
    }
    assert len(expected) == 3  # sku5, sku7, sku11
    assert {h.product.id for h in results.hits} == expected
    assert results.total_found == len(expected)
    unfiltered = [h.product.id for h in indexed.search_image(png(0), limit=30).hits]
    assert [h.product.id for h in results.hits] == [i for i in unfiltered if i in expected]


def test_filters_come_from_the_bitmaps_in_step_with_writes_and_rebuilds(indexed: Engine):
    """The engine's index keeps the filter bitmaps; a field change through the engine is in
    them on return, and an index rebuilt from the catalog keeps them."""
    filters = indexed.live_index.filters
    assert filters is not None and len(filters) == 30
    shoes = ProductFilter(categories=("shoes",))
    assert filters.count(shoes) == 10
    indexed.upsert(ItemSpec(id="sku1", image=None, title="now shoes", category="shoes"))
    assert filters.count(shoes) == 11
    results = indexed.search_image(png(0), limit=20, filters=shoes)
    assert "sku1" in {h.product.id for h in results.hits} and results.total_found == 11
    indexed.build_index()
    assert indexed.live_index.filters is filters
    assert indexed.live_index.describe()["filter_bitmaps"]["items"] == 30


def test_upsert_with_bytes_is_searchable_on_return_and_delete_is_not(indexed: Engine):
    product = indexed.upsert(ItemSpec(id="new", image=None, title="fresh", price=5.0), png(500))
    assert product.vector_id is not None and Path(product.image_source).is_file()
    assert indexed.search_image(png(500), limit=1).hits[0].product.id == "new"
    indexed.delete("new")
    assert "new" not in [h.product.id for h in indexed.search_image(png(500), limit=31).hits]
    with pytest.raises(NotFound):
        indexed.delete("new")
    with pytest.raises(InvalidImage):
        indexed.upsert(ItemSpec(id="bad", image=None), b"not an image")
    assert indexed.catalog.get_many(["bad"]) == {}


def test_hybrid_weights_at_the_ends_reduce_to_one_side(indexed: Engine):
    image_only = indexed.search(SearchRequest(images=[png(2)], texts=["a hat"], image_weight=1.0))
    text_only = indexed.search(SearchRequest(images=[png(2)], texts=["a hat"], image_weight=0.0))
    assert [h.product.id for h in image_only.hits] == [
        h.product.id for h in indexed.search_image(png(2)).hits
    ]
    assert [h.product.id for h in text_only.hits] == [
        h.product.id for h in indexed.search_text("a hat").hits
    ]


def test_bad_requests_are_typed(indexed: Engine):
    with pytest.raises(InvalidInput, match="limit"):
        indexed.search_text("x", limit=0)
    with pytest.raises(InvalidInput, match="at least one"):
        indexed.search(SearchRequest())
    with pytest.raises(NotFound):
        indexed.search_similar("nope")
    with pytest.raises(InvalidImage):
        indexed.search_image(b"")


def test_info_does_not_load_the_model(settings: Settings, catalog_manifest: Path):
    with Engine(settings) as engine:
        engine.index_path(catalog_manifest)
    with Engine(settings) as engine:
        info = engine.info()
        assert engine._encoder is None
    assert info["products"] == 30 and info["index"]["type"] == "flat"
    assert info["model"]["source"] == "openclip-dir" and info["last_update"]


def test_cli_index_search_info(settings: Settings, catalog_manifest: Path, tmp_path: Path):
    env = {"LOOKALIKE_MODEL_CHECKPOINT": settings.model_checkpoint, "LOOKALIKE_DEVICE": "cpu"}
    data = ["--data-dir", str(settings.data_dir)]
    runner = CliRunner()
    result = runner.invoke(app, ["index", str(catalog_manifest), "--quiet", *data], env=env)
    assert result.exit_code == 0, result.output
    assert "30 added" in result.output
    query = tmp_path / "q.png"
    query.write_bytes(png(9))
    result = runner.invoke(
        app, ["search", "--image", str(query), "-n", "3", "--json", *data], env=env
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["results"][0]["id"] == "sku9"
    result = runner.invoke(app, ["search", "--text", "shoe", "--category", "shoes", *data], env=env)
    assert result.exit_code == 0 and "shoes" in result.output and "results of 10" in result.output
    result = runner.invoke(app, ["info", *data], env=env)
    assert result.exit_code == 0 and "products:    30" in result.output


def test_cli_errors_become_exit_codes(settings: Settings, tmp_path: Path):
    env = {"LOOKALIKE_MODEL_CHECKPOINT": settings.model_checkpoint}
    runner = CliRunner()
    result = runner.invoke(app, ["index", str(tmp_path / "nothing"), "-d", str(tmp_path)], env=env)
    assert result.exit_code == 2 and "no such folder" in result.output
    result = runner.invoke(app, ["search", "--similar", "x", "-d", str(tmp_path)], env=env)
    assert result.exit_code == 1 and "not found" in result.output
