"""API keys on the real app: writes always need a key with scope write, searches are open
unless closed, keys from the catalog by digest (cached for a TTL, so a revocation spreads
within it), the environment's admin key, both ways of sending a key, the audit log."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.api.auth import KeyRing
from lookalike.catalog import open_catalog
from lookalike.catalog.keys import issue_key
from lookalike.catalog.sqlite import SQLiteCatalog
from tests.support.api_catalog import (
    TEST_API_KEY,
    CatalogItem,
    api_settings,
    copy_data,
    draw_product,
    png_bytes,
)

SCOPES = ("search", "write", "admin")
NEW_IMAGE = png_bytes(draw_product("square", (30, 30, 200), 98, size=110))


def put_new(client: TestClient, product_id: str, **headers: str):
    return client.put(
        f"/v1/products/{product_id}",
        files={"image": ("a.png", NEW_IMAGE, "image/png")},
        data={"title": "New"},
        headers=headers,
    )


def make_key(settings, name: str, scope: str) -> str:
    catalog = open_catalog(settings)
    try:
        return issue_key(catalog, name, scope, time.time())
    finally:
        catalog.close()


@pytest.fixture
def keyless(tmp_path: Path, indexed_data: Path, tiny_model: Path) -> Iterator[TestClient]:
    """An app with no key at all: not in the environment, none in the catalog."""
    settings = api_settings(copy_data(indexed_data, tmp_path), tiny_model, api_key=None)
    with TestClient(create_app(settings)) as client:
        yield client


@pytest.fixture
def keyed(tmp_path: Path, indexed_data: Path, tiny_model: Path):
    """An app with three catalog keys (search, write, admin); yields (client, tokens)."""
    settings = api_settings(copy_data(indexed_data, tmp_path), tiny_model, api_key=None)
    tokens = {scope: make_key(settings, f"{scope}-key", scope) for scope in SCOPES}
    with TestClient(create_app(settings)) as client:
        yield client, tokens


def test_writes_without_any_key_configured_answer_401_with_the_way_to_make_one(
    keyless: TestClient, catalog_items: list[CatalogItem]
) -> None:
    item = catalog_items[2]
    put = put_new(keyless, "no-key-1")
    assert put.status_code == 401
    error = put.json()["error"]
    assert error["type"] == "Unauthorized"
    assert "lookalike keys create --scope write NAME" in error["message"]
    assert put.headers["www-authenticate"].startswith("Bearer")
    delete = keyless.delete(f"/v1/products/{item.id}")
    assert delete.status_code == 401
    metadata = keyless.put(f"/v1/products/{item.id}", json={"title": "Defaced", "price": 0.01})
    assert metadata.status_code == 401
    # Nothing changed.
    assert keyless.get("/v1/products/no-key-1").status_code == 404
    kept = keyless.get(f"/v1/products/{item.id}").json()
    assert (kept["title"], kept["price"]) == (item.title, item.price)
    assert keyless.app.state.engine.catalog.stats().products == len(catalog_items)
    # Searching stays open to anonymous callers.
    assert keyless.get("/v1/search/text", params={"q": "red"}).status_code == 200


def test_a_search_only_key_may_search_but_not_write(
    keyed: tuple[TestClient, dict[str, str]], catalog_items: list[CatalogItem]
) -> None:
    client, tokens = keyed
    search_key = {"X-API-Key": tokens["search"]}
    item = catalog_items[4]
    put = put_new(client, "search-only-1", **search_key)
    assert put.status_code == 403
    assert put.json()["error"]["type"] == "Forbidden"
    assert "search-key" in put.json()["error"]["message"]
    assert client.delete(f"/v1/products/{item.id}", headers=search_key).status_code == 403
    assert client.get("/v1/products/search-only-1").status_code == 404
    assert client.get(f"/v1/products/{item.id}").status_code == 200
    found = client.get("/v1/search/text", params={"q": "red"}, headers=search_key)
    assert found.status_code == 200


def test_write_and_admin_keys_write_sent_either_way(
    keyed: tuple[TestClient, dict[str, str]], catalog_items: list[CatalogItem]
) -> None:
    client, tokens = keyed
    assert put_new(client, "w-1", **{"X-API-Key": tokens["write"]}).status_code == 201
    bearer = {"Authorization": f"Bearer {tokens['admin']}"}
    assert put_new(client, "a-1", **bearer).status_code == 201
    assert client.delete("/v1/products/w-1", headers=bearer).status_code == 204
    assert client.get("/v1/products/a-1").status_code == 200


def test_keys_that_are_not_valid_are_refused_even_where_none_is_needed(
    keyed: tuple[TestClient, dict[str, str]],
) -> None:
    client, tokens = keyed
    for headers in (
        {"X-API-Key": "lk_not-a-key"},
        {"X-API-Key": tokens["admin"][:-1]},  # one character short
        {"Authorization": "Bearer lk_not-a-key"},
    ):
        search = client.get("/v1/search/text", params={"q": "x"}, headers=headers)
        assert search.status_code == 401, headers
        assert "not valid" in search.json()["error"]["message"]
        assert put_new(client, "bad-1", **headers).status_code == 401
    assert client.get("/v1/products/bad-1").status_code == 404
    # An empty key is no key: anonymous, so searching works.
    empty = client.get("/v1/search/text", params={"q": "x"}, headers={"X-API-Key": ""})
    assert empty.status_code == 200


def test_the_environment_key_is_an_admin_key(writable_client: TestClient) -> None:
    assert put_new(writable_client, "env-1", **{"X-API-Key": TEST_API_KEY}).status_code == 201
    bearer = {"Authorization": f"Bearer {TEST_API_KEY}"}
    assert writable_client.delete("/v1/products/env-1", headers=bearer).status_code == 204


def test_search_can_require_a_key(tmp_path: Path, indexed_data: Path, tiny_model: Path) -> None:
    settings = api_settings(
        copy_data(indexed_data, tmp_path), tiny_model, api_key=None, search_requires_key=True
    )
    token = make_key(settings, "front", "search")
    with TestClient(create_app(settings)) as client:
        for path in ("/v1/search/text?q=red", "/v1/products/sku-001", "/v1/facets"):
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert "scope search" in refused.json()["error"]["message"]
            assert client.get(path, headers={"X-API-Key": token}).status_code == 200, path
        click = {"search_id": "x", "product_id": "sku-001", "position": 1}
        assert client.post("/v1/events/click", json=click).status_code == 401
        # Probes and the page need no key.
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
        assert client.get("/").status_code == 200


def test_a_revoked_key_stops_working_within_the_cache_ttl(
    tmp_path: Path, indexed_data: Path, tiny_model: Path
) -> None:
    """Revoked by another process (the CLI's own catalog connection), refused by the
    running server within `key_cache_ttl_s`, no restart."""
    ttl = 1.0
    settings = api_settings(
        copy_data(indexed_data, tmp_path), tiny_model, api_key=None, key_cache_ttl_s=ttl
    )
    token = make_key(settings, "leaked", "write")
    with TestClient(create_app(settings)) as client:
        headers = {"X-API-Key": token}
        assert put_new(client, "before", **headers).status_code == 201
        catalog = open_catalog(settings)
        try:
            assert catalog.revoke_api_key("leaked")
        finally:
            catalog.close()
        revoked_at = time.monotonic()
        while put_new(client, "after", **headers).status_code != 401:
            assert time.monotonic() - revoked_at < ttl + 2.0, "still accepted past the TTL"
            time.sleep(0.05)
        assert client.get("/v1/products/after").status_code in (200, 404)  # raced, or not
        # A new key (rotation) works at once: only found keys are cached.
        fresh = make_key(settings, "leaked", "write")
        assert put_new(client, "rotated", **{"X-API-Key": fresh}).status_code == 201


def test_key_ring_caches_found_keys_for_the_ttl_and_notes_use_once_a_minute(
    tmp_path: Path,
) -> None:
    catalog = SQLiteCatalog(tmp_path / "catalog.db")
    now = {"mono": 100.0, "wall": 1_700_000_000.0}
    ring = KeyRing(catalog, None, ttl_s=5.0, clock=lambda: now["mono"], wall=lambda: now["wall"])
    try:
        token = issue_key(catalog, "shop", "search", now["wall"])
        assert ring.cached(token) is None  # never looked up yet
        assert ring.lookup(token).name == "shop"
        assert ring.cached(token).scope == "search"
        assert catalog.api_keys()[0].last_used_at == now["wall"]

        catalog.revoke_api_key("shop")
        now["mono"] += 4.9
        assert ring.cached(token) is not None  # trusted until the TTL runs out
        now["mono"] += 0.2
        assert ring.cached(token) is None
        assert ring.lookup(token) is None  # and the next lookup finds it gone

        token = issue_key(catalog, "shop", "write", now["wall"])
        ring.lookup(token)
        first_use = catalog.api_keys()[0].last_used_at
        now["wall"] += 59
        ring.lookup(token)
        assert catalog.api_keys()[0].last_used_at == first_use  # not written again yet
        now["wall"] += 2
        ring.lookup(token)
        assert catalog.api_keys()[0].last_used_at == now["wall"]
        assert ring.configured()
        catalog.revoke_api_key("shop")
        assert not ring.configured()
    finally:
        catalog.close()


def test_writes_are_audited_by_key_name(
    keyed: tuple[TestClient, dict[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    client, tokens = keyed
    with caplog.at_level(logging.INFO, logger="lookalike.audit"):
        put_new(client, 'audited"%20key=admin', **{"X-API-Key": tokens["write"]})
        put_new(client, "refused-1")
        client.get("/v1/search/text", params={"q": "x"})  # reads are not audited
    lines = [r.getMessage() for r in caplog.records if r.name == "lookalike.audit"]
    assert len(lines) == 2, lines
    written, refused = lines
    assert written.startswith("key=write-key needs=write method=PUT")
    assert "route=/v1/products/{product_id:path}" in written and "status=201" in written
    # Quoted as JSON: a client's id cannot pass for another field.
    assert 'product="audited\\" key=admin"' in written
    assert refused.startswith("key=- needs=write method=PUT") and "status=401" in refused
    assert tokens["write"] not in " ".join(lines)
