"""Search endpoints against the real app: tiny model, SQLite and FAISS in a temp dir."""

from __future__ import annotations

import base64
import json

import pytest
from fastapi.testclient import TestClient

from tests.support.api_catalog import CatalogItem

HIT_FIELDS = {
    "id",
    "title",
    "image_url",
    "thumbnail_url",
    "category",
    "brand",
    "price",
    "score",
    "similarity",
    "attributes",
    "duplicates",
}


def ids(response) -> list[str]:
    return [hit["id"] for hit in response.json()["results"]]


def test_text_search_answers_with_results_and_timing(
    client: TestClient, catalog_items: list[CatalogItem]
) -> None:
    response = client.get("/v1/search/text", params={"q": "red circle"})
    assert response.status_code == 200
    body = response.json()
    assert len(body["results"]) == min(20, len(catalog_items))  # the default limit
    assert body["total_found"] == len(catalog_items)
    assert body["query_time_ms"] > 0
    assert set(body["results"][0]) == HIT_FIELDS
    scores = [hit["score"] for hit in body["results"]]
    assert scores == sorted(scores, reverse=True)
    by_id = {item.id: item for item in catalog_items}
    for hit in body["results"]:
        item = by_id[hit["id"]]
        assert (hit["title"], hit["category"], hit["brand"], hit["price"]) == (
            item.title,
            item.category,
            item.brand,
            item.price,
        )
        assert hit["image_url"].startswith(f"/v1/images/{item.id}")


@pytest.mark.parametrize(
    ("params", "keep"),
    [
        ({"category": "circle"}, lambda i: i.category == "circle"),
        ({"category": ["circle", "square"]}, lambda i: i.category in ("circle", "square")),
        ({"brand": "Acme"}, lambda i: i.brand == "Acme"),
        ({"price_min": 30, "price_max": 50}, lambda i: 30 <= i.price <= 50),
        (
            {"category": "triangle", "brand": "Zenith"},
            lambda i: i.category == "triangle" and i.brand == "Zenith",
        ),
    ],
)
def test_filters_keep_only_matching_products(
    client: TestClient, catalog_items: list[CatalogItem], params: dict, keep
) -> None:
    expected = {item.id for item in catalog_items if keep(item)}
    response = client.get("/v1/search/text", params={"q": "shape", "limit": 100, **params})
    assert response.status_code == 200
    assert set(ids(response)) == expected
    assert response.json()["total_found"] == len(expected)


def test_limit(client: TestClient) -> None:
    assert len(ids(client.get("/v1/search/text", params={"q": "x", "limit": 5}))) == 5


@pytest.mark.parametrize(
    "params",
    [
        {},  # no q
        {"q": ""},
        {"q": "   "},
        {"q": "x", "limit": 0},
        {"q": "x", "limit": 101},
        {"q": "x", "limit": "many"},
        {"q": "x", "price_min": -1},
        {"q": "x", "price_min": "cheap"},
        {"q": "x", "price_min": 50, "price_max": 10},
        {"q": "x", "price_max": "nan"},
    ],
)
def test_bad_text_search_parameters_are_422(client: TestClient, params: dict) -> None:
    response = client.get("/v1/search/text", params=params)
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["type"] in ("ValidationError", "InvalidInput")
    assert error["message"]


def test_image_search_finds_the_same_image_first(
    client: TestClient, catalog_items: list[CatalogItem]
) -> None:
    item = catalog_items[7]
    response = client.post(
        "/v1/search/image",
        files={"image": ("query.png", item.path.read_bytes(), "image/png")},
        params={"limit": 5},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["results"]) == 5
    assert body["results"][0]["id"] == item.id
    assert body["results"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)


def test_image_search_with_filters(client: TestClient, catalog_items: list[CatalogItem]) -> None:
    item = next(i for i in catalog_items if i.category == "circle")
    response = client.post(
        "/v1/search/image",
        files={"image": ("query.png", item.path.read_bytes(), "image/png")},
        params={"category": "square", "limit": 100},
    )
    assert response.status_code == 200
    found = ids(response)
    assert item.id not in found
    assert set(found) == {i.id for i in catalog_items if i.category == "square"}


