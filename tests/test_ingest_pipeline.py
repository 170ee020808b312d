"""The per-item preparation every ingest engine shares, and the local pipeline built on it."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from image_catalogs import BAD_ITEMS, png_bytes, write_catalog
from lookalike import Engine, Settings
from lookalike.catalog.base import Product
from lookalike.cli import app
from lookalike.encode import ImageLimits, content_hash, create_encoder
from lookalike.errors import BatchIndexError
from lookalike.ingest.fetch import Fetcher
from lookalike.ingest.prepare import prepare_item, skip_action
from lookalike.ingest.sources import ItemSpec
from tiny_models import build_tiny_openclip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> Path:
    return build_tiny_openclip(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def encoder(model_dir):
    return create_encoder(Settings(model_checkpoint=str(model_dir), torch_threads=1))


@pytest.fixture
def prepare(encoder):
    fetcher = Fetcher(max_bytes=1 << 20)
    yield lambda spec, existing=None: prepare_item(spec, existing, fetcher, ImageLimits(), encoder)
    fetcher.close()


def stored(spec: ItemSpec, data: bytes, model_id: str, **changes) -> Product:
    """The catalog record an earlier ingest of `spec` left behind."""
    product = Product(
        id=spec.id,
        title=spec.title,
        image_source=spec.image,
        content_hash=content_hash(data),
        model_id=model_id,
        vector_id=7,
    )
    for name, value in changes.items():
        setattr(product, name, value)
    return product


def test_new_image_is_encoded(tmp_path, prepare, encoder):
    (tmp_path / "a.png").write_bytes(png_bytes(1))
    prepared = prepare(ItemSpec("a", str(tmp_path / "a.png"), title="a"))
    assert prepared.action == "encode"
    assert prepared.pixels.shape == (3, 32, 32)
    assert prepared.product.content_hash == content_hash(png_bytes(1))
    assert prepared.product.model_id == encoder.model_id
    assert not prepared.existed


def test_skip_decision_follows_hash_model_and_metadata(tmp_path, prepare, encoder):
    data = png_bytes(2)
    (tmp_path / "b.png").write_bytes(data)
    spec = ItemSpec("b", str(tmp_path / "b.png"), title="b")
    same = stored(spec, data, encoder.model_id)
    assert prepare(spec, same).action == "unchanged"
    assert prepare(spec, stored(spec, data, encoder.model_id, title="old")).action == "metadata"
    changed = prepare(spec, stored(spec, b"other bytes", encoder.model_id))
    assert (changed.action, changed.existed) == ("encode", True)
    assert prepare(spec, stored(spec, data, "another-model")).action == "encode"
    assert prepare(spec, stored(spec, data, encoder.model_id, vector_id=None)).action == "encode"
    assert skip_action(None, same) is None


def test_bad_items_fail_with_reasons(tmp_path, prepare):
    write_catalog(tmp_path, good=0)
    for item_id, reason in BAD_ITEMS.items():
        prepared = prepare(ItemSpec(item_id, str(tmp_path / "images" / f"{item_id}.png")))
        assert prepared.action == "failed"
        assert reason in prepared.failure.reason
        assert prepared.failure.id == item_id


def test_item_without_image_keeps_its_metadata(prepare):
    assert prepare(ItemSpec("c", None, title="no photo")).action == "metadata"


def test_local_ingest_reports_bad_items_and_skips_unchanged(tmp_path, model_dir):
    manifest = write_catalog(tmp_path / "catalog", good=6)
    settings = Settings(data_dir=tmp_path / "data", model_checkpoint=str(model_dir))
    with Engine(settings) as engine:
        first = engine.index_path(manifest)
        assert (first.added, len(first.failed)) == (6, len(BAD_ITEMS) + 1)
        second = engine.index_path(manifest)
        assert (second.added, second.reencoded, second.unchanged) == (0, 0, 6)
        assert len(engine.live_index.index) == 6
        assert engine.search_image(png_bytes(4), limit=1).hits[0].product.id == "item-004"


def test_unknown_engine_is_refused(tmp_path):
    result = CliRunner().invoke(app, ["index", str(tmp_path), "--engine", "spark"])
    assert result.exit_code == 2
    assert "--engine must be local or ray" in result.output


def test_ray_engine_without_the_extra_says_how_to_install(tmp_path, monkeypatch):
    # As if `lookalike[ray]` were not installed: importing Ray or pyarrow fails.
    for name in ("lookalike.ingest.ray_pipeline", "lookalike.ingest.shards"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.setitem(sys.modules, "ray", None)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    manifest = write_catalog(tmp_path / "catalog", good=1)
    result = CliRunner().invoke(
        app, ["index", str(manifest), "--engine", "ray", "-d", str(tmp_path / "data")]
    )
    assert result.exit_code == 2
    assert "pip install 'lookalike[ray]'" in result.output


def test_an_unreachable_ray_address_fails_fast():
    pytest.importorskip("pyarrow", reason="the Ray pipeline needs the ray extra")
    from lookalike.ingest.ray_pipeline import check_reachable

    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen()
        port = listening.getsockname()[1]
        check_reachable(f"127.0.0.1:{port}")
        check_reachable(f"ray://127.0.0.1:{port}")
    with pytest.raises(BatchIndexError, match="cannot reach a Ray cluster"):
        check_reachable(f"ray://127.0.0.1:{port}")  # closed now
    check_reachable("auto")
