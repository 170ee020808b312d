"""Batch indexing on a local Ray: same results as the local ingest; resumes after a kill.

One local Ray for the module (starting Ray takes seconds); each test's runs connect to it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import lookalike
from lookalike import Engine, Settings
from lookalike.cli import app
from tests.support.image_catalogs import BAD_ITEMS, png_bytes, write_catalog

pytest.importorskip("ray.data", reason="Ray tests need the ray extra: pip install 'lookalike[ray]'")
pytest.importorskip("pyarrow", reason="shards need pyarrow (the ray extra)")

import ray

from lookalike.ingest.ray_pipeline import build_dataset

GOOD = 18
SHARD_SIZE = 5
BATCH = 8
MANIFEST_ROWS = GOOD + len(BAD_ITEMS) + 1  # and one line that is not JSON


@pytest.fixture(scope="module")
def ray_address():
    """A local Ray for this module; its address lets a separate driver process join it."""
    context = ray.init(
        address="local", num_cpus=4, include_dashboard=False, logging_level="WARNING"
    )
    yield context.address_info["address"]
    ray.shutdown()


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    return write_catalog(tmp_path_factory.mktemp("catalog"), good=GOOD)


def settings_for(data_dir: Path, model_dir: Path, actors: int = 1) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=data_dir,
        model_checkpoint=str(model_dir),
        torch_threads=1,
        ray_shard_size=SHARD_SIZE,
        ray_read_concurrency=1,
        ray_encoder_actors=actors,
        encode_batch_size=BATCH,
    )


def failures(report) -> dict[str, str]:
    return {bad.id: bad.reason for bad in report.failed}


def vector_ids(engine: Engine) -> dict[str, int]:
    return {p.id: p.vector_id for p in engine.catalog.iter_products() if p.vector_id is not None}


@pytest.mark.slow
def test_ray_index_matches_local_ingest(
    tmp_path, monkeypatch, ray_address, tiny_model_dir, manifest
):
    with Engine(settings_for(tmp_path / "local", tiny_model_dir)) as local:
        local_report = local.index_path(manifest)
        with Engine(settings_for(tmp_path / "ray", tiny_model_dir, actors=2)) as distributed:
            report = distributed.index_path_ray(manifest)

            assert (report.added, report.unchanged, report.seen) == (GOOD, 0, MANIFEST_ROWS)
            assert report.shards == -(-MANIFEST_ROWS // SHARD_SIZE)
            assert 0 < report.encoder_busy <= 1
            assert failures(report) == failures(local_report)
            for item_id, reason in BAD_ITEMS.items():
                assert reason in failures(report)[item_id]
            assert any("invalid JSON" in reason for reason in failures(report).values())
            saved = sorted((distributed.settings.data_dir / "reports").glob("ingest-ray-*.json"))
            assert json.loads(saved[-1].read_text())["failed_count"] == len(BAD_ITEMS) + 1

            stats = distributed.catalog.stats()
            assert (stats.products, stats.searchable) == (GOOD, GOOD)
            assert len(distributed.live_index.index) == GOOD
            for query in (png_bytes(3), png_bytes(11), png_bytes(5000)):
                ours = distributed.search_image(query, limit=10).hits
                theirs = local.search_image(query, limit=10).hits
                assert [h.product.id for h in ours] == [h.product.id for h in theirs]
                np.testing.assert_allclose(
                    [h.similarity for h in ours], [h.similarity for h in theirs], atol=1e-5
                )
            ours = distributed.search_text("a red shoe", limit=5).hits
            theirs = local.search_text("a red shoe", limit=5).hits
            assert [h.product.id for h in ours] == [h.product.id for h in theirs]

            before = vector_ids(distributed)

    # A second run, from the command line, re-hashes every image and skips what is unchanged.
    for name, value in {
        "MODEL_CHECKPOINT": tiny_model_dir,
        "TORCH_THREADS": 1,
        "RAY_SHARD_SIZE": SHARD_SIZE,
        "RAY_READ_CONCURRENCY": 1,
        "ENCODE_BATCH_SIZE": BATCH,
    }.items():
        monkeypatch.setenv(f"LOOKALIKE_{name}", str(value))
    data_dir = str(tmp_path / "ray")
    result = CliRunner().invoke(app, ["index", str(manifest), "--engine", "ray", "-d", data_dir])
    assert result.exit_code == 0, result.output
    assert f"0 added, 0 re-encoded, 0 metadata updated, {GOOD} unchanged" in result.output
    with Engine(settings_for(tmp_path / "ray", tiny_model_dir)) as distributed:
        assert vector_ids(distributed) == before


@pytest.mark.slow
def test_ray_load_reaches_a_shared_milvus_index(tmp_path, ray_address, tiny_model_dir, manifest):
    # The load goes through the catalog and the LiveIndex like every write: with Milvus
    # (shared, written by the writer) as with FAISS (which catches up from the log).
    pytest.importorskip("milvus_lite", reason="needs lookalike[milvus]")
    milvus = settings_for(tmp_path / "milvus", tiny_model_dir).model_copy(
        update={"index_url": str(tmp_path / "vectors.db"), "milvus_index_type": "FLAT"}
    )
    with (
        Engine(settings_for(tmp_path / "faiss", tiny_model_dir)) as local,
        Engine(milvus) as distributed,
    ):
        local.index_path(manifest)
        assert distributed.index_path_ray(manifest).added == GOOD
        assert distributed.live_index.index.kind == "milvus"
        for query in (png_bytes(3), png_bytes(5000)):
            ours = distributed.search_image(query, limit=10).hits
            theirs = local.search_image(query, limit=10).hits
            assert [h.product.id for h in ours] == [h.product.id for h in theirs]


def test_readers_are_not_fused_into_the_encoder_actors(ray_address, tiny_model_dir, capsys):
    # One reader and one single-threaded encoder actor: what Ray Data would otherwise fuse
    # into one actor that decodes and encodes in turn.
    settings = settings_for(Path("unused"), tiny_model_dir, actors=1)
    row = {"shard": 0, "pos": 0, "item": "", "existing": ""}
    build_dataset(ray, settings, [row], 1).explain()
    optimized = capsys.readouterr().out.split("Physical Plan (Optimized)")[1]
    assert "TaskPoolMapOperator[MapBatches(prepare_batch)]" in optimized
    assert "ActorPoolMapOperator[MapBatches(EncodeWorker)]" in optimized


KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    from lookalike import Engine, Settings

    data_dir, model_dir, manifest, address, shard_size = sys.argv[1:6]
    settings = Settings(
        _env_file=None, data_dir=data_dir, model_checkpoint=model_dir, torch_threads=1,
        ray_shard_size=int(shard_size), ray_read_concurrency=1, encode_batch_size=8,
        ray_address=address,
    )

    def die(shard):  # a hard kill right after the first shard is in the catalog
        os.kill(os.getpid(), signal.SIGKILL)

    with Engine(settings) as engine:
        engine.index_path_ray(manifest, on_shard_loaded=die)
    """
)


