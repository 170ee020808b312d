"""`GET /metrics` on the real app: the numbers move as requests are made."""

from __future__ import annotations

from fastapi.testclient import TestClient

from tests.support.api_catalog import CatalogItem, draw_product, png_bytes
from tests.support.prometheus import Samples, parse_samples, value


def scrape(client: TestClient) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return parse_samples(response.text)


def test_metrics_follow_searches_errors_caches_and_writes(
    writable_client: TestClient, catalog_items: list[CatalogItem]
) -> None:
    client = writable_client
    before = scrape(client)
    assert value(before, "lookalike_index_vectors") == len(catalog_items)
    for kind in ("image", "text", "hybrid"):
        assert value(before, "lookalike_search_seconds_count", type=kind) == 0

    image = catalog_items[3].path.read_bytes()
    assert client.get("/v1/search/text", params={"q": "red circle"}).status_code == 200
    assert client.get("/v1/search/text", params={"q": "red circle"}).status_code == 200
    files = {"image": ("q.png", image, "image/png")}
    assert client.post("/v1/search/image", files=files).status_code == 200
    hybrid = {"text": "in blue", "product_id": catalog_items[0].id}
    assert client.post("/v1/search", json=hybrid).status_code == 200
    bad = {"image": ("bad.png", b"not an image at all", "image/png")}
    assert client.post("/v1/search/image", files=bad).status_code == 415
    assert client.get("/v1/nothing-here").status_code == 404

    after = scrape(client)
    assert value(after, "lookalike_search_seconds_count", type="text") == 2
    assert value(after, "lookalike_search_seconds_count", type="image") == 1
    assert value(after, "lookalike_search_seconds_count", type="hybrid") == 1
    assert value(after, "lookalike_search_seconds_sum", type="text") > 0
    assert value(after, "lookalike_search_requests_total", type="text", status="200") == 2
    assert value(after, "lookalike_search_requests_total", type="image", status="415") == 1
    route = {"method": "GET", "route": "/v1/search/text", "status": "200"}
    assert value(after, "lookalike_http_requests_total", **route) == 2
    unmatched = {"method": "GET", "route": "unmatched", "status": "404"}
    assert value(after, "lookalike_http_requests_total", **unmatched) == 1
    # The repeated text query was answered from the result cache.
    assert value(after, "lookalike_cache_hits_total", cache="results") == 1
    assert value(after, "lookalike_cache_misses_total", cache="results") == 3

    new = png_bytes(draw_product("circle", (10, 200, 30), 99))
    put = client.put(
        "/v1/products/new-one",
        files={"image": ("n.png", new, "image/png")},
        data={"title": "New", "category": "circle"},
    )
    assert put.status_code == 201
    client.put("/v1/products/sku-001", json={"title": "Renamed", "price": 1.0})
    later = scrape(client)
    assert value(later, "lookalike_index_vectors") == len(catalog_items) + 1
    assert value(later, "lookalike_ingest_items_total", outcome="added") == 1
    assert value(later, "lookalike_ingest_items_total", outcome="metadata") == 1
