"""Clicks you can trust, on the real app over each catalog backend: a click counts only for
a product the named, logged search returned, at the position the log has; unknown search
ids are 404 and products a search did not return 422. A click arriving before its search is
written (same process: still queued; another replica: not flushed yet) is still checked.
Logs are pruned by age, by the server and by `lookalike report --prune`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lookalike.api import create_app
from lookalike.catalog import ClickRecord, SearchRecord
from lookalike.catalog.logs import new_search_id
from lookalike.cli import app as cli_app
from lookalike.engine import Engine
from tests.support.api_catalog import CatalogItem, api_settings
from tests.support.catalog_backends import Backend

DAY = 86_400.0


@pytest.fixture
def indexed_backend(
    backend: Backend, tiny_model: Path, catalog_items: list[CatalogItem]
) -> Backend:
    with Engine(api_settings(backend.data_dir, tiny_model, catalog_url=backend.url)) as engine:
        assert engine.index_path(catalog_items[0].path.parent / "catalog.csv").added == 24
    return backend


def replica(backend: Backend, tiny_model: Path, name: str, **overrides) -> TestClient:
    """An app over the shared catalog, with its own data dir (index files, media)."""
    data_dir = backend.data_dir.parent / name
    settings = api_settings(data_dir, tiny_model, catalog_url=backend.url, **overrides)
    return TestClient(create_app(settings))


@pytest.fixture
def client(indexed_backend: Backend, tiny_model: Path) -> Iterator[TestClient]:
    # Searches stay queued (unwritten) for the whole test unless flushed on purpose.
    with replica(indexed_backend, tiny_model, "a", search_log_flush_s=60) as test_client:
        yield test_client


def text_search(client: TestClient, q: str = "red circle") -> dict:
    response = client.get("/v1/search/text", params={"q": q, "limit": 5})
    assert response.status_code == 200
    return response.json()


def click(client: TestClient, search_id: str, product_id: str, **extra) -> object:
    return client.post(
        "/v1/events/click", json={"search_id": search_id, "product_id": product_id, **extra}
    )


def test_a_click_counts_at_the_logged_position_whatever_the_client_says(
    client: TestClient, indexed_backend: Backend
) -> None:
    body = text_search(client)
    search_id, second = body["search_id"], body["results"][1]["id"]
    catalog = client.app.state.engine.catalog
    assert catalog.search_results(search_id) is None  # still queued, not written
    recorded = click(client, search_id, second, position=1)  # a lie about the position
    assert recorded.status_code == 202
    assert recorded.json() == {"status": "recorded", "position": 2}
    assert click(client, search_id, body["results"][0]["id"]).json()["position"] == 1
    client.app.state.tracker.log.flush()
    rows = indexed_backend.run(
        f"SELECT product_id, position FROM click_log WHERE search_id = '{search_id}' ORDER BY pk"
    )
    assert rows == [(second, 2), (body["results"][0]["id"], 1)]


def test_clicks_naming_no_logged_search_or_another_product_are_refused(
    client: TestClient, catalog_items: list[CatalogItem]
) -> None:
    body = text_search(client)
    shown = {hit["id"] for hit in body["results"]}
    not_shown = next(item.id for item in catalog_items if item.id not in shown)

    started = time.monotonic()
    stale = new_search_id(time.time() - 3600)  # well-formed, an hour old, never logged
    unknown = click(client, stale, body["results"][0]["id"])
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "NotFound"
    foreign = click(client, "f" * 32, body["results"][0]["id"])  # a time far in the future
    assert foreign.status_code == 404
    # Old and foreign ids are answered without the wait a recent id gets (a write window:
    # 2 flush intervals + 1 s, 3 s here): both calls together take less than one window,
    # however busy the machine.
    log = client.app.state.tracker.log
    assert time.monotonic() - started < 2 * log.flush_interval_s + 1.0

    other = click(client, body["search_id"], not_shown)
    assert other.status_code == 422 and other.json()["error"]["type"] == "InvalidInput"
    assert "not a result of search" in other.json()["error"]["message"]

    client.app.state.tracker.log.flush()
    assert client.app.state.engine.catalog.daily_search_totals(0)[0].clicks == 0


def test_a_click_on_another_replica_before_the_search_is_written_is_accepted(
    indexed_backend: Backend, tiny_model: Path
) -> None:
    with (
        replica(indexed_backend, tiny_model, "a", search_log_flush_s=1.0) as a,
        replica(indexed_backend, tiny_model, "b", search_log_flush_s=1.0) as b,
    ):
        body = text_search(a)
        assert b.app.state.engine.catalog.search_results(body["search_id"]) is None
        started = time.monotonic()
        accepted = click(b, body["search_id"], body["results"][2]["id"])
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["position"] == 3
        assert time.monotonic() - started < 2 * 1.0 + 1.0 + 0.5  # within the write window

        # A forged id that claims to be a second old is answered once that window is over.
        started = time.monotonic()
        forged = click(b, new_search_id(time.time() - 1), body["results"][0]["id"])
        assert forged.status_code == 404
        assert 1.0 <= time.monotonic() - started < 2 * 1.0 + 1.0 + 0.5


def test_old_logs_are_pruned_by_the_server_and_by_the_report_command(
    indexed_backend: Backend, tiny_model: Path
) -> None:
    catalog = indexed_backend.open()
    now = time.time()
    old = [
        SearchRecord(f"old{i}", now - 120 * DAY, "text", ("a",), (None,), 1, 1.0) for i in range(3)
    ]
    recent = SearchRecord("recent", now - 10 * DAY, "text", ("a",), (None,), 1, 1.0)
    clicks = [ClickRecord(s.search_id, "a", 1, s.ts + 1) for s in (*old, recent)]
    try:
        catalog.write_search_logs([*old, recent], clicks)
        # The server prunes at start (then every housekeeping interval).
        with replica(indexed_backend, tiny_model, "a") as client:
            assert client.get("/readyz").status_code == 200
            deadline = time.monotonic() + 10
            while catalog.search_results("old0") is not None and time.monotonic() < deadline:
                time.sleep(0.05)
        assert [catalog.search_results(f"old{i}") for i in range(3)] == [None] * 3
        assert catalog.search_results("recent") == ("a",)

        # `lookalike report --prune` with a shorter retention takes the recent one too.
        result = CliRunner().invoke(
            cli_app,
            ["report", "--prune", "--json", "--data-dir", str(indexed_backend.data_dir)],
            env={
                "LOOKALIKE_CATALOG_URL": indexed_backend.url,
                "LOOKALIKE_SEARCH_LOG_RETENTION_DAYS": "7",
            },
        )
        assert result.exit_code == 0, result.output
        assert "pruned 1 searches and 1 clicks older than 7 days" in result.output
        assert catalog.search_results("recent") is None
        assert json.loads(result.stdout)["days"] == []
    finally:
        catalog.close()


def test_retention_zero_keeps_everything(indexed_backend: Backend, tiny_model: Path) -> None:
    catalog = indexed_backend.open()
    try:
        ancient = SearchRecord("ancient", 1.0, "text", ("a",), (None,), 1, 1.0)
        catalog.write_search_logs([ancient], [])
        settings = api_settings(
            indexed_backend.data_dir,
            tiny_model,
            catalog_url=indexed_backend.url,
            search_log_retention_days=0,
        )
        with Engine(settings) as engine:
            done = engine.housekeeping()
        assert (done.pruned.searches, done.pruned.clicks) == (0, 0)
        assert catalog.search_results("ancient") == ("a",)
    finally:
        catalog.close()
