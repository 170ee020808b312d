"""`lookalike build-index` and `lookalike tune` on a real catalog, in-process."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.cli import app
from lookalike.config import Settings
from lookalike.encode import create_encoder
from tests.support.ann_vectors import catalog_writes, clustered
from tests.support.tiny_models import build_tiny_openclip

VECTORS = 1500


@pytest.fixture(scope="module")
def env(tmp_path_factory) -> dict[str, str]:
    """A data dir whose catalog holds embeddings of the tiny model (written directly)."""
    root = tmp_path_factory.mktemp("cli-index")
    model_dir = build_tiny_openclip(root / "model")
    settings = Settings(model_checkpoint=str(model_dir), data_dir=root / "data")
    encoder = create_encoder(settings)
    settings.ensure_data_dir()
    catalog = SQLiteCatalog(root / "data" / "catalog.db")
    catalog.upsert(catalog_writes(clustered(VECTORS, encoder.info.dim), encoder.model_id))
    catalog.close()
    return {"LOOKALIKE_MODEL_CHECKPOINT": str(model_dir), "LOOKALIKE_DATA_DIR": str(root / "data")}


def run(env, *args: str):
    return CliRunner().invoke(app, list(args), env=env)


def test_build_index_prints_the_plan_then_builds_and_tunes(env):
    result = run(env, "build-index", "--type", "hnsw")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"building hnsw index for {VECTORS} vectors")
    assert "MiB" in lines[0]
    assert f"built hnsw index with {VECTORS} vectors" in result.output
    assert "chosen {" in result.output and "meets the target" in result.output
    info = json.loads(run({**env, "LOOKALIKE_INDEX_TYPE": "hnsw"}, "info", "--json").output)
    assert info["index"]["type"] == "hnsw"
    assert info["index"]["params"]["tuned"]["recall_target"] == 0.95


def test_tune_reports_the_sweep(env):
    result = run({**env, "LOOKALIKE_INDEX_TYPE": "hnsw"}, "tune", "--k", "10", "--queries", "30")
    assert result.exit_code == 0, result.output
    assert "target Recall@10 >= 0.95" in result.output
    assert '"ef_search"' in result.output


def test_tune_of_an_exact_index_says_there_is_nothing_to_tune(env):
    result = run({**env, "LOOKALIKE_INDEX_TYPE": "flat"}, "tune", "--queries", "10")
    assert result.exit_code == 0, result.output
    assert "exact: nothing to tune" in result.output


def test_unknown_index_type_is_refused(env):
    result = run(env, "build-index", "--type", "annoy")
    assert result.exit_code == 2
    assert "annoy" in result.output
