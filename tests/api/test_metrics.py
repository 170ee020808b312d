"""`GET /metrics` on the real app: the numbers move as requests are made."""

from __future__ import annotations

import random
import string
from pathlib import Path

from fastapi.testclient import TestClient

from lookalike.api import create_app
from tests.support.api_catalog import (
    TEST_API_KEY,
    CatalogItem,
    api_settings,
    copy_data,
    draw_product,
    png_bytes,
)
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
    # What the in-process caches hold: nothing before, the three results and the query
    # embeddings after (a soak tells their bounded growth from a leak by this).
    assert value(before, "lookalike_cache_bytes", cache="results") == 0
    assert value(after, "lookalike_cache_bytes", cache="results") > 3 * 100
    assert value(after, "lookalike_cache_bytes", cache="embeddings") > 0

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


def test_random_methods_add_at_most_one_label_value(writable_client: TestClient) -> None:
    """Methods outside the standard set count as `other`: a client inventing methods cannot
    grow /metrics."""
    client = writable_client

    def methods() -> set[str]:
        return {
            dict(labels)["method"]
            for (name, labels) in scrape(client)
            if name == "lookalike_http_requests_total"
        }

    client.get("/healthz")
    before = methods()
    rng = random.Random(15)
    for _ in range(50):
        method = "".join(rng.choices(string.ascii_uppercase, k=rng.randint(3, 12)))
        assert client.request(method, "/v1/search/text").status_code in (400, 405)
    client.request("PATCH", "/v1/search/text")
    after = methods()
    assert after - before <= {"other", "PATCH"}
    assert "other" in after and len(after - before - {"PATCH"}) == 1
    samples = scrape(client)
    other = {"method": "other", "route": "/v1/search/text", "status": "405"}
    assert value(samples, "lookalike_http_requests_total", **other) == 50


def test_metrics_access_follows_the_policy(
    tmp_path: Path, indexed_data: Path, tiny_model: Path
) -> None:
    """`local` (the default): loopback clients, or any valid key; `key`; `open`; `off`."""

    def status(policy: str | None, client: tuple[str, int], **headers: str) -> int:
        overrides = {} if policy is None else {"metrics_access": policy}
        settings = api_settings(data_dir, tiny_model, **overrides)
        with TestClient(create_app(settings), client=client) as test_client:
            return test_client.get("/metrics", headers=headers).status_code

    data_dir = copy_data(indexed_data, tmp_path)
    remote, local = ("192.0.2.10", 1234), ("127.0.0.1", 1234)
    key = {"X-API-Key": TEST_API_KEY}
    assert status(None, local) == 200
    assert status(None, remote) == 401
    assert status(None, remote, **key) == 200
    assert status(None, local, **{"X-API-Key": "lk_wrong"}) == 401
    assert status("key", local) == 401
    assert status("key", remote, **key) == 200
    assert status("open", remote) == 200
    assert status("off", local, **key) == 404


def test_search_stages_are_timed_by_query_type(
    writable_client: TestClient, catalog_items: list[CatalogItem]
) -> None:
    """Every search reports where its time went: one observation per stage it ran, labelled
    by query type; decoding only for uploads, the result cache only for a repeat."""
    client = writable_client
    stage = "lookalike_search_stage_seconds_count"
    assert client.get("/v1/search/text", params={"q": "green square"}).status_code == 200
    files = {"image": ("q.png", catalog_items[5].path.read_bytes(), "image/png")}
    assert client.post("/v1/search/image", files=files).status_code == 200
    samples = scrape(client)
    for name in ("queue", "encode", "ann", "catalog", "rank", "serialise"):
        assert value(samples, stage, type="text", stage=name) == 1, name
        assert value(samples, stage, type="image", stage=name) == 1, name
    assert value(samples, stage, type="image", stage="decode") == 1
    assert value(samples, stage, type="text", stage="decode") == 0
    assert value(samples, stage, type="text", stage="result_cache") == 0
    encode_s = value(samples, "lookalike_search_stage_seconds_sum", type="text", stage="encode")
    total_s = value(samples, "lookalike_search_seconds_sum", type="text")
    assert 0 < encode_s < total_s  # a part of the whole, in seconds

    assert client.get("/v1/search/text", params={"q": "green square"}).status_code == 200
    samples = scrape(client)
    assert value(samples, stage, type="text", stage="result_cache") == 1
    assert value(samples, stage, type="text", stage="ann") == 1  # the repeat searched nothing
