"""Every catalog backend, for suites that run the same tests on each (congruence tests).

A new backend joins them with one entry in BACKENDS: a function that makes a fresh, empty
catalog location for one test (starting its server through a fixture where it needs one).
`tests/catalog/test_catalog_registry.py` checks that every registered backend is here.
Import the `backend` and `catalog` fixtures into a folder's conftest to use them.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lookalike.catalog import Catalog, open_catalog
from lookalike.config import Settings


@dataclass(frozen=True)
class Backend:
    """A fresh catalog location of one backend, and raw SQL access to it for checks."""

    name: str
    url: str
    data_dir: Path
    # Runs one statement outside the catalog (autocommit) and returns its rows.
    run: Callable[[str], list[tuple]]
    tables_sql: str  # lists the names of the tables

    def settings(self, **overrides: Any) -> Settings:
        return Settings(_env_file=None, data_dir=self.data_dir, catalog_url=self.url, **overrides)

    def open(self) -> Catalog:
        """The catalog, opened the way the engine opens it (the registry, by URL)."""
        return open_catalog(self.settings())

    def tables(self) -> set[str]:
        return {name for (name,) in self.run(self.tables_sql)}


def _sqlite(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    path = tmp_path / "catalog" / "catalog.db"
    path.parent.mkdir(parents=True, exist_ok=True)

    def run(sql: str) -> list[tuple]:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
            return conn.execute(sql).fetchall()

    return Backend(
        "sqlite",
        f"sqlite:///{path}",
        tmp_path / "data",
        run,
        "SELECT name FROM sqlite_master WHERE type = 'table'",
    )


def _postgresql(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    url = request.getfixturevalue("postgres_url")  # skips when no server is installed

    def run(sql: str) -> list[tuple]:
        import psycopg

        with psycopg.connect(url, autocommit=True) as conn:
            cursor = conn.execute(sql)
            return cursor.fetchall() if cursor.description else []

    return Backend(
        "postgresql",
        url,
        tmp_path / "data",
        run,
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'",
    )


# name (as registered with the catalog factory) -> a fresh location of that backend
BACKENDS: dict[str, Callable[[pytest.FixtureRequest, Path], Backend]] = {
    "sqlite": _sqlite,
    "postgresql": _postgresql,
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A fresh, empty location of each backend in turn."""
    return BACKENDS[request.param](request, tmp_path)


@pytest.fixture
def catalog(backend: Backend) -> Iterator[Catalog]:
    """A fresh catalog of each backend in turn."""
    opened = backend.open()
    try:
        yield opened
    finally:
        opened.close()