def test_image_search_needs_a_file(client: TestClient) -> None:
    response = client.post("/v1/search/image", data={"nothing": "here"})
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "ValidationError"


# --- POST /v1/search ------------------------------------------------------------------------
def b64(item: CatalogItem) -> str:
    return base64.b64encode(item.path.read_bytes()).decode()


def test_combined_json_with_base64_image(client: TestClient, catalog_items) -> None:
    item = catalog_items[3]
    response = client.post("/v1/search", json={"images": [b64(item)], "limit": 3})
    assert response.status_code == 200, response.text
    assert ids(response)[0] == item.id
    data_url = f"data:image/png;base64,{b64(item)}"
    response = client.post("/v1/search", json={"images": [data_url], "limit": 3})
    assert ids(response)[0] == item.id


def test_combined_image_and_text_weight_moves_the_ranking(client: TestClient, catalog_items):
    item = catalog_items[10]
    image_only = client.post("/v1/search", json={"images": [b64(item)], "limit": 24}).json()
    text_only = client.get("/v1/search/text", params={"q": "blue diamond", "limit": 24}).json()
    mostly_image = client.post(
        "/v1/search",
        json={"images": [b64(item)], "text": "blue diamond", "image_weight": 1.0, "limit": 24},
    ).json()
    mostly_text = client.post(
        "/v1/search",
        json={"images": [b64(item)], "text": "blue diamond", "image_weight": 0.0, "limit": 24},
    ).json()
    ranking = lambda body: [hit["id"] for hit in body["results"]]  # noqa: E731
    assert ranking(mostly_image) == ranking(image_only)
    assert ranking(mostly_text) == ranking(text_only)


def test_combined_product_id_excludes_the_product(client: TestClient, catalog_items) -> None:
    item = catalog_items[5]
    response = client.post("/v1/search", json={"product_id": item.id, "limit": 100})
    assert response.status_code == 200
    assert item.id not in ids(response)
    assert len(ids(response)) == len(catalog_items) - 1
    assert response.json()["total_found"] == len(catalog_items) - 1


def test_combined_filters_in_the_body(client: TestClient, catalog_items) -> None:
    response = client.post(
        "/v1/search",
        json={"text": "anything", "filters": {"brands": ["Acme"], "price_max": 40}, "limit": 50},
    )
    assert response.status_code == 200
    expected = {i.id for i in catalog_items if i.brand == "Acme" and i.price <= 40}
    assert set(ids(response)) == expected


def test_combined_multipart_with_several_images(client: TestClient, catalog_items) -> None:
    first, second = catalog_items[0], catalog_items[1]
    response = client.post(
        "/v1/search",
        data={"query": json.dumps({"limit": 2})},
        files=[
            ("image", ("a.png", first.path.read_bytes(), "image/png")),
            ("image", ("b.png", second.path.read_bytes(), "image/png")),
        ],
    )
    assert response.status_code == 200, response.text
    # The mean of two embeddings sits between them: both images come first.
    assert set(ids(response)) == {first.id, second.id}


def test_combined_multipart_image_and_text(client: TestClient, catalog_items) -> None:
    item = catalog_items[2]
    response = client.post(
        "/v1/search",
        data={"query": json.dumps({"text": "in blue", "image_weight": 0.9, "limit": 3})},
        files={"image": ("q.png", item.path.read_bytes(), "image/png")},
    )
    assert response.status_code == 200
    assert len(ids(response)) == 3


@pytest.mark.parametrize(
    "options",
    [
        {"negative_texts": ["red"]},
        {"multi_image": "best"},
        {"rerank": {"popularity": 0.2}},
        {"diversity": {"max_per_category": 2}},
        {"diversity": {"mmr_lambda": 0.5}},
    ],
)
def test_ranking_options_pass_the_schema_and_reach_the_engine(
    client: TestClient, options: dict
) -> None:
    response = client.post("/v1/search", json={"text": "a shape", "limit": 5, **options})
    # The engine answers these once the ranking work lands; until then it refuses them
    # itself (InvalidInput), which shows the schema took them and passed them on.
    if response.status_code != 200:
        assert response.status_code == 422
        assert response.json()["error"]["type"] == "InvalidInput", response.text


