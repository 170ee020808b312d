"""Two `lookalike serve` replicas on one PostgreSQL catalog and one Milvus server: they
answer alike, and a write through either is visible through the other within 1 s."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from lookalike.engine import Engine
from tests.support.api_catalog import (
    WRITE_HEADERS,
    CatalogItem,
    ImageServer,
    LiveServer,
    api_settings,
    draw_product,
    png_bytes,
    start_server,
    stop_server,
)

pytest.importorskip("pymilvus", reason="needs lookalike[milvus]")

VISIBLE_WITHIN_S = 1.0


def ranked(response: httpx.Response) -> list[tuple[str, float]]:
    assert response.status_code == 200, response.text
    body = response.json()
    return [(hit["id"], hit["score"]) for hit in body["results"]] + [("total", body["total_found"])]


def agree(a: list[tuple[str, float]], b: list[tuple[str, float]], tol: float = 1e-5) -> bool:
    """The same answer from two processes: scores equal to last-digit noise (they may sum
    floats in another order: BLAS threads), and the same id at each place, except that
    items whose scores tie within that noise may swap places."""
    if len(a) != len(b) or any(abs(sa - sb) > tol for (_, sa), (_, sb) in zip(a, b, strict=True)):
        return False
    return all(
        name_a == name_b or any(n == name_a and abs(s - score) <= tol for n, s in b)
        for (name_a, score), (name_b, _) in zip(a, b, strict=True)
    )


def wait_until(check: Callable[[], bool], timeout_s: float = 10.0) -> float:
    """Staleness: seconds from now until the start of the first `check()` that holds
    (0 when the first read already sees the write); fails after `timeout_s`. Reads start
    every 20 ms at most, so what a read itself takes does not count."""
    started = time.monotonic()
    while True:
        attempt = time.monotonic()
        if check():
            return attempt - started
        if attempt - started > timeout_s:
            pytest.fail(f"not visible after {timeout_s} s")
        time.sleep(0.02)


@pytest.fixture
def replicas(
    tmp_path: Path,
    tiny_model: Path,
    catalog_items: list[CatalogItem],
    postgres_url: str,
    milvus_server,
    monkeypatch: pytest.MonkeyPatch,
    image_server: ImageServer,
):
    """The catalog indexed once into the servers, then two replicas, each with its own
    (empty) data dir: nothing on local disk is shared."""
    servers = {
        "catalog_url": postgres_url,
        "index_url": milvus_server.uri,
        "milvus_index_type": "FLAT",
    }
    loader = api_settings(tmp_path / "loader", tiny_model, **servers)
    with Engine(loader) as engine:
        report = engine.index_path(catalog_items[0].path.parent / "catalog.csv")
    assert report.added == len(catalog_items)
    for name, value in servers.items():
        monkeypatch.setenv(f"LOOKALIKE_{name.upper()}", value)
    allow = [image_server.allow_entry]
    a = start_server(tmp_path / "a", tiny_model, allow_hosts=allow)
    try:
        b = start_server(tmp_path / "b", tiny_model, allow_hosts=allow)
    except BaseException:
        stop_server(a.process)
        raise
    try:
        yield a, b
    finally:
        stop_server(a.process)
        stop_server(b.process)


def test_replicas_answer_alike_and_see_each_others_writes(
    replicas: tuple[LiveServer, LiveServer],
    catalog_items: list[CatalogItem],
    image_server: ImageServer,
) -> None:
    a, b = replicas
    for server in (a, b):
        ready = httpx.get(f"{server.url}/readyz").json()
        assert ready["products"] == ready["index_vectors"] == len(catalog_items)

    # The same questions, the same answers.
    query_image = png_bytes(draw_product("circle", (200, 40, 40), 99))
    questions = [
        lambda s: httpx.get(f"{s.url}/v1/search/text", params={"q": "red circle", "limit": 10}),
        lambda s: httpx.get(
            f"{s.url}/v1/search/text",
            params={"q": "blue", "category": ["square", "circle"], "price_max": 60},
        ),
        lambda s: httpx.post(
            f"{s.url}/v1/search/image", files={"image": ("q.png", query_image, "image/png")}
        ),
        lambda s: httpx.get(f"{s.url}/v1/products/{catalog_items[3].id}/similar"),
    ]
    for ask in questions:
        from_a, from_b = ranked(ask(a)), ranked(ask(b))
        assert agree(from_a, from_b), (from_a, from_b)

    # Added through A: found through B by its own image.
    fresh = catalog_items[5]
    url = f"{image_server.url}/{fresh.path.name}"
    put = httpx.put(
        f"{a.url}/v1/products/replica-new",
        json={"image_url": url, "title": "new", "category": "new-shape", "price": 5.0},
        headers=WRITE_HEADERS,
        timeout=60,
    )
    assert put.status_code == 201, put.text
    with open(fresh.path, "rb") as handle:
        probe = handle.read()

    def b_finds_it() -> bool:
        found = httpx.post(
            f"{b.url}/v1/search/image",
            files={"image": ("q.png", probe, "image/png")},
            params={"category": "new-shape"},
        ).json()["results"]
        return [hit["id"] for hit in found] == ["replica-new"]

    added_s = wait_until(b_finds_it)

    # Metadata changed through B: A's filtered search follows.
    put = httpx.put(
        f"{b.url}/v1/products/replica-new",
        json={"title": "new", "category": "new-shape", "price": 500.0},
        headers=WRITE_HEADERS,
        timeout=60,
    )
    assert put.status_code == 200, put.text

    def a_filters_by_new_price() -> bool:
        found = httpx.get(
            f"{a.url}/v1/search/text", params={"q": "x", "price_min": 400, "limit": 5}
        ).json()["results"]
        return [hit["id"] for hit in found] == ["replica-new"]

    updated_s = wait_until(a_filters_by_new_price)

    # Deleted through B: gone from A.
    delete = httpx.delete(f"{b.url}/v1/products/replica-new", headers=WRITE_HEADERS)
    assert delete.status_code == 204

    def a_lost_it() -> bool:
        gone = httpx.get(f"{a.url}/v1/products/replica-new").status_code == 404
        found = httpx.get(
            f"{a.url}/v1/search/text", params={"q": "x", "category": "new-shape"}
        ).json()
        return gone and found["results"] == [] and found["total_found"] == 0

    deleted_s = wait_until(a_lost_it)
    settled_s = wait_until(lambda: all(agree(ranked(ask(a)), ranked(ask(b))) for ask in questions))
    print(
        f"visible on the other replica after: add {added_s * 1000:.0f} ms, update "
        f"{updated_s * 1000:.0f} ms, delete {deleted_s * 1000:.0f} ms; answers alike again "
        f"after {settled_s * 1000:.0f} ms"
    )
    assert max(added_s, updated_s, deleted_s, settled_s) <= VISIBLE_WITHIN_S
