"""Limits on every request, through the real app: the pixel budget answers 413 before any
image is decoded (the 16 x 6000 x 6000 attack of a few MB), filters and texts over their
caps and non-finite numbers are 422, and nothing a request may not hold reaches the
catalog (a filtered search still works after every attempt)."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from lookalike.api import create_app
from tests.support.api_catalog import WRITE_HEADERS, CatalogItem, api_settings, copy_data

MiB = 1024 * 1024


def blank_png(side: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (side, side), 0).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def attack() -> list[bytes]:
    """16 blank 6000 x 6000 PNGs: each within the default per-image pixel limit (40 MP),
    about 35 KB each, 576 MP together."""
    return [blank_png(6000)] * 16


@pytest.fixture(scope="module")
def roomy_client(
    tmp_path_factory: pytest.TempPathFactory, indexed_data: Path, tiny_model: Path
) -> Iterator[TestClient]:
    """The default image limits (not the small ones of the other API tests)."""
    data_dir = copy_data(indexed_data, tmp_path_factory.mktemp("limits"))
    settings = api_settings(
        data_dir,
        tiny_model,
        max_image_pixels=40_000_000,
        max_image_bytes=20 * MiB,
        max_upload_bytes=32 * MiB,
    )
    with TestClient(create_app(settings)) as client:
        yield client


def test_the_pixel_budget_refuses_the_attack_before_decoding(
    roomy_client: TestClient, attack: list[bytes]
) -> None:
    assert sum(map(len, attack)) < 2 * MiB
    files = [("image", (f"{i}.png", data, "image/png")) for i, data in enumerate(attack)]
    started = time.monotonic()
    multipart = roomy_client.post("/v1/search", files=files, data={"query": "{}"})
    as_json = roomy_client.post(
        "/v1/search", json={"images": [base64.b64encode(data).decode() for data in attack]}
    )
    # Decoding 576 MP would take many seconds (and GBs); reading 16 headers takes little.
    assert time.monotonic() - started < 5.0
    for response in (multipart, as_json):
        assert response.status_code == 413, response.text
        error = response.json()["error"]
        assert error["type"] == "ImageTooLarge" and "budget of 100000000 pixels" in error["message"]
    # Two of them fit the budget and are searched.
    two = roomy_client.post("/v1/search", files=files[:2], data={"query": "{}"})
    assert two.status_code == 200, two.text


def test_a_product_image_over_the_budget_is_413(
    tmp_path: Path, indexed_data: Path, tiny_model: Path
) -> None:
    settings = api_settings(
        copy_data(indexed_data, tmp_path),
        tiny_model,
        max_image_pixels=40_000_000,
        max_request_pixels=10_000_000,
    )
    with TestClient(create_app(settings), headers=WRITE_HEADERS) as client:
        response = client.put(
            "/v1/products/big",
            data={"title": "big"},
            files={"image": ("big.png", blank_png(4000), "image/png")},
        )
        assert response.status_code == 413 and "budget" in response.text
        assert client.get("/v1/products/big").status_code == 404


@pytest.mark.parametrize(
    "body",
    [
        {"text": "red", "filters": {"attributes": {f"k{i}": ["x"] for i in range(1000)}}},
        {"text": "red", "filters": {"categories": [f"c{i}" for i in range(101)]}},
        {"text": "red", "filters": {"brands": ["b" * 201]}},
        {"text": "x" * 2001},
        {"texts": ["a"] * 17},
        {"text": "red", "product_id": "p" * 1001},
        {"text": "red", "filters": {"attributes": {"colour": [NaN := float("nan")]}}},
        {"text": "red", "rerank": {"popularity": NaN}},
        {"text": "red", "rerank": {"rating": float("inf")}},
    ],
    ids=[
        "1000-attribute-keys",
        "101-categories",
        "long-brand",
        "long-text",
        "17-texts",
        "long-product-id",
        "nan-filter-value",
        "nan-rerank",
        "inf-rerank",
    ],
)
def test_searches_over_the_caps_or_not_finite_are_422(client: TestClient, body: dict) -> None:
    import json

    raw = json.dumps(body)  # NaN and Infinity as the bare words Python's JSON writes
    response = client.post("/v1/search", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text


def test_query_string_filters_are_capped_too(client: TestClient) -> None:
    params = {"q": "red", "category": [f"c{i}" for i in range(101)]}
    response = client.get("/v1/search/text", params=params)
    assert response.status_code == 422 and "at most 100" in response.text


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ('{"title": "t", "attributes": {"popularity": NaN}}', "not a finite number"),
        ('{"title": "t", "attributes": {"a": [1, {"b": -Infinity}]}}', "not a finite number"),
        ('{"title": "t", "attributes": {"n": 1e400}}', "not a finite number"),
        ('{"title": "' + "t" * 1001 + '"}', "title"),
        ('{"title": "t\\u0000"}', "NUL"),
    ],
)
def test_products_a_catalog_may_not_hold_are_422_and_change_nothing(
    writable_client: TestClient, catalog_items: list[CatalogItem], raw: str, message: str
) -> None:
    item = catalog_items[3]
    before = writable_client.get(f"/v1/products/{item.id}").json()
    response = writable_client.put(
        f"/v1/products/{item.id}", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 422 and message in response.text, response.text
    assert writable_client.get(f"/v1/products/{item.id}").json() == before


def test_multipart_attributes_are_checked_the_same_way(
    writable_client: TestClient, catalog_items: list[CatalogItem]
) -> None:
    response = writable_client.put(
        f"/v1/products/{catalog_items[0].id}",
        files={"title": (None, "t"), "attributes": (None, '{"popularity": NaN}')},
    )
    assert response.status_code == 422 and "not a finite number" in response.text
    long_id = writable_client.put("/v1/products/" + "p" * 1001, json={"title": "t"})
    assert long_id.status_code == 422 and "product id is 1001" in long_id.text


def test_attribute_filtered_search_works_after_every_attempt(
    writable_client: TestClient, catalog_items: list[CatalogItem]
) -> None:
    """On SQLite before 3.42 a stored NaN made every attribute-filtered search fail."""
    for raw in ('{"attributes": {"x": NaN}}', '{"attributes": {"x": Infinity}}'):
        writable_client.put(
            f"/v1/products/{catalog_items[1].id}",
            content=raw,
            headers={"content-type": "application/json"},
        )
    ok = writable_client.put(
        f"/v1/products/{catalog_items[1].id}", json={"title": "t", "attributes": {"x": 2.5}}
    )
    assert ok.status_code == 200, ok.text
    found = writable_client.post(
        "/v1/search", json={"text": "circle", "filters": {"attributes": {"x": [2.5]}}}
    )
    assert found.status_code == 200
    assert [hit["id"] for hit in found.json()["results"]] == [catalog_items[1].id]
