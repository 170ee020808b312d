"""End to end in headless Chromium (Debian's `chromium`, driven by Playwright): the page
against a real `lookalike serve`, as a person would use it."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import time
from pathlib import Path

import pytest

from tests.support.api_catalog import CatalogItem, LiveServer

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
if not Path(CHROMIUM).exists():
    pytest.skip(
        "Debian's chromium is not installed (scripts/setup.sh test installs it)",
        allow_module_level=True,
    )

CHROMIUM_ARGS = [
    "--no-sandbox",  # tests run as root in containers
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def problems() -> list[str]:
    """Script errors and failed loads seen by the page; must be empty when a test ends."""
    return []


@pytest.fixture
def page(browser, live_server: LiveServer, problems: list[str]):
    context = browser.new_context(viewport={"width": 1180, "height": 820})
    page = context.new_page()
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: (
            problems.append(f"console: {message.text}") if message.type == "error" else None
        ),
    )
    page.goto(live_server.url)
    yield page
    context.close()
    assert not problems, problems


expect = sync_api.expect
expect.set_options(timeout=30_000)  # a loaded CI machine can be slow; waits end early


def wait_for_click(catalog: Path, product_id: str, timeout_s: float = 30) -> int | None:
    """The position of a click on the product, once the server has logged one."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.closing(sqlite3.connect(catalog)) as conn:
            row = conn.execute(
                "SELECT position FROM click_log WHERE product_id = ?", (product_id,)
            ).fetchone()
        if row is not None:
            return row[0]
        time.sleep(0.1)
    return None


def result_ids(page) -> list[str]:
    return page.locator("[data-testid=result]").evaluate_all(
        "cards => cards.map(c => c.dataset.id)"
    )


