"""CI smoke of the load-test scenarios (`benchmarks/load/`): every scenario, run together
by locust for a few seconds against a real `lookalike serve` on the tests' tiny catalog,
answers without a single error (figures are the benchmark's job, not this test's)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path

import pytest
from benchmarks.load.run import SCENARIOS, Server, catalog_file, read_stats, run_locust

from tests.support.api_catalog import (
    TEST_API_KEY,
    LiveServer,
    copy_data,
    start_server,
    stop_server,
)

SMOKE_SECONDS = 15

# Found, not imported: importing locust monkey-patches the whole process (gevent); it runs
# in its own process.
pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("locust") is None, reason="the load tests' client: lookalike[bench]"
)


@pytest.fixture
def server(tmp_path: Path, indexed_data: Path, tiny_model: Path) -> Iterator[LiveServer]:
    live = start_server(copy_data(indexed_data, tmp_path), tiny_model)
    try:
        yield live
    finally:
        stop_server(live.process)


@pytest.mark.slow
def test_every_scenario_runs_without_errors(server: LiveServer, tmp_path: Path) -> None:
    target = Server(
        url=server.url,
        process=server.process,
        log=tmp_path / "unused.log",
        write_key=TEST_API_KEY,
        catalog_file=catalog_file(server.data_dir, tmp_path),
        label="smoke",
    )
    # One user per scenario (locust spreads users over the classes by weight, all equal).
    code, prefix = run_locust(target, list(SCENARIOS), len(SCENARIOS), SMOKE_SECONDS, work=tmp_path)
    rows, errors = read_stats(prefix)
    assert not errors, f"requests failed: {errors}"
    assert code == 0, (tmp_path / "locust.log").read_text()[-2000:]
    names = {"text", "image", "similar", "filtered", "hybrid", "write"}
    ran = {name for name, row in rows.items() if row["requests"] > 0}
    assert names <= ran, f"scenarios that sent nothing: {sorted(names - ran)}"
    assert rows["Aggregated"]["failures"] == 0
