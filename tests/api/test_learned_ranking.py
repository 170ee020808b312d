"""Learned ranking through the real app: what each search logs (hashed session, ranker,
serving-time features), the learned ranker from the catalog and its fallback (never a
500), per-request rankers, A/B arms, purchase events, erasing a session, and the quality
report's data, gauges and gate."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.api.routes.admin import refresh_quality_gauges
from lookalike.catalog import open_catalog
from lookalike.search.ranking import FEATURES
from tests.api.test_metrics import scrape, value
from tests.support.api_catalog import api_settings, copy_data
from tests.support.ranking_logs import small_model

pytest.importorskip("lightgbm", reason="needs lookalike[rank]")


@pytest.fixture
def make_client(tmp_path: Path, indexed_data: Path, tiny_model: Path):
    data_dir = copy_data(indexed_data, tmp_path)
    opened: list[contextlib.AbstractContextManager] = []

    def make(**overrides) -> TestClient:
        values = {"ranker_reload_interval_s": 0.01, **overrides}
        client = TestClient(
            create_app(api_settings(data_dir, tiny_model, **values)), client=("127.0.0.1", 50000)
        )
        opened.append(client)
        return client.__enter__()

    make.data_dir = data_dir  # type: ignore[attr-defined]
    yield make
    for client in reversed(opened):
        client.__exit__(None, None, None)


def rows(data_dir: Path, sql: str, params=()) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(data_dir / "catalog.db")) as conn:
        return conn.execute(sql, params).fetchall()


def flush(client: TestClient) -> None:
    client.app.state.tracker.log.flush()


def test_a_search_logs_its_hashed_session_ranker_and_features(make_client) -> None:
    client = make_client()
    found = client.get(
        "/v1/search/text", params={"q": "red circle", "limit": 5}, headers={"X-Session-Id": "s-42"}
    )
    assert found.status_code == 200
    body = found.json()
    assert body["ranker"].startswith("hand@") and body["ranker_fallback"] is None
    assert body["arm"] is None
    flush(client)
    ((session, ranker, model_id, names),) = rows(
        make_client.data_dir, "SELECT session_hash, ranker, model_id, feature_names FROM search_log"
    )
    assert session == client.app.state.tracker.sessions.hash("s-42") and "s-42" not in session
    assert ranker == body["ranker"] and model_id
    assert tuple(json.loads(names)) == FEATURES
    hits = rows(
        make_client.data_dir, "SELECT position, product_id, similarity FROM search_log_hits"
    )
    assert [(p, pid) for p, pid, _ in sorted(hits)] == [
        (i + 1, hit["id"]) for i, hit in enumerate(body["results"])
    ]
    assert [round(s, 5) for _, _, s in sorted(hits)] == [
        round(hit["similarity"], 5) for hit in body["results"]
    ]

    # A purchase is a stronger label; it joins the hit by product.
    event = {
        "search_id": body["search_id"],
        "product_id": body["results"][2]["id"],
        "position": 3,
        "kind": "purchase",
    }
    assert client.post("/v1/events/click", json=event).status_code == 202
    flush(client)
    assert rows(make_client.data_dir, "SELECT kind, position FROM click_log") == [("purchase", 3)]
    bad = {**event, "kind": "stare"}
    assert client.post("/v1/events/click", json=bad).status_code == 422


def test_the_promoted_model_serves_and_a_corrupt_one_falls_back(make_client) -> None:
    data_dir = make_client.data_dir
    catalog = open_catalog(api_settings(data_dir, Path(".")))
    manifest, text = small_model("v1")
    catalog.save_ranker("v1", manifest, text)
    catalog.promote_ranker("v1")
    client = make_client(ranker="learned", result_cache_ttl_s=0)
    query = {"text": "blue square", "limit": 5}
    served = client.post("/v1/search", json=query).json()
    assert served["ranker"] == "learned@v1" and served["ranker_fallback"] is None

    # Promote a model whose text does not match its checksum: answers go on, ordered by
    # the hand weights, and say why; the fallback is counted.
    catalog.save_ranker("bad", {**manifest, "version": "bad"}, text + "\n")
    catalog.promote_ranker("bad")
    catalog.close()
    for _ in range(50):  # the server notices within its reload interval
        fell = client.post("/v1/search", json=query)
        if fell.json()["ranker_fallback"]:
            break
    assert fell.status_code == 200
    assert fell.json()["ranker"].startswith("hand@")
    assert "checksum" in fell.json()["ranker_fallback"]
    assert value(scrape(client), "lookalike_ranker_fallbacks_total", ranker="learned") >= 1

    # A request may pick a registered ranker, not a path or an unknown name.
    assert (
        client.post("/v1/search", json={**query, "ranker": "similarity"})
        .json()["ranker"]
        .startswith("similarity@")
    )
    for name in ("nope", str(data_dir)):
        refused = client.post("/v1/search", json={**query, "ranker": name})
        assert refused.status_code == 422 and "unknown ranker" in refused.text


def test_sessions_split_into_stable_arms(make_client) -> None:
    client = make_client(ranker_candidate="similarity", ranker_candidate_share=0.5)
    arms = {}
    for i in range(16):
        session = f"shopper-{i}"
        body = {"text": "green", "limit": 3, "session": session}
        first = client.post("/v1/search", json=body).json()
        again = client.get(
            "/v1/search/text", params={"q": "red", "limit": 3}, headers={"X-Session-Id": session}
        ).json()
        assert first["arm"] == again["arm"]
        arms[session] = first["arm"]
        expected = "similarity@" if first["arm"] == "candidate" else "hand@"
        assert first["ranker"].startswith(expected)
    assert set(arms.values()) == {"control", "candidate"}
    # Without a session a search stays outside the experiment.
    assert client.get("/v1/search/text", params={"q": "red"}).json()["arm"] is None


def test_erasing_a_session_and_the_report(make_client) -> None:
    client = make_client(report_page=True, api_key="k3y")
    for session in ("alice", "alice", "bob"):
        found = client.get(
            "/v1/search/text", params={"q": "circle", "limit": 4}, headers={"X-Session-Id": session}
        ).json()
        click = {"search_id": found["search_id"], "product_id": found["results"][0]["id"]}
        client.post("/v1/events/click", json={**click, "position": 1})
    flush(client)

    report = client.get("/v1/admin/report", headers={"X-API-Key": "k3y"})
    assert report.status_code == 200
    (today, overall) = [row for row in report.json()["arms"] if row["arm"] == "all"]
    assert today["searches"] == 3 and overall["day"] == "all"
    assert today["ctr"]["mean"] == 1.0 and today["mrr"]["mean"] == 1.0
    assert client.get("/v1/admin/report").status_code == 401
    refresh_quality_gauges(client.app.state.engine)
    assert value(scrape(client), "lookalike_quality_ctr", arm="all") == 1.0
    assert value(scrape(client), "lookalike_quality_searches", arm="all") == 3

    assert client.delete("/v1/admin/sessions/alice").status_code == 401
    erased = client.delete("/v1/admin/sessions/alice", headers={"X-API-Key": "k3y"})
    assert erased.json() == {"erased_searches": 2}
    assert len(rows(make_client.data_dir, "SELECT search_id FROM search_log")) == 1
    assert len(rows(make_client.data_dir, "SELECT search_id FROM click_log")) == 1


def test_the_report_is_off_unless_enabled(make_client) -> None:
    client = make_client()
    assert client.get("/v1/admin/report").status_code == 404
    assert client.get("/report").status_code == 404
