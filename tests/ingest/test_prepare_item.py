"""The per-item preparation every ingest engine shares (local threads and Ray tasks)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike import Settings
from lookalike.catalog.base import Product
from lookalike.encode import ImageLimits, content_hash, create_encoder
from lookalike.files.fetch import Fetcher
from lookalike.ingest.prepare import prepare_item, skip_action
from lookalike.ingest.sources import ItemSpec
from tests.support.image_catalogs import BAD_ITEMS, png_bytes, write_catalog


@pytest.fixture(scope="module")
def encoder(tiny_model_dir: Path):
    return create_encoder(
        Settings(_env_file=None, model_checkpoint=str(tiny_model_dir), torch_threads=1)
    )


@pytest.fixture
def prepare(encoder, tmp_path):
    fetcher = Fetcher(max_bytes=1 << 20, local_roots=[tmp_path])  # as `lookalike index tmp_path`
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
