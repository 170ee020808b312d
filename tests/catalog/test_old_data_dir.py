"""A data dir written by the code before the architecture rework (commit 0818a52: positional
migrations, search logs beside the catalog) opens with today's code: its catalog is
migrated in place, searches answer as they did then, and `lookalike report` reads its logs.

The fixture was made by tests/support/make_old_data_dir.py, run at that commit.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from lookalike.api import create_app
from lookalike.catalog.sql.migrations import MIGRATIONS
from lookalike.cli import app as cli_app
from lookalike.encode import create_encoder
from tests.support.api_catalog import api_settings

FIXTURE = Path(__file__).parents[1] / "fixtures" / "old_data_dir_0818a52"
DAY_S = 86_400


def rows(path: Path, sql: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql).fetchall()


@pytest.fixture
def old_data_dir(tmp_path: Path) -> Path:
    data_dir = tmp_path / "data"
    shutil.copytree(FIXTURE / "data", data_dir)
    return data_dir


def report(data_dir: Path, days: int) -> dict:
    result = CliRunner().invoke(
        cli_app, ["report", "--data-dir", str(data_dir), "--days", str(days), "--json"]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_an_old_data_dir_opens_searches_and_reports(old_data_dir: Path, tiny_model: Path):
    expected = json.loads((FIXTURE / "expected.json").read_text())
    catalog_db = old_data_dir / "catalog.db"
    # The fixture is what the old code wrote: positional schema rows, logs in the catalog file.
    assert [v for (v,) in rows(catalog_db, "SELECT version FROM schema_version")] == [1, 2, 3]
    catalog_id = rows(catalog_db, "SELECT value FROM meta WHERE key = 'catalog_id'")
    settings = api_settings(old_data_dir, tiny_model)
    # The tiny model is rebuilt here, not kept: it must be the same one (same weights, same
    # id), or the stored embeddings would belong to another model.
    assert create_encoder(settings).model_id == expected["model_id"]

    # `lookalike report` first: it opens (and migrates) the catalog, and reads the old logs.
    days = int((time.time() - expected["written_at"]) // DAY_S) + 2
    before = report(old_data_dir, days)
    # Searches logged before their hits were (migration 0007) have no A/B arm rows.
    assert before.pop("arms") == []
    assert before == expected["report"]
    assert rows(catalog_db, "SELECT version, name FROM schema_version ORDER BY version") == [
        (m.number, m.name) for m in MIGRATIONS
    ]
    assert rows(catalog_db, "SELECT value FROM meta WHERE key = 'catalog_id'") == catalog_id

    with TestClient(create_app(settings)) as client:
        stats = client.app.state.engine.catalog.stats()
        assert (stats.products, stats.searchable) == (expected["products"],) * 2
        assert stats.models == {expected["model_id"]: expected["products"]}
        for search in expected["searches"]:
            options = dict(search["query"])
            if "image" in options:
                image = (FIXTURE / "images" / options.pop("image")).read_bytes()
                options = {
                    "files": {"image": ("q.png", image, "image/png")},
                    "params": {"limit": 5},
                }
            response = client.request(search["method"], search["path"], **options)
            assert response.status_code == 200, response.text
            hits = response.json()["results"]
            assert [hit["id"] for hit in hits] == search["ids"], search["kind"]
            scores = [hit["score"] for hit in hits]
            # The hand ranker's freshness bonus decays with the products' age (the same for
            # all: they were written together), so the gaps between scores are what stays
            # put; each score moves by less than the freshness weight.
            assert np.diff(scores) == pytest.approx(np.diff(search["scores"]), abs=1e-4)
            weight = settings.rerank_freshness
            assert scores == pytest.approx(search["scores"], abs=weight + 1e-4)
        client.app.state.tracker.log.flush()

    # The new searches are logged beside the old ones.
    (*_days, overall) = report(old_data_dir, days)["days"]
    old = expected["report"]["days"][-1]
    assert overall["day"] == "all" and overall["searches"] == old["searches"] + 4
    assert overall["clicks"] == old["clicks"] == 2
