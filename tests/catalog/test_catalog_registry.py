"""The catalog registry: a backend per URL scheme, an unknown scheme refused with the
known ones listed, and every registered backend in the congruence suite."""

from __future__ import annotations

from pathlib import Path

import pytest

from lookalike.catalog import catalog_backends, open_catalog
from lookalike.catalog.sql.migrations import MIGRATIONS
from lookalike.catalog.sqlite import SQLiteCatalog
from lookalike.config import Settings
from lookalike.errors import ConfigError
from tests.support.catalog_backends import BACKENDS


def settings(tmp_path: Path, url: str | None) -> Settings:
    return Settings(_env_file=None, data_dir=tmp_path / "data", catalog_url=url)


def test_every_registered_backend_runs_the_congruence_suite():
    assert set(catalog_backends()) == set(BACKENDS)
    assert catalog_backends()["postgresql"] == ("postgresql", "postgres")


def test_the_default_is_sqlite_in_the_data_dir(tmp_path):
    catalog = open_catalog(settings(tmp_path, None))
    try:
        assert isinstance(catalog, SQLiteCatalog)
        assert catalog.path == tmp_path / "data" / "catalog.db"
        assert catalog.describe() == {
            "backend": "sqlite",
            "url": f"sqlite:///{tmp_path / 'data' / 'catalog.db'}",
            "schema": MIGRATIONS[-1].name,  # the newest migration
            "capabilities": {"shared_between_machines": False, "concurrent_writers": True},
        }
    finally:
        catalog.close()


@pytest.mark.parametrize("url", ["mysql://u:secret@127.0.0.1/db", "catalog.db", "milvus://x"])
def test_an_unknown_scheme_lists_the_known_ones(tmp_path, url):
    with pytest.raises(ConfigError) as info:
        open_catalog(settings(tmp_path, url))
    message = str(info.value)
    assert "postgresql://" in message and "sqlite://" in message and "postgres://" in message
    assert "secret" not in message


def test_a_sqlite_url_needs_three_slashes(tmp_path):
    with pytest.raises(ConfigError, match="sqlite:///"):
        open_catalog(settings(tmp_path, "sqlite://catalog.db"))


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_both_postgres_schemes_open_postgresql(tmp_path, postgres_url, scheme):
    url = postgres_url.replace("postgresql://", f"{scheme}://")
    catalog = open_catalog(settings(tmp_path, url))
    try:
        assert catalog.describe()["backend"] == "postgresql"
    finally:
        catalog.close()
