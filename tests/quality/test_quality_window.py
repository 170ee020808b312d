"""The server's quality gauges, read incrementally (`QualityWindow`), give the figures of
the whole-window report (`ranking_quality`'s "all" rows), refresh after refresh, as new
searches and late events arrive; searches older than the window drop out."""

from __future__ import annotations

import math
import random
from pathlib import Path

from lookalike.catalog import ClickRecord, SearchRecord
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.quality.ranking_quality import ranking_quality
from lookalike.quality.window import QualityWindow

NOW = 1_800_000_000.0
DAY = 86_400.0


def _search(sid: str, ts: float, arm: str | None, ranker: str, n: int = 5) -> SearchRecord:
    return SearchRecord(
        sid,
        ts,
        "text",
        tuple(f"p{i}" for i in range(n)),
        ("x",) * n,
        total_found=50,
        latency_ms=3.0,
        session="s",
        ranker=ranker,
        model_id="m1",
        arm=arm,
        feature_names=("similarity",),
        similarities=(0.5,) * n,
        features=((0.5,),) * n,
    )


def _traffic(rng: random.Random, start: float, end: float, count: int, tag: str):
    searches, clicks = [], []
    for i in range(count):
        ts = rng.uniform(start, end)
        arm = rng.choice([None, "control", "candidate"])
        ranker = rng.choice(["hand@1", "hand@1", "lgbm@2"])
        searches.append(_search(f"{tag}{i}", ts, arm, ranker))
        if rng.random() < 0.3:
            for _ in range(rng.randint(1, 2)):
                shown = rng.randint(0, 5)  # 5: not a shown product (no position)
                kind = rng.choice(["click", "cart", "purchase"])
                pid = f"p{shown}"
                clicks.append(ClickRecord(f"{tag}{i}", pid, shown + 1, ts + 1, kind=kind))
    return searches, clicks


def _expected(catalog: SQLiteCatalog, since: float, until: float):
    return [row for row in ranking_quality(catalog, since, until) if row.day == "all"]


def _same(got, want) -> bool:
    """Equal rows, intervals to float rounding (they are computed another way)."""

    def flat(rows):
        out = []
        for row in rows:
            for name, value in sorted(row.to_dict().items()):
                if isinstance(value, dict):
                    out += [(f"{name}.{k}", v) for k, v in sorted(value.items())]
                else:
                    out.append((name, value))
        return out

    pairs = list(zip(flat(got), flat(want), strict=True))
    assert len(got) == len(want)
    return all(
        a[0] == b[0]
        and (math.isclose(a[1], b[1], rel_tol=1e-12) if isinstance(a[1], float) else a[1] == b[1])
        for a, b in pairs
    )


def test_incremental_refreshes_match_the_whole_window_report(tmp_path: Path):
    rng = random.Random(7)
    catalog = SQLiteCatalog(tmp_path / "catalog.db")
    window = QualityWindow(catalog, settle_s=30.0)
    # Two days of searches; the window holds the last one, whole hours at its old edge.
    start = (NOW // 3600) * 3600 - 2 * DAY
    catalog.write_search_logs(*_traffic(rng, start, NOW - 60, 600, "a"))
    first = window.refresh(NOW)
    edge = (NOW - DAY) // 3600 * 3600  # the oldest whole hour the window keeps
    assert _same(first, _expected(catalog, edge, NOW - 30))
    assert {row.arm for row in first} == {"all", "control", "candidate"}
    assert first[0].ctr is not None and 0 < first[0].ctr.mean < 1

    # Ten minutes on: new searches, and late events on searches counted before.
    later = NOW + 600
    searches, clicks = _traffic(rng, NOW - 30, later - 60, 80, "b")
    old = [s.search_id for s in _traffic(random.Random(7), start, NOW - 60, 600, "a")[0]]
    late = [ClickRecord(sid, "p0", 1, later - 100) for sid in old[-40:]]
    catalog.write_search_logs(searches, clicks + late)
    second = window.refresh(later)
    edge = (later - DAY) // 3600 * 3600
    assert _same(second, _expected(catalog, edge, later - 30))
    assert second[0].searches != first[0].searches
    assert second[0].ctr.mean > first[0].ctr.mean  # the late events count


def test_a_fresh_window_reads_what_is_logged_up_to_now(tmp_path: Path):
    catalog = SQLiteCatalog(tmp_path / "catalog.db")
    catalog.write_search_logs(
        [_search("x", NOW - 1, None, "hand@1"), _search("y", NOW - 2 * DAY, None, "hand@1")],
        [ClickRecord("x", "p1", 2, NOW - 0.5)],
    )
    (row,) = QualityWindow(catalog, settle_s=0.0).refresh(NOW)
    assert (row.arm, row.searches, row.rankers) == ("all", 1, "hand@1")
    assert row.ctr.mean == 1.0 and row.mrr.mean == 0.5
