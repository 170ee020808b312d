"""Images for result pages: the product's own file, thumbnails, redirects, and nothing else."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.support.api_catalog import CatalogItem, draw_product, png_bytes


def test_full_image_is_the_products_file(client: TestClient, catalog_items: list[CatalogItem]):
    item = catalog_items[0]
    response = client.get(f"/v1/images/{item.id}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == item.path.read_bytes()


@pytest.mark.parametrize(("size", "bucket"), [(64, 64), (50, 64), (256, 256), (1024, 1024)])
def test_thumbnails_are_small_jpegs(client: TestClient, catalog_items, size: int, bucket: int):
    item = catalog_items[1]
    response = client.get(f"/v1/images/{item.id}", params={"size": size})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/jpeg"
    thumb = Image.open(io.BytesIO(response.content))
    assert thumb.format == "JPEG"
    original = Image.open(item.path).size
    # Never enlarged; the longer side fits the size bucket.
    assert max(thumb.size) == min(bucket, max(original))
    # Asked again: served from the cache, byte for byte.
    assert client.get(f"/v1/images/{item.id}", params={"size": size}).content == response.content


def test_result_urls_point_at_working_images(client: TestClient) -> None:
    hit = client.get("/v1/search/text", params={"q": "x", "limit": 1}).json()["results"][0]
    for url in (hit["image_url"], hit["thumbnail_url"]):
        response = client.get(url)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("image/")


@pytest.mark.parametrize("size", [0, 8, 5000, "big"])
def test_bad_thumbnail_sizes_are_422(client: TestClient, catalog_items, size) -> None:
    response = client.get(f"/v1/images/{catalog_items[0].id}", params={"size": size})
    assert response.status_code == 422


@pytest.mark.parametrize(
    "path",
    ["/v1/images/nope", "/v1/images/../../etc/passwd", "/v1/images/%2Fetc%2Fpasswd"],
)
def test_only_product_images_are_served(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "NotFound"


def test_uploaded_images_are_served_with_their_type(writable_client: TestClient) -> None:
    image = png_bytes(draw_product("square", (10, 90, 200), 5))
    put = writable_client.put("/v1/products/up-1", files={"image": ("x.png", image, "image/png")})
    assert put.status_code == 201
    # Stored by content hash without a suffix: the type is read from the file itself.
    response = writable_client.get(put.json()["image_url"])
    assert response.headers["content-type"] == "image/png"
    assert response.content == image


def test_a_vanished_image_file_is_404(writable_client: TestClient) -> None:
    image = png_bytes(draw_product("circle", (1, 2, 3), 2))
    put = writable_client.put("/v1/products/gone", files={"image": ("g.png", image, "image/png")})
    assert put.status_code == 201
    stored = writable_client.get("/v1/products/gone").json()
    assert writable_client.get(stored["image_url"]).content == image
    data_dir = writable_client.app.state.engine.settings.data_dir
    files = (data_dir / "media").rglob("*")
    (media,) = [f for f in files if f.is_file() and f.read_bytes() == image]
    media.unlink()
    for params in ({}, {"size": 64}):
        response = writable_client.get("/v1/images/gone", params=params)
        assert response.status_code == 404
        assert "moved or deleted" in response.json()["error"]["message"]