def test_search_by_text_image_and_more_like_this(
    page, catalog_items: list[CatalogItem], tmp_path: Path, live_server: LiveServer
) -> None:
    # The filters are filled from the catalog's facets.
    expect(page.locator("#filter-category option")).to_have_count(5)

    # Typing a query and pressing Enter shows results.
    page.get_by_test_id("query-text").fill("red circle")
    page.get_by_test_id("query-text").press("Enter")
    expect(page.get_by_test_id("result")).to_have_count(len(catalog_items))
    expect(page.get_by_test_id("status")).to_contain_text(f"of {len(catalog_items)} matching")

    # Uploading an image (text cleared) finds that very product first.
    item = catalog_items[9]
    page.get_by_test_id("query-text").fill("")
    page.get_by_test_id("image-input").set_input_files(str(item.path))
    expect(page.locator("#query-preview")).to_be_visible()
    expect(page.get_by_test_id("result").first.get_by_test_id("result-title")).to_have_text(
        item.title
    )
    first = page.get_by_test_id("result").first
    expect(first.get_by_test_id("result-score")).to_have_attribute(
        "title", "cosine similarity 1.0000"
    )
    expect(first.get_by_test_id("result-price")).to_contain_text(f"{item.price:.2f}")
    # The thumbnail loads after the result card is drawn: wait for it (or time out, failing).
    page.wait_for_function(
        "img => img.complete && img.naturalWidth > 0",
        arg=first.locator("img").element_handle(),
        timeout=30_000,
    )

    shot = Path(os.environ.get("LOOKALIKE_SCREENSHOT") or tmp_path / "page.png")
    page.screenshot(path=str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG")

    # "More like this" on the first result: its neighbours, without itself.
    first.get_by_test_id("more-like-this").click()
    expect(page.get_by_test_id("similar-banner")).to_be_visible()
    expect(page.get_by_test_id("similar-title")).to_have_text(item.title)
    expect(page.get_by_test_id("result")).to_have_count(len(catalog_items) - 1)
    assert item.id not in result_ids(page)
    # The click was reported for the quality report (the server logs it within a second).
    assert wait_for_click(live_server.data_dir / "catalog.db", item.id) == 1

    # A filter narrows "more like this" too.
    page.get_by_test_id("filter-category").select_option("square")
    expect(page.get_by_test_id("result")).to_have_count(6 if item.category != "square" else 5)
    subs = page.locator("[data-testid=result] .sub").all_inner_texts()
    assert all(sub.startswith("square") for sub in subs), subs

    # Back to the image search.
    page.get_by_role("button", name="Back to search").click()
    expect(page.get_by_test_id("similar-banner")).to_be_hidden()


def test_image_and_text_together_show_the_weight(page, catalog_items) -> None:
    page.get_by_test_id("image-input").set_input_files(str(catalog_items[0].path))
    expect(page.get_by_test_id("result").first).to_be_visible()
    expect(page.locator("#weight-control")).to_be_hidden()
    page.get_by_test_id("query-text").fill("in blue")
    expect(page.locator("#weight-control")).to_be_visible()
    page.get_by_test_id("query-text").press("Enter")
    expect(page.get_by_test_id("status")).to_contain_text("matching items")


def test_dropping_an_image_searches_with_it(page, catalog_items) -> None:
    item = catalog_items[14]
    data = list(item.path.read_bytes())
    page.evaluate(
        """(bytes) => {
            const file = new File([new Uint8Array(bytes)], "dropped.png", {type: "image/png"});
            const transfer = new DataTransfer();
            transfer.items.add(file);
            document.getElementById("dropzone").dispatchEvent(
                new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""",
        data,
    )
    expect(page.get_by_test_id("result").first.get_by_test_id("result-title")).to_have_text(
        item.title
    )


def test_pasting_an_image_searches_with_it(page, catalog_items) -> None:
    item = catalog_items[20]
    page.evaluate(
        """(bytes) => {
            const file = new File([new Uint8Array(bytes)], "pasted.png", {type: "image/png"});
            const transfer = new DataTransfer();
            transfer.items.add(file);
            document.dispatchEvent(
                new ClipboardEvent("paste", {clipboardData: transfer, bubbles: true}));
        }""",
        list(item.path.read_bytes()),
    )
    expect(page.get_by_test_id("result").first.get_by_test_id("result-title")).to_have_text(
        item.title
    )


def test_price_filter_and_api_errors_are_shown(page, catalog_items, problems) -> None:
    page.get_by_test_id("price-min").fill("20")
    page.get_by_test_id("price-max").fill("40")
    page.get_by_test_id("query-text").fill("anything")
    page.get_by_test_id("query-text").press("Enter")
    in_range = [i for i in catalog_items if 20 <= i.price <= 40]
    expect(page.get_by_test_id("result")).to_have_count(len(in_range))

    page.get_by_test_id("price-min").fill("50")
    page.get_by_test_id("price-max").fill("10")
    page.get_by_test_id("search-button").click()
    expect(page.get_by_test_id("error")).to_be_visible()
    expect(page.get_by_test_id("error")).to_contain_text("price_min")
    expect(page.get_by_test_id("result")).to_have_count(0)
    # The browser logs the refused request itself; that one is expected.
    assert problems == [
        "console: Failed to load resource: the server responded with a status of 422 "
        "(Unprocessable Entity)"
    ]
    problems.clear()


def test_api_docs_render_offline(page, live_server: LiveServer) -> None:
    """Swagger UI draws the API from this server's own assets (no CDN reachable here)."""
    page.goto(f"{live_server.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Lookalike")
    expect(page.locator(".opblock-summary-path").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/v1/search/text")).to_have_count(1)


PAGE_LIMIT = 24  # app.js LIMIT


@pytest.fixture(scope="module")
def quality_server(
    tmp_path_factory: pytest.TempPathFactory,
    indexed_data: Path,
    tiny_model: Path,
    catalog_items: list[CatalogItem],
):
    """A server whose default floor is 0.9999 (the `min_score` setting), over a catalog
    with one near-duplicate pair: catalog_items[9] and a mirrored copy of it."""
    from PIL import Image, ImageOps

    from lookalike import Engine
    from lookalike.ingest.sources import ItemSpec
    from tests.support.api_catalog import api_settings, copy_data, png_bytes, start_server

    data_dir = copy_data(indexed_data, tmp_path_factory.mktemp("quality"))
    item = catalog_items[9]
    original = Image.open(item.path).convert("RGB")
    mirror = ImageOps.mirror(original)
    with Engine(api_settings(data_dir, tiny_model)) as engine:
        a, b = engine.encoder.encode_images([original, mirror])
    # The tiny random model is not mirror-invariant: the embedding check is set to what this
    # pair reaches (grey hashes alone would also pair same-shape items of other colours).
    settings = api_settings(data_dir, tiny_model, duplicate_hash_similarity=float(a @ b) - 1e-4)
    with Engine(settings) as engine:
        engine.upsert(ItemSpec(id="sku-mirror", image=None, title="Mirrored"), png_bytes(mirror))
        assert [p.id for p in engine.duplicates_of(item.id)] == ["sku-mirror"]
    os.environ["LOOKALIKE_MIN_SCORE"] = "0.9999"
    try:
        server = start_server(data_dir, tiny_model)
    finally:
        del os.environ["LOOKALIKE_MIN_SCORE"]
    try:
        yield server
    finally:
        from tests.support.api_catalog import stop_server

        stop_server(server.process)


@pytest.fixture
def quality_page(browser, quality_server: LiveServer, problems: list[str]):
    context = browser.new_context(viewport={"width": 1180, "height": 820})
    page = context.new_page()
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.goto(quality_server.url)
    yield page
    context.close()
    assert not problems, problems


def test_the_floor_says_no_close_matches_and_can_be_lifted(quality_page, catalog_items) -> None:
    page = quality_page
    page.get_by_test_id("query-text").fill("red circle")
    page.get_by_test_id("query-text").press("Enter")
    expect(page.get_by_test_id("status")).to_contain_text("No close matches")
    expect(page.get_by_test_id("status")).to_contain_text("24 weaker items are hidden")
    expect(page.get_by_test_id("result")).to_have_count(0)
    # Every hit, however weak, once the shopper asks for them.
    page.get_by_test_id("floor-toggle").uncheck()
    expect(page.get_by_test_id("result")).to_have_count(PAGE_LIMIT)  # 25 items, a page of 24
    expect(page.get_by_test_id("status")).not_to_contain_text("hidden")


def test_collapsed_duplicates_show_one_card_with_a_badge(quality_page, catalog_items) -> None:
    page = quality_page
    item = catalog_items[9]
    page.get_by_test_id("floor-toggle").uncheck()
    page.get_by_test_id("image-input").set_input_files(str(item.path))
    expect(page.get_by_test_id("result").first).to_have_attribute("data-id", item.id)
    expect(page.get_by_test_id("duplicates").filter(visible=True)).to_have_count(0)
    assert {item.id, "sku-mirror"} <= set(result_ids(page))
    page.get_by_test_id("collapse-toggle").check()
    # Other look-alike pairs of the tiny model may collapse too; this pair must.
    expect(page.get_by_test_id("duplicates").filter(visible=True).first).to_be_visible()
    ids = result_ids(page)
    assert (item.id in ids) != ("sku-mirror" in ids)
    card = page.locator(f"[data-testid=result][data-id='{item.id}']")
    if "sku-mirror" in ids:
        card = page.locator("[data-testid=result][data-id='sku-mirror']")
    expect(card.get_by_test_id("duplicates")).to_have_text("+1 near-duplicate")
    page.screenshot(path=str(quality_page_shot()))


def quality_page_shot() -> Path:
    return Path(os.environ.get("LOOKALIKE_QUALITY_SCREENSHOT") or "/tmp/lookalike-quality.png")
