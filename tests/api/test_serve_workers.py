"""`lookalike serve --workers 2`, the real entry point: both workers map one saved index
file (no private copy), a write through either is searchable through both, and
`GET /metrics` on any worker reports the figures of all of them, also after a worker is
killed and replaced."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from lookalike.index.persist import saved_meta, snapshot_path
from tests.support.api_catalog import (
    WRITE_HEADERS,
    CatalogItem,
    LiveServer,
    copy_data,
    draw_product,
    png_bytes,
    start_server,
    stop_server,
)
from tests.support.prometheus import Samples, parse_samples, value

pytestmark = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc")


def children(pid: int) -> list[int]:
    """Every descendant process of `pid` (from /proc)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [p for p, pp in parents.items() if pp == parent]
        found += kids
        frontier += kids
    return found


def worker_pids(server: LiveServer) -> list[int]:
    """The uvicorn workers: spawned children that run the app."""
    pids = []
    for pid in children(server.process.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        if b"spawn_main" in command:
            pids.append(pid)
    return sorted(pids)


def scrape(url: str) -> Samples:
    # A new connection each time: the kernel hands it to either worker.
    response = httpx.get(f"{url}/metrics", timeout=30)
    assert response.status_code == 200
    return parse_samples(response.text)


def until(check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


@pytest.fixture
def server(tmp_path: Path, indexed_data: Path, tiny_model: Path) -> Iterator[LiveServer]:
    data_dir = copy_data(indexed_data, tmp_path)
    live = start_server(data_dir, tiny_model, "--workers", "2")
    try:
        until(lambda: len(worker_pids(live)) == 2, "both workers run")
        yield live
    finally:
        stop_server(live.process)


@pytest.mark.slow
def test_workers_map_one_index_and_report_metrics_together(
    server: LiveServer, catalog_items: list[CatalogItem]
) -> None:
    url = server.url
    # Ready means one worker answered; wait for both to have opened the index.
    until(lambda: value(scrape(url), "lookalike_processes") == 2, "both workers report")
    index_dir = server.data_dir / "index"

    def every_worker_maps_the_saved_file() -> bool:
        # A worker may fold (save a new file) at any moment; the others remap it at their
        # next sync, so the check is that they all get there, not an instant's snapshot.
        saved = saved_meta(index_dir)
        assert saved is not None
        mapped_file = str(snapshot_path(index_dir, saved.snapshot))
        return all(
            mapped_file in Path(f"/proc/{pid}/maps").read_text() for pid in worker_pids(server)
        )

    until(every_worker_maps_the_saved_file, "every worker maps the saved index file")

    searches = 24
    for i in range(searches):
        query = {"q": f"{['red', 'blue', 'green'][i % 3]} circle"}  # repeats: cache hits
        assert httpx.get(f"{url}/v1/search/text", params=query, timeout=60).status_code == 200

    def merged() -> bool:
        samples = scrape(url)
        lookups = sum(
            value(samples, f"lookalike_cache_{kind}_total", cache="results")
            for kind in ("hits", "misses")
        )
        return lookups == searches  # published by each worker at its next sync

    until(merged, "both workers' cache counters are merged")
    for _ in range(6):  # whichever worker answers, the figures are the sum over both
        samples = scrape(url)
        assert value(samples, "lookalike_processes") == 2
        text_ok = value(samples, "lookalike_search_requests_total", type="text", status="200")
        assert text_ok == searches
        assert value(samples, "lookalike_search_seconds_count", type="text") == searches
        assert value(samples, "lookalike_index_vectors") == len(catalog_items)  # not 2x

    # A write through one worker lands in its delta; the other replays it from the log.
    image = png_bytes(draw_product("circle", (10, 200, 30), 77))
    put = httpx.put(
        f"{url}/v1/products/added-live",
        files={"image": ("n.png", image, "image/png")},
        data={"title": "Added live", "category": "circle"},
        headers=WRITE_HEADERS,
        timeout=60,
    )
    assert put.status_code == 201, put.text

    def both_see_it() -> bool:
        found = [
            httpx.post(
                f"{url}/v1/search/image",
                files={"image": ("q.png", image, "image/png")},
                params={"limit": 1},
                timeout=60,
            ).json()["results"][0]["id"]
            for _ in range(8)
        ]
        return found == ["added-live"] * 8

    until(both_see_it, "every worker finds the new product")
    until(
        lambda: value(scrape(url), "lookalike_index_vectors") == len(catalog_items) + 1,
        "the index size counts the new product",
    )

    # A worker killed outright is replaced; its counts stay, its live gauges go.
    victim = worker_pids(server)[0]
    os.kill(victim, signal.SIGKILL)
    until(
        lambda: len(worker_pids(server)) == 2 and victim not in worker_pids(server),
        "uvicorn replaces the killed worker",
        timeout=120,
    )
    until(lambda: value(scrape(url), "lookalike_processes") == 2, "the new worker reports")
    samples = scrape(url)
    text_ok = value(samples, "lookalike_search_requests_total", type="text", status="200")
    assert text_ok == searches
