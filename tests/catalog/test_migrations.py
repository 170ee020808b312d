"""The named migrations: well-formed, ordered by name, rendered for every dialect, and a
map of the positional steps that came before them."""

from __future__ import annotations

import itertools

import pytest

from lookalike.catalog.sql.dialects import POSTGRES, SQLITE
from lookalike.catalog.sql.migrations import LEGACY_STEPS, MIGRATIONS, Migration


def test_names_are_numbered_once_each_and_listed_in_order():
    names = [m.name for m in MIGRATIONS]
    assert names == sorted(names)
    assert len({m.number for m in MIGRATIONS}) == len(MIGRATIONS)
    # Numbers are reserved per workstream and merge in any order: gaps are allowed.
    numbers = [m.number for m in MIGRATIONS]
    assert numbers[0] == 1 and all(a < b for a, b in itertools.pairwise(numbers))


@pytest.mark.parametrize("name", ["1_products", "0005-products", "0005_Products", "products"])
def test_a_badly_named_migration_is_refused(name):
    with pytest.raises(ValueError, match="NNNN_"):
        Migration(name, "SELECT 1")


@pytest.mark.parametrize("dialect", [SQLITE, POSTGRES], ids=lambda d: d.name)
def test_every_migration_renders_for_every_dialect(dialect):
    for migration in MIGRATIONS:
        statements = migration.statements(dialect)
        assert statements, migration.name
        assert not any("{" in s and "'{}'" not in s for s in statements), migration.name


def test_the_words_differ_where_the_databases_do():
    (products, *_rest) = MIGRATIONS[0].statements(SQLITE)
    assert "attributes TEXT NOT NULL DEFAULT '{}'" in products
    assert "pk INTEGER PRIMARY KEY" in products and "embedding BLOB" in products
    (products, *_rest) = MIGRATIONS[0].statements(POSTGRES)
    assert "attributes JSONB NOT NULL DEFAULT '{}'" in products
    assert "embedding BYTEA" in products


def test_every_positional_step_maps_to_known_names_covering_the_schema_it_made():
    known = {m.name for m in MIGRATIONS}
    for dialect in ("sqlite", "postgresql"):
        steps = [LEGACY_STEPS[(dialect, n)] for n in (1, 2, 3)]
        names = [name for _, mapped in steps for name in mapped]
        assert set(names) <= known and names == sorted(names)
    # SQLite's third step made the logs; PostgreSQL's did not, so 0004 runs there.
    assert "0004_search_and_click_logs" in LEGACY_STEPS[("sqlite", 3)][1]
    assert "0004_search_and_click_logs" not in LEGACY_STEPS[("postgresql", 3)][1]
