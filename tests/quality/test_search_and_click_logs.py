"""Search ids, click events and `lookalike report` on the real app and the real CLI, with
the logs in each catalog backend (SQLite and PostgreSQL alike)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lookalike.api import create_app
from lookalike.cli import app as cli_app
from lookalike.engine import Engine
from tests.support.api_catalog import CatalogItem, api_settings
from tests.support.catalog_backends import Backend

LIMIT = 4


@pytest.fixture
def logging_client(
    backend: Backend, tiny_model: Path, catalog_items: list[CatalogItem]
) -> Iterator[TestClient]:
    """The app over the 24 drawn products, indexed into `backend`'s catalog."""
    settings = api_settings(backend.data_dir, tiny_model, catalog_url=backend.url)
    with Engine(settings) as engine:
        report = engine.index_path(catalog_items[0].path.parent / "catalog.csv")
    assert report.added == len(catalog_items)
    with TestClient(create_app(settings)) as client:
        yield client


def report_command(backend: Backend, *args: str):
    """`lookalike report` as a user runs it, the catalog named by the environment."""
    return CliRunner().invoke(
        cli_app,
        ["report", "--data-dir", str(backend.data_dir), *args],
        env={"LOOKALIKE_CATALOG_URL": backend.url},
    )


def searches(client: TestClient, items: list[CatalogItem]) -> list[dict]:
    """One search of each kind; every response carries its own search id."""
    image = {"image": ("q.png", items[5].path.read_bytes(), "image/png")}
    responses = [
        client.get("/v1/search/text", params={"q": "red circle", "limit": LIMIT}),
        client.post("/v1/search/image", files=image, params={"limit": LIMIT}),
        client.post("/v1/search", json={"text": "blue", "images": [], "limit": LIMIT}),
        client.get(f"/v1/products/{items[2].id}/similar", params={"limit": LIMIT}),
    ]
    assert all(r.status_code == 200 for r in responses)
    return [r.json() for r in responses]


def test_clicks_turn_into_ctr_mrr_and_diversity(
    logging_client: TestClient, backend: Backend, catalog_items: list[CatalogItem]
) -> None:
    client = logging_client
    bodies = searches(client, catalog_items)
    ids = [body["search_id"] for body in bodies]
    assert len(set(ids)) == 4 and all(len(i) == 32 for i in ids)

    def click(body: dict, position: int) -> int:
        product = body["results"][position - 1]["id"]
        payload = {"search_id": body["search_id"], "product_id": product, "position": position}
        return client.post("/v1/events/click", json=payload).status_code

    # Search 1: first result clicked, then the third; search 2: second result; 3, 4: none.
    assert [click(bodies[0], 1), click(bodies[0], 3), click(bodies[1], 2)] == [202] * 3
    client.app.state.tracker.log.flush()

    result = report_command(backend, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    (today, overall) = report["days"]
    assert overall["day"] == "all" and today["searches"] == overall["searches"] == 4
    assert today["clicks"] == 3
    assert today["ctr"] == pytest.approx(2 / 4)
    assert today["mrr"] == pytest.approx((1 / 1 + 1 / 2) / 2)  # first clicks only
    shares = [
        len({hit["category"] for hit in body["results"]}) / len(body["results"]) for body in bodies
    ]
    assert today["diversity"] == pytest.approx(sum(shares) / len(shares))
    # Baselines for pages of 4: random order, and 4 random items of 4 equal categories.
    assert report["page_size"] == LIMIT
    assert report["baseline"]["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 3 + 1 / 4) / 4)
    assert report["baseline"]["diversity"] == pytest.approx(1 - (3 / 4) ** 4)

    table = report_command(backend)
    assert table.exit_code == 0 and "50.0%" in table.output and "baseline" in table.output


def test_logging_off_refuses_clicks_and_logs_nothing(
    backend: Backend, tiny_model: Path, catalog_items: list[CatalogItem]
) -> None:
    settings = api_settings(backend.data_dir, tiny_model, catalog_url=backend.url, search_log=False)
    with TestClient(create_app(settings)) as client:
        assert client.app.state.tracker.log is None
        found = client.get("/v1/search/text", params={"q": "red", "limit": LIMIT})
        assert found.status_code == 200
        payload = {"search_id": found.json()["search_id"], "product_id": "x", "position": 1}
        refused = client.post("/v1/events/click", json=payload)
        assert refused.status_code == 503 and "LOOKALIKE_SEARCH_LOG" in refused.text
    assert json.loads(report_command(backend, "--json").output)["days"] == []


@pytest.mark.parametrize(
    "payload",
    [
        {"search_id": "0" * 32, "product_id": "sku-001", "position": 0},
        {"search_id": "not-an-id", "product_id": "sku-001", "position": 1},
        {"search_id": "0" * 32, "product_id": "", "position": 1},
        {"search_id": "0" * 32, "product_id": "sku-001", "position": 1, "extra": True},
    ],
)
def test_bad_clicks_are_refused(client: TestClient, payload: dict) -> None:
    response = client.post("/v1/events/click", json=payload)
    assert response.status_code == 422
    assert response.json()["error"]["type"] == "ValidationError"


def test_report_without_logs_shows_only_the_baseline(backend: Backend) -> None:
    result = report_command(backend, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["days"] == [] and report["baseline"]["diversity"] is None
