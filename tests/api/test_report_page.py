"""The search-quality report page in headless Chromium against a real `lookalike serve`:
it asks for the API key, then plots CTR, MRR and NDCG@10 per A/B arm over the days and
lists the rows."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lookalike.catalog import ClickRecord, SearchRecord
from lookalike.catalog.sqlite import SQLiteCatalog
from tests.support.api_catalog import (
    TEST_API_KEY,
    LiveServer,
    copy_data,
    start_server,
    stop_server,
)

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
from tests.api.test_browser import CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (skips without it)

KEY = TEST_API_KEY  # the admin key start_server gives the server
DAY = 86_400.0


def seed_logs(data_dir: Path) -> None:
    """Two days of searches in two arms; the candidate's shoppers click higher up."""
    catalog = SQLiteCatalog(data_dir / "catalog.db")
    now = time.time()
    searches, clicks = [], []
    for day in (1, 0):
        for i in range(40):
            arm = "candidate" if i % 2 else "control"
            sid = f"{day}-{i}"
            ts = now - day * DAY - i * 0.001  # one day each, even near midnight
            ids = tuple(f"sku-{n:03d}" for n in range(5))
            searches.append(
                SearchRecord(
                    sid,
                    ts,
                    "text",
                    ids,
                    ("circle",) * 5,
                    total_found=24,
                    latency_ms=4.0,
                    session=f"s{i}",
                    ranker="learned@v1" if arm == "candidate" else "hand@1234",
                    arm=arm,
                    feature_names=("similarity",),
                    similarities=(0.9,) * 5,
                    features=((0.9,),) * 5,
                )
            )
            if i % 4 != 3:
                position = 1 if arm == "candidate" else 3
                clicks.append(ClickRecord(sid, ids[position - 1], position, ts + 1))
    catalog.write_search_logs(searches, clicks)
    catalog.close()


@pytest.fixture(scope="module")
def report_server(
    tmp_path_factory: pytest.TempPathFactory, indexed_data: Path, tiny_model: Path
) -> Iterator[LiveServer]:
    data_dir = copy_data(indexed_data, tmp_path_factory.mktemp("report"))
    seed_logs(data_dir)
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(os.environ, "LOOKALIKE_REPORT_PAGE", "true")
        server = start_server(data_dir, tiny_model)
    try:
        yield server
    finally:
        stop_server(server.process)


def test_the_report_page_plots_both_arms(report_server: LiveServer) -> None:
    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1180, "height": 820})
            page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
            page.on(
                "console",
                lambda m: problems.append(f"console: {m.text}") if m.type == "error" else None,
            )
            page.goto(f"{report_server.url}/report")
            expect = sync_api.expect
            expect(page.get_by_test_id("key-form")).to_be_visible(timeout=30_000)
            page.get_by_test_id("api-key").fill(KEY)
            page.get_by_test_id("api-key").press("Enter")
            expect(page.get_by_test_id("status")).to_contain_text("2 day(s)", timeout=30_000)
            for metric in ("ctr", "mrr", "ndcg"):
                lines = page.get_by_test_id(f"chart-{metric}").locator("path.arm-line")
                expect(lines).to_have_count(3)
                arms = lines.evaluate_all("paths => paths.map(p => p.dataset.arm)")
                assert sorted(arms) == ["all", "candidate", "control"]
            # Two days x three arms, then the window per arm.
            expect(page.locator("[data-testid=arm-row]")).to_have_count(9)
            candidate = page.locator("[data-testid=arm-row]", has_text="candidate").first
            expect(candidate).to_contain_text("learned@v1")
            page.screenshot(path=str(Path(report_server.data_dir) / "report.png"))
        finally:
            browser.close()
    # The first, key-less request is refused by design; nothing else may go wrong.
    assert problems == [
        "console: Failed to load resource: the server responded with a status of 401 (Unauthorized)"
    ], problems
