"""Shared fixtures: a tiny real-architecture model, settings in a temp dir, image sets, and
real servers (PostgreSQL, a Milvus endpoint) started on free local ports, stopped after."""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from lookalike import Engine, Settings
from tests.support.images import write_images
from tests.support.servers import (
    MilvusLiteServer,
    PostgresServer,
    postgres_bin_dir,
    started_server,
)
from tests.support.tiny_models import build_tiny_openclip

# Fixtures of real servers the tests start (each skips when its server is not installed).
pytest_plugins = [
    "tests.support.redis_server",
    "tests.support.kafka_server",
    "tests.support.api_catalog",
    "tests.support.event_backends",
    "tests.support.hostile_http",
    "tests.support.pgvector_server",
]

# Tests never touch a model hub: an accidental download fails at once instead of hanging.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Settings made in tests with the default data_dir (a folder in the working directory)
# would cache ONNX exports of the packaged text tower there: one temp folder instead,
# shared by the session so the tower is exported once.
if "LOOKALIKE_ONNX_CACHE_DIR" not in os.environ:
    _onnx_cache = tempfile.mkdtemp(prefix="lookalike-onnx-")
    os.environ["LOOKALIKE_ONNX_CACHE_DIR"] = _onnx_cache
    atexit.register(shutil.rmtree, _onnx_cache, ignore_errors=True)  # ~90 MB of MiniLM


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_openclip(tmp_path_factory.mktemp("models") / "tiny-clip")


@pytest.fixture
def settings(tmp_path: Path, tiny_model_dir: Path) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        model_checkpoint=str(tiny_model_dir),
        device="cpu",
        encode_batch_size=8,
        ingest_workers=2,
    )


@pytest.fixture
def engine(settings: Settings):
    with Engine(settings) as eng:
        yield eng


@pytest.fixture
def photo_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    write_images(folder, 24)
    return folder


_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session (skipped when the binaries are absent)."""
    pytest.importorskip("psycopg", reason="needs lookalike[postgres]")
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found: apt-get install postgresql")
    yield from started_server(bin_dir)


@pytest.fixture
def postgres_url(postgres_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database for one test."""
    name = f"test_{next(_databases)}"
    yield postgres_server.create_database(name)
    postgres_server.drop_database(name)


@pytest.fixture
def milvus_server(tmp_path: Path) -> Iterator[MilvusLiteServer]:
    """A Milvus gRPC endpoint (Milvus Lite's server) that several processes can share."""
    pytest.importorskip("pymilvus", reason="needs lookalike[milvus]")
    pytest.importorskip("milvus_lite", reason="needs lookalike[milvus]")
    server = MilvusLiteServer(tmp_path / "milvus-server").start()
    try:
        yield server
    finally:
        server.stop()
