"""What only the PostgreSQL catalog does: reach a server, keep its password to itself, and
turn values the server refuses into typed errors (its shared behaviour is in
test_catalog_congruence.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("psycopg", reason="needs lookalike[postgres]")

from lookalike.catalog import Product, ProductWrite
from lookalike.catalog.postgres import PostgresCatalog
from lookalike.errors import CatalogError, InvalidInput


def test_unreachable_server_is_a_catalog_error():
    with pytest.raises(CatalogError, match="cannot open catalog"):
        PostgresCatalog("postgresql://nobody:secret@127.0.0.1:1/none", connect_timeout_s=2)


def test_password_is_not_shown(postgres_server):
    with pytest.raises(CatalogError) as info:
        PostgresCatalog(
            f"postgresql://postgres:hunter2@127.0.0.1:{postgres_server.port}/no_such_db"
        )
    assert "hunter2" not in str(info.value)


def test_password_is_not_described(postgres_url):
    # The test server trusts local connections, so any password opens it.
    url = postgres_url.replace("postgresql://postgres@", "postgresql://postgres:hunter2@")
    assert "hunter2" in url
    catalog = PostgresCatalog(url)
    try:
        described = catalog.describe()
        assert "hunter2" not in str(described) and "***" in described["url"]
        assert described["capabilities"] == {
            "shared_between_machines": True,
            "concurrent_writers": True,
        }
    finally:
        catalog.close()


def test_a_value_postgresql_cannot_store_is_bad_input(postgres_url):
    catalog = PostgresCatalog(postgres_url)
    try:
        with pytest.raises(InvalidInput):
            catalog.upsert([ProductWrite(Product("nul", title="a\x00b"), np.ones(4, np.float32))])
        assert catalog.get_many(["nul"]) == {} and catalog.log_head() == 0
    finally:
        catalog.close()