@pytest.mark.parametrize(
    ("body", "error_type"),
    [
        ({}, "InvalidInput"),
        ({"text": "   "}, "InvalidInput"),
        ({"text": "x", "image_weight": 1.5}, "ValidationError"),
        ({"text": "x", "multi_image": "max"}, "ValidationError"),
        ({"text": "x", "limit": 0}, "ValidationError"),
        ({"text": "x", "limit": 1000}, "InvalidInput"),
        ({"text": "x", "colour": "red"}, "ValidationError"),
        ({"text": "x", "filters": {"price_min": -3}}, "ValidationError"),
        ({"text": "x", "filters": {"price_min": 9, "price_max": 1}}, "InvalidInput"),
        ({"text": "x", "diversity": {"mmr_lambda": 2}}, "ValidationError"),
        ({"images": "not-a-list"}, "ValidationError"),
    ],
)
def test_bad_combined_queries_are_422(client: TestClient, body: dict, error_type: str) -> None:
    response = client.post("/v1/search", json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["type"] == error_type


def test_combined_malformed_json_is_422(client: TestClient) -> None:
    response = client.post(
        "/v1/search", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "ValidationError"


def test_combined_bad_multipart_query_is_422(client: TestClient, catalog_items) -> None:
    response = client.post(
        "/v1/search",
        data={"query": "{oops"},
        files={"image": ("q.png", catalog_items[0].path.read_bytes(), "image/png")},
    )
    assert response.status_code == 422


def test_combined_multipart_with_unexpected_parts_is_422(client: TestClient, catalog_items):
    response = client.post(
        "/v1/search",
        data={"text": "red"},  # belongs inside `query`
        files={"image": ("q.png", catalog_items[0].path.read_bytes(), "image/png")},
    )
    assert response.status_code == 422
    assert "text" in response.json()["error"]["message"]


def test_combined_other_content_types_are_415(client: TestClient) -> None:
    response = client.post("/v1/search", content=b"q=red", headers={"Content-Type": "text/plain"})
    assert response.status_code == 415
    assert "application/json" in response.json()["error"]["message"]


def test_combined_bad_base64_is_400(client: TestClient) -> None:
    response = client.post("/v1/search", json={"images": ["@@@ not base64 @@@"]})
    assert response.status_code == 400
    assert "base64" in response.json()["error"]["message"]


# --- similar --------------------------------------------------------------------------------
def test_similar_excludes_the_product_itself(client: TestClient, catalog_items) -> None:
    item = catalog_items[4]
    response = client.get(f"/v1/products/{item.id}/similar", params={"limit": 100})
    assert response.status_code == 200
    found = ids(response)
    assert item.id not in found
    assert len(found) == len(catalog_items) - 1


def test_similar_matches_an_image_search_for_the_same_picture(client, catalog_items) -> None:
    """Stored embedding == encoding the same file again: same neighbours, same order."""
    item = catalog_items[9]
    similar = ids(client.get(f"/v1/products/{item.id}/similar", params={"limit": 6}))
    by_image = client.post(
        "/v1/search/image",
        files={"image": ("q.png", item.path.read_bytes(), "image/png")},
        params={"limit": 7},
    )
    assert similar == [i for i in ids(by_image) if i != item.id][:6]


def test_similar_with_limit_and_filters(client: TestClient, catalog_items) -> None:
    item = catalog_items[0]
    response = client.get(f"/v1/products/{item.id}/similar", params={"limit": 3, "brand": "Zenith"})
    assert response.status_code == 200
    hits = response.json()["results"]
    assert len(hits) == 3
    assert {hit["brand"] for hit in hits} == {"Zenith"}


def test_similar_to_an_unknown_product_is_404(client: TestClient) -> None:
    response = client.get("/v1/products/no-such-sku/similar")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "NotFound"
