"""Freshness in a serving process: a change committed by another process (a consumer, a
batch ingest) is timed from its catalog commit until this server's index has applied it
(`lookalike_commit_searchable_seconds`), and `info` says how far the index is behind."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.engine import Engine
from lookalike.ingest.sources import ItemSpec
from tests.api.test_metrics import scrape, value
from tests.support.api_catalog import api_settings, copy_data, draw_product, png_bytes


def test_a_change_committed_elsewhere_is_timed_until_it_is_searchable(
    tmp_path: Path, indexed_data: Path, tiny_model: Path
) -> None:
    data_dir = copy_data(indexed_data, tmp_path)
    settings = api_settings(data_dir, tiny_model, index_sync_interval_s=0.2)
    image = png_bytes(draw_product("square", (20, 200, 90), 41))
    # /metrics answers loopback clients without a key (TestClient is "testclient" otherwise).
    loopback = ("127.0.0.1", 50000)
    with TestClient(create_app(settings), client=loopback) as client, Engine(settings) as writer:
        before = scrape(client)
        # Opening the index caught nothing up: nothing timed yet.
        assert value(before, "lookalike_commit_searchable_seconds_count") == 0
        committed = time.time()
        writer.upsert(ItemSpec("fresh", None, "Fresh square"), image)
        deadline = time.monotonic() + 30
        while True:
            hits = client.post("/v1/search/image", files={"image": ("q.png", image, "image/png")})
            if hits.json()["results"][0]["id"] == "fresh":
                break
            assert time.monotonic() < deadline, "the change never became searchable"
            time.sleep(0.05)
        seen = time.time()
        after = scrape(client)
        assert value(after, "lookalike_commit_searchable_seconds_count") == 1
        waited = value(after, "lookalike_commit_searchable_seconds_sum")
        # Between 0 and the time from just before the commit to the search that found it.
        assert 0 <= waited <= seen - committed
        assert value(after, "lookalike_commit_searchable_seconds_bucket", le="5.0") == 1


def test_info_says_how_far_the_index_is_behind(
    tmp_path: Path, indexed_data: Path, tiny_model: Path
) -> None:
    data_dir = copy_data(indexed_data, tmp_path)
    settings = api_settings(data_dir, tiny_model)
    with Engine(settings) as engine:
        assert engine.info()["freshness"]["index_behind_s"] == 0.0
        last = engine.info()["freshness"]["last_commit"]
        assert last is not None
        # A commit the saved index has not applied: behind since that commit.
        engine.catalog.delete(["sku-000"])
        time.sleep(0.3)
    with Engine(settings) as reader:  # info does not open (and catch up) the index
        behind = reader.info()["freshness"]["index_behind_s"]
    assert 0.3 <= behind < 60
