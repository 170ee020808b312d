"""Shared fixtures: real servers started on free local ports, stopped afterwards."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

from servers import MilvusLiteServer, PostgresServer, postgres_bin_dir

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster for the session (skipped when the binaries are absent)."""
    pytest.importorskip("psycopg", reason="needs lookalike[postgres]")
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries not found: apt-get install postgresql")
    try:
        server = PostgresServer(bin_dir)
    except KeyError:
        pytest.skip("running as root needs the `postgres` user that Debian's package creates")
    server.start()
    try:
        yield server
    finally:
        server.stop()


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