@pytest.mark.slow
def test_killed_run_resumes_without_duplicates(tmp_path, ray_address, tiny_model_dir, manifest):
    data_dir = tmp_path / "data"
    src = str(Path(lookalike.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    args = [str(data_dir), str(tiny_model_dir), str(manifest), ray_address, str(SHARD_SIZE)]
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    assert len(list((data_dir / "batch").glob("shard-*.loaded"))) == 1

    with Engine(settings_for(data_dir, tiny_model_dir)) as engine:
        first_shard = vector_ids(engine)
        assert 0 < len(first_shard) <= SHARD_SIZE
        report = engine.index_path_ray(manifest)

        assert report.resumed_shards == 1
        assert (report.added, report.seen, len(report.failed)) == (
            GOOD,
            MANIFEST_ROWS,
            len(BAD_ITEMS) + 1,
        )
        after = vector_ids(engine)
        assert len(after) == GOOD
        # The first shard's embeddings were kept, not encoded and stored again ...
        assert {k: after[k] for k in first_shard} == first_shard
        # ... and the log holds one embedding per product: nothing was added twice.
        assert engine.catalog.log_head() == GOOD
        assert len(engine.live_index.index) == GOOD
        hits = engine.search_image(png_bytes(3), limit=3).hits
        assert hits[0].product.id == "item-003"
        assert not list((data_dir / "batch").glob("shard-*"))  # a finished run drops its shards


@pytest.mark.slow
def test_ray_workers_keep_the_fetch_policy(tmp_path, ray_address, tiny_model_dir, canary):
    """Ray prepare tasks read local files only under the manifest's folder and refuse
    internal hosts, exactly as the local ingest does: reported skips, the rest indexed."""
    shop = tmp_path / "shop"
    (shop / "img").mkdir(parents=True)
    for i in range(3):
        (shop / "img" / f"ok-{i}.png").write_bytes(png_bytes(i))
    (tmp_path / "secret.png").write_bytes(png_bytes(9))
    (shop / "img" / "escape.png").symlink_to(tmp_path / "secret.png")
    rows = [{"id": f"ok-{i}", "image": f"img/ok-{i}.png"} for i in range(3)]
    rows += [
        {"id": "passwd", "image": "/etc/passwd"},
        {"id": "escape", "image": "img/escape.png"},
        {"id": "zero", "image": "/dev/zero"},
        {"id": "canary", "image": f"{canary.url}/png"},
    ]
    manifest = shop / "rows.jsonl"
    manifest.write_text("\n".join(json.dumps(row) for row in rows))
    with Engine(settings_for(tmp_path / "ray", tiny_model_dir)) as distributed:
        report = distributed.index_path_ray(manifest)
    reasons = failures(report)
    assert report.added == 3 and sorted(reasons) == ["canary", "escape", "passwd", "zero"]
    assert all("outside the folders" in reasons[i] for i in ("escape", "passwd", "zero"))
    assert "loopback" in reasons["canary"]
