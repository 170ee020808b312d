"""Products: read, add/replace (multipart upload, JSON with an image URL, metadata only),
delete, and the API key on writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_app
from tests.support.api_catalog import (
    UNREACHABLE,
    CatalogItem,
    ImageServer,
    api_settings,
    copy_data,
    draw_product,
    png_bytes,
)

NEW_IMAGE = png_bytes(draw_product("circle", (20, 20, 20), 99, size=120))


def first_hit_for(client: TestClient, image: bytes) -> dict:
    response = client.post(
        "/v1/search/image", files={"image": ("q.png", image, "image/png")}, params={"limit": 3}
    )
    assert response.status_code == 200, response.text
    return response.json()["results"][0]


def test_get_product(client: TestClient, catalog_items: list[CatalogItem]) -> None:
    item = catalog_items[6]
    response = client.get(f"/v1/products/{item.id}")
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == item.id
    assert (body["title"], body["category"], body["brand"], body["price"]) == (
        item.title,
        item.category,
        item.brand,
        item.price,
    )
    assert body["searchable"] is True
    assert body["image_url"].startswith(f"/v1/images/{item.id}")


def test_unknown_product_is_404(client: TestClient) -> None:
    response = client.get("/v1/products/does-not-exist")
    assert response.status_code == 404
    assert response.json() == {
        "error": {"type": "NotFound", "message": "not found: product 'does-not-exist'"}
    }


def test_put_multipart_adds_a_searchable_product(writable_client: TestClient) -> None:
    response = writable_client.put(
        "/v1/products/new-1",
        data={
            "title": "Black disc",
            "category": "circle",
            "brand": "Nova",
            "price": "19.90",
            "attributes": json.dumps({"color": "black", "stock": 3}),
        },
        files={"image": ("disc.png", NEW_IMAGE, "image/png")},
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["title"], body["brand"], body["price"]) == ("Black disc", "Nova", 19.9)
    assert body["attributes"] == {"color": "black", "stock": 3}
    assert body["searchable"] is True
    # Searchable the moment PUT returns.
    hit = first_hit_for(writable_client, NEW_IMAGE)
    assert hit["id"] == "new-1"
    assert writable_client.get("/v1/products/new-1").json()["title"] == "Black disc"
    assert writable_client.get(body["image_url"]).content == NEW_IMAGE


def test_put_again_replaces_image_and_metadata(writable_client: TestClient, catalog_items):
    item = catalog_items[0]
    response = writable_client.put(
        f"/v1/products/{item.id}",
        data={"title": "Replaced", "price": "1"},
        files={"image": ("new.png", NEW_IMAGE, "image/png")},
    )
    assert response.status_code == 200, response.text
    assert response.json()["title"] == "Replaced"
    assert response.json()["category"] is None  # PUT replaces the whole record
    assert first_hit_for(writable_client, NEW_IMAGE)["id"] == item.id
    # The old picture no longer finds it first.
    assert first_hit_for(writable_client, item.path.read_bytes())["id"] != item.id


def test_put_json_with_an_image_url(
    writable_client: TestClient, image_server: ImageServer, catalog_items
) -> None:
    source = catalog_items[3]
    body = {"title": "Copy", "category": "extra", "price": 5}
    # A path on the server is never read for an API client, even one under the catalog's
    # own folder; the same image by URL is.
    refused = writable_client.put(
        "/v1/products/copy-of-3", json={**body, "image_url": str(source.path)}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["type"] == "FetchRefused"
    assert writable_client.get("/v1/products/copy-of-3").status_code == 404
    url = f"{image_server.url}/{source.path.name}"
    response = writable_client.put("/v1/products/copy-of-3", json={**body, "image_url": url})
    assert response.status_code == 201, response.text
    results = writable_client.get("/v1/search/text", params={"q": "x", "category": "extra"}).json()[
        "results"
    ]
    assert [hit["id"] for hit in results] == ["copy-of-3"]


def test_put_json_with_an_http_url_then_image_redirects(
    writable_client: TestClient, image_server: ImageServer, catalog_items
) -> None:
    item = catalog_items[8]
    url = f"{image_server.url}/{item.path.name}"
    response = writable_client.put("/v1/products/remote-1", json={"title": "R", "image_url": url})
    assert response.status_code == 201, response.text
    assert first_hit_for(writable_client, item.path.read_bytes())["id"] in {item.id, "remote-1"}
    image = writable_client.get("/v1/images/remote-1", follow_redirects=False)
    assert image.status_code == 307
    assert image.headers["location"] == url


def test_put_metadata_only_keeps_the_image(writable_client: TestClient, catalog_items) -> None:
    item = catalog_items[11]
    before = writable_client.get(f"/v1/products/{item.id}").json()
    response = writable_client.put(
        f"/v1/products/{item.id}", json={"title": "Renamed", "brand": "Other", "price": 2.5}
    )
    assert response.status_code == 200, response.text
    after = response.json()
    assert (after["title"], after["brand"], after["price"]) == ("Renamed", "Other", 2.5)
    assert after["searchable"] is True
    assert after["image_url"] == before["image_url"]  # same content hash: not re-encoded
    hit = first_hit_for(writable_client, item.path.read_bytes())
    assert (hit["id"], hit["title"]) == (item.id, "Renamed")


@pytest.mark.parametrize(
    ("kwargs", "status", "error_type"),
    [
        ({"json": {"title": "no image"}}, 422, "InvalidInput"),
        ({"json": {"title": "t", "price": -1, "image_url": "x"}}, 422, "ValidationError"),
        ({"json": {"title": "t", "price": "free", "image_url": "x"}}, 422, "ValidationError"),
        ({"json": {"title": "t", "unknown_field": 1}}, 422, "ValidationError"),
        ({"json": {"image_url": "/no/such/file.png"}}, 422, "FetchRefused"),
        ({"json": {"image_url": f"http://{UNREACHABLE}/x.png"}}, 400, "FetchError"),
        ({"json": {"image_url": "http://localhost:9/x.png"}}, 422, "FetchRefused"),
        (
            {"files": {"image": ("a.txt", b"plain text " * 30, "text/plain")}},
            415,
            "UnsupportedImage",
        ),
        (
            {"files": {"image": ("a.png", NEW_IMAGE, "image/png")}, "data": {"attributes": "[1"}},
            422,
            "InvalidInput",
        ),
        (
            {
                "files": {"image": ("a.png", NEW_IMAGE, "image/png")},
                "data": {"image_url": "/x.png"},
            },
            422,
            "InvalidInput",
        ),
        (
            {"content": b"title=x", "headers": {"Content-Type": "text/plain"}},
            415,
            "UnsupportedMediaType",
        ),
        (
            {"files": {"file": ("a.png", NEW_IMAGE, "image/png")}, "data": {"title": "t"}},
            422,
            "InvalidInput",
        ),
    ],
    ids=[
        "new-without-image",
        "negative-price",
        "price-not-a-number",
        "unknown-field",
        "server-path",
        "unreachable-url",
        "loopback-url",
        "not-an-image",
        "attributes-not-json",
        "file-and-url",
        "wrong-content-type",
        "file-under-another-name",
    ],
)
def test_bad_puts(writable_client: TestClient, kwargs: dict, status: int, error_type: str):
    response = writable_client.put("/v1/products/bad-1", **kwargs)
    assert response.status_code == status, response.text
    assert response.json()["error"]["type"] == error_type
    assert writable_client.get("/v1/products/bad-1").status_code == 404  # nothing half-saved


def test_put_url_that_is_not_found_is_400(writable_client, image_server: ImageServer) -> None:
    response = writable_client.put(
        "/v1/products/x", json={"image_url": f"{image_server.url}/missing.png"}
    )
    assert response.status_code == 400
    assert "HTTP 404" in response.json()["error"]["message"]


def test_delete_makes_it_unsearchable(writable_client: TestClient, catalog_items) -> None:
    item = catalog_items[2]
    assert first_hit_for(writable_client, item.path.read_bytes())["id"] == item.id
    response = writable_client.delete(f"/v1/products/{item.id}")
    assert response.status_code == 204
    assert response.content == b""
    assert writable_client.get(f"/v1/products/{item.id}").status_code == 404
    assert first_hit_for(writable_client, item.path.read_bytes())["id"] != item.id
    all_ids = [
        hit["id"]
        for hit in writable_client.get("/v1/search/text", params={"q": "x", "limit": 100}).json()[
            "results"
        ]
    ]
    assert item.id not in all_ids and len(all_ids) == len(catalog_items) - 1
    again = writable_client.delete(f"/v1/products/{item.id}")
    assert again.status_code == 404


def test_ids_with_slashes(writable_client: TestClient) -> None:
    response = writable_client.put(
        "/v1/products/shoes/red sneaker.png",
        data={"title": "Slashed"},
        files={"image": ("a.png", NEW_IMAGE, "image/png")},
    )
    assert response.status_code == 201, response.text
    assert response.json()["id"] == "shoes/red sneaker.png"
    assert writable_client.get("/v1/products/shoes/red sneaker.png").json()["title"] == "Slashed"
    similar = writable_client.get("/v1/products/shoes/red sneaker.png/similar?limit=3")
    assert similar.status_code == 200
    assert "shoes/red sneaker.png" not in [hit["id"] for hit in similar.json()["results"]]
    image = writable_client.get(response.json()["image_url"])
    assert image.status_code == 200 and image.content == NEW_IMAGE
    assert writable_client.delete("/v1/products/shoes/red sneaker.png").status_code == 204


# --- API key ----------------------------------------------------------------------------
@pytest.fixture
def keyed_client(tmp_path: Path, indexed_data: Path, tiny_model: Path):
    settings = api_settings(copy_data(indexed_data, tmp_path), tiny_model, api_key="s3cret-key")
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.mark.parametrize("headers", [{}, {"X-API-Key": "wrong"}, {"X-API-Key": ""}])
def test_writes_need_the_api_key(keyed_client: TestClient, catalog_items, headers) -> None:
    item = catalog_items[1]
    put = keyed_client.put(
        "/v1/products/k-1", files={"image": ("a.png", NEW_IMAGE, "image/png")}, headers=headers
    )
    assert put.status_code == 401
    assert put.json()["error"]["type"] == "Unauthorized"
    delete = keyed_client.delete(f"/v1/products/{item.id}", headers=headers)
    assert delete.status_code == 401
    assert keyed_client.get(f"/v1/products/{item.id}").status_code == 200  # untouched
    assert keyed_client.get("/v1/products/k-1").status_code == 404


def test_writes_with_the_api_key(keyed_client: TestClient, catalog_items) -> None:
    key = {"X-API-Key": "s3cret-key"}
    put = keyed_client.put(
        "/v1/products/k-1", files={"image": ("a.png", NEW_IMAGE, "image/png")}, headers=key
    )
    assert put.status_code == 201
    assert (
        keyed_client.delete(f"/v1/products/{catalog_items[1].id}", headers=key).status_code == 204
    )
    # Reads never need the key.
    assert keyed_client.get("/v1/search/text", params={"q": "x"}).status_code == 200
