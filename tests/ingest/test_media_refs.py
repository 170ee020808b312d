"""Uploaded images are stored once by content hash, shared by the products that use them,
and deleted with the last of them (replaced or deleted), through the real API on a real
catalog. Crash safety: a file may outlive its products (the sweep removes it), never the
other way round, also when an upload of the same image races the delete of its last user."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.catalog.base import Product
from lookalike.encode.images import content_hash
from lookalike.engine import Engine
from lookalike.ingest.sources import ItemSpec
from tests.support.api_catalog import (
    CatalogItem,
    ImageServer,
    api_settings,
    copy_data,
    draw_product,
    png_bytes,
)

IMAGE_A = png_bytes(draw_product("circle", (200, 30, 30), 91, size=120))
IMAGE_B = png_bytes(draw_product("square", (30, 30, 200), 92, size=120))


def upload(client: TestClient, product_id: str, image: bytes, title: str = "t") -> dict:
    response = client.put(
        f"/v1/products/{product_id}",
        data={"title": title},
        files={"image": ("x.png", image, "image/png")},
    )
    assert response.status_code in (200, 201), response.text
    return response.json()


def media_files(client: TestClient) -> set[str]:
    root = client.app.state.settings.data_dir / "media"
    return {path.name for path in root.glob("*/*") if path.is_file()}


def test_a_shared_upload_is_deleted_with_its_last_product(writable_client: TestClient) -> None:
    client = writable_client
    upload(client, "u1", IMAGE_A)
    upload(client, "u2", IMAGE_A)
    upload(client, "u3", IMAGE_B)
    assert media_files(client) == {content_hash(IMAGE_A), content_hash(IMAGE_B)}

    assert client.delete("/v1/products/u1").status_code == 204
    assert media_files(client) == {content_hash(IMAGE_A), content_hash(IMAGE_B)}
    assert client.get("/v1/images/u2").content == IMAGE_A  # still served to u2
    assert client.delete("/v1/products/u2").status_code == 204
    assert media_files(client) == {content_hash(IMAGE_B)}


def test_a_replaced_upload_goes_metadata_changes_keep_it(writable_client: TestClient) -> None:
    client = writable_client
    upload(client, "u1", IMAGE_A)
    changed = client.put("/v1/products/u1", json={"title": "new title", "price": 3})
    assert changed.status_code == 200 and changed.json()["title"] == "new title"
    assert media_files(client) == {content_hash(IMAGE_A)}

    upload(client, "u1", IMAGE_B)  # a new image for the same product
    assert media_files(client) == {content_hash(IMAGE_B)}
    assert client.get("/v1/images/u1").content == IMAGE_B


def test_an_upload_replaced_by_an_image_url_goes(
    writable_client: TestClient, image_server: ImageServer, catalog_items: list[CatalogItem]
) -> None:
    client = writable_client
    upload(client, "u1", IMAGE_A)
    url = f"{image_server.url}/{catalog_items[0].path.name}"
    response = client.put("/v1/products/u1", json={"title": "t", "image_url": url})
    assert response.status_code == 200, response.text
    assert media_files(client) == set()


def test_the_sweep_deletes_only_what_no_product_uses(
    tmp_path: Path, indexed_data: Path, tiny_model: Path
) -> None:
    with Engine(api_settings(copy_data(indexed_data, tmp_path), tiny_model)) as engine:
        engine.upsert(ItemSpec("u1", None, "kept"), IMAGE_A)
        root = engine.media.directory
        # What a crash between writing a file and committing its product leaves behind.
        orphan = content_hash(IMAGE_B)
        (root / orphan[:2]).mkdir(parents=True, exist_ok=True)
        (root / orphan[:2] / orphan).write_bytes(IMAGE_B)
        stray = root / "notes.txt"  # not a stored image: never touched
        stray.write_text("x")
        assert engine.housekeeping().media_deleted == 1
        assert (root / content_hash(IMAGE_A)[:2] / content_hash(IMAGE_A)).is_file()
        assert not (root / orphan[:2] / orphan).exists() and stray.exists()
        assert engine.media.sweep() == 0


def test_a_crash_before_the_commit_leaves_a_file_never_a_dangling_product(
    tmp_path: Path, indexed_data: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Engine(api_settings(copy_data(indexed_data, tmp_path), tiny_model)) as engine:

        def crash(*args: object) -> None:
            raise RuntimeError("power cut")

        monkeypatch.setattr(engine.catalog, "upsert", crash)
        with pytest.raises(RuntimeError):
            engine.upsert(ItemSpec("u1", None, "t"), IMAGE_A)
        monkeypatch.undo()
        assert "u1" not in engine.catalog.get_many(["u1"])
        assert engine.media.sweep() == 1  # the file it left


def test_an_upload_racing_the_delete_of_the_last_user_keeps_its_file(
    tmp_path: Path, indexed_data: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Delete u1 (the only user of image A) while u2 uploads image A. The delete counts no
    reference (u2 has not committed), then stalls before deleting the file; without the
    media lock, u2 would find the file there, skip writing it, commit, and lose it."""
    with Engine(api_settings(copy_data(indexed_data, tmp_path), tiny_model)) as engine:
        engine.upsert(ItemSpec("u1", None, "t"), IMAGE_A)
        counted, release = threading.Event(), threading.Event()
        real = engine.catalog.image_sources

        def slow_image_sources(hashes: list[str]) -> set[str]:
            sources = real(hashes)
            if threading.current_thread().name == "deleter":
                counted.set()
                release.wait(timeout=10)
            return sources

        monkeypatch.setattr(engine.catalog, "image_sources", slow_image_sources)
        deleter = threading.Thread(target=engine.delete, args=("u1",), name="deleter")
        deleter.start()
        assert counted.wait(timeout=30)
        uploader = threading.Thread(
            target=engine.upsert, args=(ItemSpec("u2", None, "t"), IMAGE_A), name="uploader"
        )
        uploader.start()
        uploader.join(timeout=1.0)
        assert uploader.is_alive()  # waiting for the media lock the delete holds
        release.set()
        deleter.join(timeout=30)
        uploader.join(timeout=30)
        product: Product = engine.catalog.get("u2")
        assert Path(product.image_source).read_bytes() == IMAGE_A
        assert engine.media.sweep() == 0
