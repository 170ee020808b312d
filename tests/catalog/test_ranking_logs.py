"""What a learned ranker trains on and is served from, the same on every catalog backend:
searches with their hits and serving-time features, events joined to the hits by product,
erasing one session, and stored ranker models with their promotions and rollbacks."""

from __future__ import annotations

import pytest

from lookalike.catalog import Catalog, ClickRecord, LoggedEvent, LoggedHit, SearchRecord
from lookalike.errors import CatalogError, NotFound

T0 = 1_800_000_000.0
NAMES = ("similarity", "rating")


def logged(sid: str, ts: float, session: str | None = "s-1", n: int = 3, **kw) -> SearchRecord:
    ids = tuple(f"p{i}" for i in range(n))
    return SearchRecord(
        sid,
        ts,
        "image",
        ids,
        ("x",) * n,
        total_found=50,
        latency_ms=3.0,
        session=session,
        ranker="hand@abcd",
        model_id="m1",
        arm=kw.pop("arm", "control"),
        explored=kw.pop("explored", 0),
        feature_names=NAMES,
        similarities=tuple(0.9 - 0.1 * i for i in range(n)),
        features=tuple((0.9 - 0.1 * i, i / 10) for i in range(n)),
        **kw,
    )


def test_searches_come_back_with_hits_features_and_events(catalog: Catalog):
    catalog.write_search_logs(
        [logged("a", T0, explored=3), logged("b", T0 + 5, session=None, arm=None)],
        [
            ClickRecord("a", "p1", 2, T0 + 1),
            ClickRecord("a", "p1", 2, T0 + 2, kind="cart"),
            # The client claims position 1; the log says p2 was shown third.
            ClickRecord("a", "p2", 1, T0 + 3, kind="purchase"),
            ClickRecord("a", "nowhere", 1, T0 + 4),  # not a shown product
        ],
    )
    a, b = catalog.logged_searches(T0, T0 + 10)
    assert (a.search_id, b.search_id) == ("a", "b")
    assert (a.session, a.ranker, a.arm, a.explored, a.result_count) == (
        "s-1",
        "hand@abcd",
        "control",
        3,
        3,
    )
    assert (b.session, b.arm, b.explored) == (None, None, 0)
    assert a.feature_names == NAMES
    assert a.hits == (
        LoggedHit(1, "p0", pytest.approx(0.9), (pytest.approx(0.9), 0.0)),
        LoggedHit(2, "p1", pytest.approx(0.8), (pytest.approx(0.8), 0.1)),
        LoggedHit(3, "p2", pytest.approx(0.7), (pytest.approx(0.7), 0.2)),
    )
    assert a.events == (
        LoggedEvent("p1", 2, "click", T0 + 1),
        LoggedEvent("p1", 2, "cart", T0 + 2),
        LoggedEvent("p2", 3, "purchase", T0 + 3),
        LoggedEvent("nowhere", 0, "click", T0 + 4),
    )
    assert a.grades() == {2: 2, 3: 3}  # the strongest event per shown hit
    assert b.events == ()
    # The window is [since, until); hits can be left out.
    assert [s.search_id for s in catalog.logged_searches(T0 + 1, T0 + 10)] == ["b"]
    (light,) = catalog.logged_searches(T0, T0 + 1, with_hits=False)
    assert light.hits == () and len(light.events) == 4
    # Only the searches that got an event (what the quality gauges re-read).
    (evented,) = catalog.logged_searches(T0, T0 + 10, with_hits=False, with_events_only=True)
    assert evented.search_id == "a" and evented.events == a.events


def test_searches_logged_without_hits_still_read(catalog: Catalog):
    plain = SearchRecord("old", T0, "text", ("p0",), ("x",), total_found=1, latency_ms=1.0)
    catalog.write_search_logs([plain], [ClickRecord("old", "p0", 1, T0)])
    (found,) = catalog.logged_searches(T0, T0 + 1)
    assert found.hits == () and found.feature_names == () and found.ranker is None
    assert found.events == (LoggedEvent("p0", 0, "click", T0),)


def test_erasing_a_session_forgets_its_searches_hits_and_events(catalog: Catalog):
    catalog.write_search_logs(
        [logged("a", T0, session="gone"), logged("b", T0 + 1, session="kept")],
        [ClickRecord("a", "p0", 1, T0 + 2), ClickRecord("b", "p0", 1, T0 + 3)],
    )
    assert catalog.erase_session("gone") == 1
    assert catalog.erase_session("gone") == 0
    (left,) = catalog.logged_searches(0, T0 + 10)
    assert left.search_id == "b" and len(left.hits) == 3 and len(left.events) == 1
    (day,) = catalog.daily_search_totals(0)
    assert (day.searches, day.clicks) == (1, 1)


def test_ranker_models_promotions_and_rollbacks(catalog: Catalog):
    assert catalog.promoted_ranker() is None and catalog.rankers() == []
    with pytest.raises(NotFound):
        catalog.promote_ranker("v1")
    with pytest.raises(NotFound):
        catalog.rollback_ranker()
    catalog.save_ranker("v1", {"features": ["similarity"], "n": 1}, "tree text 1")
    catalog.save_ranker("v1", {"features": ["similarity"], "n": 1}, "tree text 1")  # idempotent
    with pytest.raises(CatalogError, match="other content"):
        catalog.save_ranker("v1", {}, "different")
    catalog.save_ranker("v2", {"n": 2}, "tree text 2")
    stored = catalog.ranker("v1")
    assert (stored.version, stored.manifest, stored.model) == (
        "v1",
        {"features": ["similarity"], "n": 1},
        "tree text 1",
    )
    assert [r.version for r in catalog.rankers()] == ["v2", "v1"]
    assert all(r.model == "" for r in catalog.rankers())
    with pytest.raises(NotFound):
        catalog.ranker("v3")

    catalog.promote_ranker("v1")
    catalog.promote_ranker("v2")
    assert catalog.promoted_ranker() == "v2"
    assert catalog.rollback_ranker() == "v1"
    assert catalog.promoted_ranker() == "v1"
    assert catalog.rollback_ranker() is None
    assert catalog.promoted_ranker() is None
    history = catalog.ranker_promotions()
    assert [(p.version, p.rolled_back_at is not None) for p in history] == [
        ("v1", True),
        ("v2", True),
    ]
