"""The catalog's schema: named migrations, applied in name order, each once.

A migration is one entry of MIGRATIONS: a name `NNNN_what` and its DDL, written once for
every database with `{words}` each dialect fills in (`{json}` is TEXT in SQLite and JSONB in
PostgreSQL). Adding a table is appending one entry; never edit a released one.

`schema_version (version, name, applied_at)` records each applied migration in the same
transaction as its DDL (`version` is the number its name starts with, so a Lookalike from
before names, which compares MAX(version) with its own count, refuses a newer schema too).
Each step runs in its own transaction; on PostgreSQL the transaction first takes an
advisory lock, so replicas starting together apply each step once. A recorded name this
code does not know means a newer Lookalike migrated the database: opening it is refused.

Before names, each backend numbered its own list; `LEGACY_STEPS` maps those numbers to
names, and the first open of such a database rewrites its rows (nothing is re-run).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from lookalike.catalog.sql.dialects import Dialect
from lookalike.errors import CatalogError

_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+$")


@dataclass(frozen=True)
class Migration:
    name: str  # NNNN_what: applied in name order
    sql: str  # `;`-separated statements, with the dialect's {words}

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"migration name {self.name!r} is not NNNN_lowercase_words")

    @property
    def number(self) -> int:
        return int(self.name[:4])

    def statements(self, dialect: Dialect) -> list[str]:
        rendered = self.sql.format(**dialect.ddl)
        return [statement for statement in rendered.split(";") if statement.strip()]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        "0001_products",
        """
        CREATE TABLE products (
            pk {row_id},
            id TEXT NOT NULL UNIQUE,
            title TEXT NOT NULL DEFAULT '',
            category TEXT,
            brand TEXT,
            price {float},
            image_source TEXT,
            attributes {json} NOT NULL DEFAULT '{{}}',
            content_hash TEXT,
            model_id TEXT,
            vector_id {int64} UNIQUE,
            embedding {blob},
            created_at {float} NOT NULL,
            updated_at {float} NOT NULL
        );
        CREATE INDEX products_category ON products (category);
        CREATE INDEX products_brand ON products (brand);
        CREATE INDEX products_price ON products (price);
        CREATE TABLE vector_log (
            seq {sequence},
            vector_id {int64},
            op {int16} NOT NULL
        );
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        """,
    ),
    Migration(
        "0002_covering_indexes",
        # Filters count and list searchable items (`vector_id IS NOT NULL`); with vector_id
        # in the index the database never reads the rows, whose embeddings make them large
        # (SQLite at 100k items: a 50% price filter's count drops from ~400 ms to ~20 ms).
        """
        DROP INDEX products_category;
        DROP INDEX products_brand;
        DROP INDEX products_price;
        CREATE INDEX products_category_vector ON products (category, vector_id);
        CREATE INDEX products_brand_vector ON products (brand, vector_id);
        CREATE INDEX products_price_vector ON products (price, vector_id);
        """,
    ),
    Migration(
        "0003_catalog_version",
        # The version moves with every committed change to products, metadata included (the
        # vector log does not see a price change), so caches can key on it; the writing
        # transaction bumps it. The id tells catalogs apart in a shared cache.
        """
        CREATE TABLE catalog_version (
            id INTEGER PRIMARY KEY CHECK (id = 1),
            version {int64} NOT NULL
        );
        INSERT INTO catalog_version (id, version) VALUES (1, 0);
        INSERT INTO meta (key, value) VALUES ('catalog_id', {random_id})
            ON CONFLICT (key) DO NOTHING;
        """,
    ),
    Migration(
        "0004_search_and_click_logs",
        # Feed `lookalike report` (see catalog/logs.py for how they grow).
        """
        CREATE TABLE search_log (
            search_id TEXT PRIMARY KEY,
            ts {float} NOT NULL,
            query_type TEXT NOT NULL,
            result_count INTEGER NOT NULL,
            total_found INTEGER NOT NULL,
            latency_ms {float} NOT NULL,
            product_ids {json} NOT NULL,
            categories {json} NOT NULL
        );
        CREATE INDEX search_log_ts ON search_log (ts);
        CREATE TABLE click_log (
            pk {row_id},
            search_id TEXT NOT NULL,
            product_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            ts {float} NOT NULL
        );
        CREATE INDEX click_log_search ON click_log (search_id);
        """,
    ),
    Migration(
        "0005_api_keys",
        # API keys by name; a request's key is found by its digest (the UNIQUE index), the
        # token itself is never stored (see catalog/keys.py). Revoking deletes the row.
        """
        CREATE TABLE api_keys (
            name TEXT PRIMARY KEY,
            digest TEXT NOT NULL UNIQUE,
            scope TEXT NOT NULL,
            created_at {float} NOT NULL,
            last_used_at {float}
        );
        """,
    ),
    Migration(
        "0006_log_pruning_and_media_refs",
        # Pruning logs by age reads clicks by time (searches have search_log_ts already).
        # Uploaded media is named by content hash: "who still points at this file" is a
        # lookup by content_hash (a fixed-size key; image sources can be long URLs).
        """
        CREATE INDEX click_log_ts ON click_log (ts);
        CREATE INDEX products_content_hash ON products (content_hash);
        """,
    ),
    Migration(
        "0007_ranking_logs",
        # What a learned ranker trains on and how it is served (catalog/logs.py,
        # catalog/rankers.py): per search its session (hashed), ranker, model, A/B arm,
        # randomised top slots and feature names; per shown hit its features at serving
        # time; the kind of each event; the models and their promotions; the key session
        # ids are hashed with (made here once, so replicas starting together agree on it).
        """
        ALTER TABLE search_log ADD COLUMN session_hash TEXT;
        ALTER TABLE search_log ADD COLUMN ranker TEXT;
        ALTER TABLE search_log ADD COLUMN model_id TEXT;
        ALTER TABLE search_log ADD COLUMN arm TEXT;
        ALTER TABLE search_log ADD COLUMN explored INTEGER NOT NULL DEFAULT 0;
        ALTER TABLE search_log ADD COLUMN feature_names {json};
        CREATE INDEX search_log_session ON search_log (session_hash);
        CREATE TABLE search_log_hits (
            search_id TEXT NOT NULL,
            position INTEGER NOT NULL,
            product_id TEXT NOT NULL,
            similarity {float} NOT NULL,
            features {json},
            PRIMARY KEY (search_id, position)
        );
        ALTER TABLE click_log ADD COLUMN kind TEXT NOT NULL DEFAULT 'click';
        CREATE TABLE ranker_models (
            version TEXT PRIMARY KEY,
            created_at {float} NOT NULL,
            manifest {json} NOT NULL,
            model TEXT NOT NULL
        );
        CREATE TABLE ranker_promotions (
            seq {row_id},
            version TEXT NOT NULL,
            promoted_at {float} NOT NULL,
            rolled_back_at {float}
        );
        INSERT INTO meta (key, value) VALUES ('session_secret', {random_id})
            ON CONFLICT (key) DO NOTHING;
        """,
    ),
    Migration(
        "0008_product_versions",
        # Order that holds with several writers (queue consumers, servers): each product's
        # version grows with every change and a write older than the stored one is refused.
        # A delete leaves a tombstone with its version, so a late, older upsert cannot bring
        # the product back. Each change-log entry records when it was committed, so servers
        # that apply the log can tell how long a change took to become searchable.
        """
        ALTER TABLE products ADD COLUMN version {int64} NOT NULL DEFAULT 0;
        CREATE TABLE product_tombstones (
            id TEXT PRIMARY KEY,
            version {int64} NOT NULL,
            deleted_at {float} NOT NULL
        );
        ALTER TABLE vector_log ADD COLUMN committed_at {float};
        """,
    ),
    Migration(
        "0009_image_hashes",
        # Near-duplicate detection: perceptual hashes of each product's image (and of its
        # mirror image), written with its embedding (`vector_id` tells which one), and the
        # near-duplicate group it belongs to (NULL: none). Hashes are 64-bit, stored signed.
        """
        CREATE TABLE image_hashes (
            product_id TEXT PRIMARY KEY,
            vector_id {int64} NOT NULL,
            phash {int64} NOT NULL,
            phash_mirror {int64} NOT NULL,
            group_id TEXT
        );
        CREATE INDEX image_hashes_vector ON image_hashes (vector_id);
        CREATE INDEX image_hashes_group ON image_hashes (group_id);
        """,
    ),
    Migration(
        "0010_crop_hashes",
        # Near-duplicate crops: the pHashes of a grid of each image's sub-crops (8 bytes
        # each, most significant first) and a small grey thumbnail with the aspect ratio it
        # was squeezed from, on which a candidate crop is checked. NULL: hashed before.
        """
        ALTER TABLE image_hashes ADD COLUMN crop_hashes {blob};
        ALTER TABLE image_hashes ADD COLUMN thumbnail {blob};
        ALTER TABLE image_hashes ADD COLUMN aspect {float};
        """,
    ),
)

# Positional steps before names: (dialect, number) -> (the name recorded then, what it did).
# SQLite's third step made the logs too; PostgreSQL got them with 0004.
LEGACY_STEPS: dict[tuple[str, int], tuple[str, tuple[str, ...]]] = {
    ("sqlite", 1): ("products, embeddings and the vector change log", ("0001_products",)),
    ("sqlite", 2): ("covering indexes for filtered search", ("0002_covering_indexes",)),
    ("sqlite", 3): (
        "catalog version counter and identity; search and click logs",
        ("0003_catalog_version", "0004_search_and_click_logs"),
    ),
    ("postgresql", 1): ("products, embeddings and the vector change log", ("0001_products",)),
    ("postgresql", 2): ("covering indexes for filtered search", ("0002_covering_indexes",)),
    ("postgresql", 3): ("catalog version counter and identity", ("0003_catalog_version",)),
}


def apply_migrations(
    conn: Any, dialect: Dialect, migrations: tuple[Migration, ...] = MIGRATIONS
) -> str:
    """Bring the schema up to date, one migration per transaction; returns the newest name.

    `conn` is a connection of `dialect` in autocommit mode (each step opens its own
    transaction on it).
    """
    known = {m.name: m for m in migrations}
    while True:
        with dialect.transaction(conn):
            if dialect.migration_lock:
                dialect.execute(conn, dialect.migration_lock)
            applied = _applied(conn, dialect)
            newer = sorted(set(applied) - set(known))
            if newer:
                raise CatalogError(
                    f"catalog schema has migration(s) {', '.join(newer)}, newer than this "
                    f"Lookalike knows (up to {max(known)}); upgrade Lookalike"
                )
            pending = sorted(set(known) - set(applied))
            if not pending:
                return max(applied)
            step = known[pending[0]]
            for statement in step.statements(dialect):
                dialect.execute(conn, statement)
            _record(conn, dialect, step.number, step.name)


def _applied(conn: Any, dialect: Dialect) -> set[str]:
    """Names of the applied migrations (rows of positional steps renamed first)."""
    dialect.execute(
        conn,
        "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER PRIMARY KEY,"
        " name TEXT NOT NULL, applied_at {timestamp} NOT NULL)".format(**dialect.ddl),
    )
    rows = dialect.execute(conn, "SELECT version, name FROM schema_version").fetchall()
    names = set()
    for version, name in rows:
        legacy = LEGACY_STEPS.get((dialect.name, int(version)))
        if legacy is None or name != legacy[0]:
            names.add(name)
            continue
        first, *more = legacy[1]
        p = dialect.param
        dialect.execute(
            conn, f"UPDATE schema_version SET name = {p} WHERE version = {p}", (first, version)
        )
        names.add(first)
        for extra in more:
            _record(conn, dialect, int(extra[:4]), extra)
            names.add(extra)
    return names


def _record(conn: Any, dialect: Dialect, number: int, name: str) -> None:
    p = dialect.param
    dialect.execute(
        conn,
        f"INSERT INTO schema_version (version, name, applied_at) VALUES ({p}, {p}, "
        f"{dialect.ddl['now']})",
        (number, name),
    )
