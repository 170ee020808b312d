"""`lookalike train-ranker`, `lookalike ranker ...` and `lookalike forget-session` as a
user runs them, on a real SQLite catalog holding a synthetic, position-biased log.

The synthetic shoppers want hits that agree with the page's category and cost less than
the page's median: nothing a hand weight can say (the hand weights know similarity,
popularity, rating, conversion and freshness only). The learned ranker must beat the
best grid-searched hand weights on the later held-out period, outside the bootstrap
interval, and is promoted; a rollback undoes that.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.cli import app
from lookalike.config import Settings
from lookalike.quality import SessionHasher
from tests.support.ranking_logs import COLUMN, ClickModel, as_records, simulate

pytest.importorskip("lightgbm", reason="needs lookalike[rank]")

SHOPPERS = ClickModel(
    likes=lambda rows: np.where(
        (rows[:, COLUMN["category_agreement"]] > 0.5) & (rows[:, COLUMN["price_vs_pool"]] < 0),
        0.7,
        0.03,
    ),
    examine=lambda position: 0.7 ** (position - 1),
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    catalog = SQLiteCatalog(data / "catalog.db")
    start = time.time() - 10 * 86_400
    searches = simulate(2500, SHOPPERS, seed=11, explore_share=0.15, start=start, step_s=300)
    records, clicks = as_records(searches)
    catalog.write_search_logs(records, clicks)
    catalog.close()
    return data


def run(*args: str):
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_train_evaluate_promote_and_roll_back(data_dir: Path, tmp_path: Path) -> None:
    out = run(
        "train-ranker", "-d", str(data_dir), "--quiet", "--json", "--output", str(tmp_path / "m")
    )
    report = json.loads(out)
    heldout = report["heldout"]
    names = list(heldout)
    assert names[:3] == [
        "similarity alone",
        "hand weights (settings)",
        "hand weights (grid-searched)",
    ]
    learned = heldout["learned (lambdarank)"]["ndcg@10"]
    grid = heldout["hand weights (grid-searched)"]["ndcg@10"]
    # The learned ranker wins by more than the bootstrap interval of the difference...
    low = report["learned_minus_grid"]["ndcg@10"][1]
    assert low > 0, report["learned_minus_grid"]
    # ...and its own interval clears the grid-searched weights' estimate.
    assert learned[1] > grid[0], (learned, grid)
    assert report["promoted"] and report["decision"].startswith("promoted")
    manifest = report["manifest"]
    bias = manifest["position_bias"]
    assert bias["propensities"]["method"] == "randomised" and bias["propensities"]["eta"] > 0
    # The clip of the inverse propensities was chosen on the validation searches.
    assert set(bias["validation_ndcg@10_by_clip"]) == {"0.05", "0.2", "0.5", "1.0"}
    assert bias["method"] == ("none" if bias["clip"] == 1.0 else "ipw")
    assert manifest["window"]["heldout_from"] > manifest["window"]["since"]
    assert manifest["searches"]["heldout"] > 400
    # The model directory and the catalog hold the same text model, never a pickle.
    text = (tmp_path / "m" / "model.txt").read_text()
    assert text.startswith("tree")
    catalog = SQLiteCatalog(data_dir / "catalog.db")
    try:
        assert catalog.promoted_ranker() == report["version"]
        assert catalog.ranker(report["version"]).model == text
    finally:
        catalog.close()

    listing = run("ranker", "list", "-d", str(data_dir))
    assert f"* {report['version']}" in listing

    # A second run compares with the model serving now, in the same table.
    again = run("train-ranker", "-d", str(data_dir), "--quiet", "--seed", "1")
    assert "| serving now |" in again and "similarity alone" in again

    rolled = run("ranker", "rollback", "-d", str(data_dir))
    assert "serves now" in rolled or "hand-weighted ranker serves" in rolled


def test_too_little_log_is_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train-ranker", "-d", str(tmp_path / "empty"), "--quiet"])
    assert result.exit_code == 2
    assert "searches with events in the window" in result.output


def test_forget_session_erases_one_shoppers_logs(data_dir: Path) -> None:
    catalog = SQLiteCatalog(data_dir / "catalog.db")
    settings = Settings(_env_file=None, data_dir=data_dir)
    hasher = SessionHasher.for_catalog(settings, catalog)
    # The synthetic log stores "session-N" as given; log one under the hashed form too.
    (record,), _ = as_records(simulate(1, SHOPPERS, seed=3, start=time.time()))
    from dataclasses import replace

    catalog.write_search_logs([replace(record, search_id="mine", session=hasher.hash("abc"))], [])
    before = len(catalog.logged_searches(0, time.time() + 10))
    catalog.close()
    out = run("forget-session", "abc", "-d", str(data_dir))
    assert "erased 1 logged search" in out
    catalog = SQLiteCatalog(data_dir / "catalog.db")
    try:
        left = catalog.logged_searches(0, time.time() + 10)
        assert len(left) == before - 1 and "mine" not in {s.search_id for s in left}
    finally:
        catalog.close()
