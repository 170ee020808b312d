"""PostgreSQL catalog: the SQLite catalog's behaviour, for several servers sharing one catalog.

psycopg 3 with a connection pool (autocommit; writes open explicit transactions). Every
write transaction first takes `LOCK TABLE vector_log IN EXCLUSIVE MODE`: a sequence alone
does not give commit order (a later `nextval` can commit first, and a reader tailing the
log would skip the earlier one for good), while under the lock a transaction allocates its
sequence numbers and commits before the next writer allocates any. Reads take no lock
(EXCLUSIVE still admits plain SELECTs).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from lookalike.catalog.base import (
    CatalogStats,
    Product,
    ProductFilter,
    ProductWrite,
    VectorChanges,
    now,
)
from lookalike.catalog.changes import OP_ADD, OP_METADATA, OP_REMOVE, net_changes
from lookalike.catalog.filters import PostgresDialect, filter_sql
from lookalike.catalog.migrations import POSTGRES_MIGRATIONS, apply_postgres_migrations
from lookalike.catalog.rows import PRODUCT_COLUMNS, dump_attributes, product_from_row
from lookalike.errors import CatalogError, InvalidInput, NotFound
from lookalike.redact import redact_url

log = logging.getLogger(__name__)

_DIALECT = PostgresDialect()
_NEXT_SEQ = (
    "SELECT nextval(pg_get_serial_sequence('vector_log', 'seq')) FROM generate_series(1, %s)"
)
_INSERT_METADATA = (
    "INSERT INTO products (id, title, category, brand, price, image_source, attributes,"
    " content_hash, model_id, created_at, updated_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s)"
    " ON CONFLICT (id) DO UPDATE SET title = excluded.title, category = excluded.category,"
    " brand = excluded.brand, price = excluded.price, image_source = excluded.image_source,"
    " attributes = excluded.attributes, updated_at = excluded.updated_at"
)
_INSERT_EMBEDDED = (
    "INSERT INTO products (id, title, category, brand, price, image_source, attributes,"
    " content_hash, model_id, vector_id, embedding, created_at, updated_at)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s::jsonb, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (id) DO UPDATE SET title = excluded.title, category = excluded.category,"
    " brand = excluded.brand, price = excluded.price, image_source = excluded.image_source,"
    " attributes = excluded.attributes, content_hash = excluded.content_hash,"
    " model_id = excluded.model_id, vector_id = excluded.vector_id,"
    " embedding = excluded.embedding, updated_at = excluded.updated_at"
)


class PostgresCatalog:
    """The Catalog protocol on PostgreSQL (selected by `LOOKALIKE_CATALOG_URL=postgresql://`)."""

    def __init__(
        self,
        url: str,
        *,
        pool_min: int = 1,
        pool_max: int = 10,
        connect_timeout_s: float = 10.0,
    ) -> None:
        self.url = redact_url(url)
        try:
            # One direct connection first: it reports why a server cannot be reached
            # (a pool only times out), and it runs the migrations.
            with psycopg.connect(
                url, autocommit=True, connect_timeout=max(1, round(connect_timeout_s))
            ) as conn:
                apply_postgres_migrations(conn, POSTGRES_MIGRATIONS)
        except psycopg.Error as exc:
            raise CatalogError(f"cannot open catalog {self.url}: {exc}") from exc
        self._pool = ConnectionPool(
            url,
            min_size=pool_min,
            max_size=max(pool_max, pool_min, 1),
            kwargs={"autocommit": True},
            timeout=connect_timeout_s,
            name="lookalike-catalog",
            open=True,
        )

    # --- connections ---------------------------------------------------------------------
    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection]:
        """A pooled connection; database errors become typed errors here."""
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg.DataError as exc:
            raise InvalidInput(f"the catalog refused a value: {exc}") from exc
        except PoolTimeout as exc:
            raise CatalogError(f"no catalog connection free or reachable at {self.url}") from exc
        except psycopg.Error as exc:
            raise CatalogError(f"catalog {self.url}: {exc}") from exc

    @contextmanager
    def _write(self) -> Iterator[psycopg.Connection]:
        """A transaction that may append to the change log (see the module docstring)."""
        with self._connection() as conn, conn.transaction():
            conn.execute("LOCK TABLE vector_log IN EXCLUSIVE MODE")
            yield conn

    def close(self) -> None:
        self._pool.close()

    # --- writes --------------------------------------------------------------------------
    def upsert(self, writes: Sequence[ProductWrite]) -> None:
        if not writes:
            return
        stamp = now()
        with self._write() as conn:
            ids = list(dict.fromkeys(w.product.id for w in writes))
            state: dict[str, tuple[Any, float]] = {
                pid: (vid, created)
                for pid, vid, created in conn.execute(
                    "SELECT id, vector_id, created_at FROM products WHERE id = ANY(%s)", (ids,)
                )
            }
            # Log entries in the order SQLite would append them; a new embedding's vector id
            # is its own entry's sequence number, known once the numbers are allocated.
            entries: list[tuple[Any, int]] = []  # (vector id, or ("new", entry index), op)
            planned: list[tuple[ProductWrite, float, int | None]] = []
            for write in writes:
                old, created = state.get(write.product.id, (None, stamp))
                if write.embedding is None:
                    if old is not None:
                        entries.append((old, OP_METADATA))
                    planned.append((write, created, None))
                    continue
                if old is not None:
                    entries.append((old, OP_REMOVE))
                entries.append((None, OP_ADD))
                new = ("new", len(entries) - 1)
                planned.append((write, created, len(entries) - 1))
                state[write.product.id] = (new, created)
            seqs = self._allocate(conn, len(entries))

            def resolve(vector_id: Any, index: int) -> int:
                if vector_id is None:
                    return seqs[index]
                return seqs[vector_id[1]] if isinstance(vector_id, tuple) else int(vector_id)

            with conn.pipeline():
                with conn.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO vector_log (seq, vector_id, op) VALUES (%s, %s, %s)",
                        [(seqs[i], resolve(vid, i), op) for i, (vid, op) in enumerate(entries)],
                    )
                for write, created, entry in planned:
                    conn.execute(*_product_insert(write, created, stamp, entry, seqs))
            _bump_version(conn)

    @staticmethod
    def _allocate(conn: psycopg.Connection, count: int) -> list[int]:
        if not count:
            return []
        return sorted(int(r[0]) for r in conn.execute(_NEXT_SEQ, (count,)))

    def delete(self, product_ids: Sequence[str]) -> int:
        ids = list(dict.fromkeys(product_ids))
        if not ids:
            return 0
        with self._write() as conn:
            rows = conn.execute(
                "DELETE FROM products WHERE id = ANY(%s) RETURNING vector_id", (ids,)
            ).fetchall()
            removed = [int(r[0]) for r in rows if r[0] is not None]
            if removed:
                conn.execute(
                    "INSERT INTO vector_log (vector_id, op)"
                    " SELECT v, %s FROM unnest(%s::bigint[]) AS v",
                    (OP_REMOVE, removed),
                )
            if rows:
                _bump_version(conn)
        return len(rows)

    # --- reads ---------------------------------------------------------------------------
    def get(self, product_id: str) -> Product:
        found = self.get_many([product_id])
        if product_id not in found:
            raise NotFound(f"product {product_id!r}")
        return found[product_id]

    def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]:
        if not product_ids:
            return {}
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id = ANY(%s)",
                (list(product_ids),),
            ).fetchall()
        return {row[0]: product_from_row(row) for row in rows}

    def by_vector_ids(self, vector_ids: Sequence[int]) -> dict[int, Product]:
        if not len(vector_ids):
            return {}
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT {PRODUCT_COLUMNS} FROM products WHERE vector_id = ANY(%s::bigint[])",
                ([int(v) for v in vector_ids],),
            ).fetchall()
        return {int(row[9]): product_from_row(row) for row in rows}

    def embedding(self, product_id: str) -> tuple[int, np.ndarray]:
        with self._connection() as conn:
            row = conn.execute(
                "SELECT vector_id, embedding FROM products WHERE id = %s",
                (product_id,),
                binary=True,
            ).fetchone()
        if row is None or row[1] is None:
            raise NotFound(f"product {product_id!r}" + (" has no embedding" if row else ""))
        return int(row[0]), np.frombuffer(row[1], dtype=np.float32).copy()

    def embeddings_by_vector_ids(
        self, vector_ids: Sequence[int], model_id: str | None = None
    ) -> dict[int, np.ndarray]:
        if not len(vector_ids):
            return {}
        model_sql, model_params = _model_clause(model_id)
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT vector_id, embedding FROM products"
                f" WHERE vector_id = ANY(%s::bigint[]){model_sql}",
                ([int(v) for v in vector_ids], *model_params),
                binary=True,
            ).fetchall()
        return {int(vid): np.frombuffer(blob, dtype=np.float32) for vid, blob in rows}

    def log_head(self) -> int:
        with self._connection() as conn:
            row = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM vector_log").fetchone()
        return int(row[0])

    def version(self) -> int:
        with self._connection() as conn:
            row = conn.execute("SELECT version FROM catalog_version WHERE id = 1").fetchone()
        return int(row[0])

    def changes_since(
        self, seq: int, limit: int = 100_000, model_id: str | None = None
    ) -> VectorChanges:
        with self._connection() as conn:
            ops = conn.execute(
                "SELECT seq, vector_id, op FROM vector_log WHERE seq > %s ORDER BY seq LIMIT %s",
                (seq, limit),
            ).fetchall()
        return net_changes(ops, seq, lambda ids: self.embeddings_by_vector_ids(ids, model_id))

    def iter_embeddings(
        self, batch_size: int = 10_000, model_id: str | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        last = -1
        model_sql, model_params = _model_clause(model_id)
        while True:
            with self._connection() as conn:
                rows = conn.execute(
                    "SELECT vector_id, embedding FROM products"
                    f" WHERE vector_id > %s{model_sql} ORDER BY vector_id LIMIT %s",
                    (last, *model_params, batch_size),
                    binary=True,
                ).fetchall()
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield ids, np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
            last = int(ids[-1])

    def iter_products(self, batch_size: int = 1_000) -> Iterator[Product]:
        last = 0
        while True:
            with self._connection() as conn:
                rows = conn.execute(
                    f"SELECT pk, {PRODUCT_COLUMNS} FROM products WHERE pk > %s"
                    " ORDER BY pk LIMIT %s",
                    (last, batch_size),
                ).fetchall()
            if not rows:
                return
            yield from (product_from_row(row[1:]) for row in rows)
            last = rows[-1][0]

    def filter_vector_ids(self, product_filter: ProductFilter) -> np.ndarray:
        where, params = filter_sql(product_filter, _DIALECT)
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT vector_id FROM products WHERE vector_id IS NOT NULL AND {where}"
                " ORDER BY vector_id",
                params,
            ).fetchall()
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def count_matching(self, product_filter: ProductFilter) -> int:
        where, params = filter_sql(product_filter, _DIALECT)
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT COUNT(*) FROM products WHERE vector_id IS NOT NULL AND {where}", params
            ).fetchone()
        return int(row[0])

    def facets(self, limit: int = 50) -> dict[str, Any]:
        out: dict[str, Any] = {}
        with self._connection() as conn:
            for column in ("category", "brand"):
                # Byte order, as SQLite sorts, whatever the database's locale.
                out[column] = [
                    {"value": value, "count": count}
                    for value, count in conn.execute(
                        f"SELECT {column}, COUNT(*) AS n FROM products"
                        f" WHERE {column} IS NOT NULL GROUP BY {column}"
                        f' ORDER BY n DESC, {column} COLLATE "C" LIMIT %s',
                        (limit,),
                    )
                ]
            low, high = conn.execute("SELECT MIN(price), MAX(price) FROM products").fetchone()
        out["price"] = {"min": low, "max": high}
        return out

    def stats(self) -> CatalogStats:
        with self._connection() as conn:
            total, searchable, last = conn.execute(
                "SELECT COUNT(*), COUNT(vector_id), MAX(updated_at) FROM products"
            ).fetchone()
            models = dict(
                conn.execute(
                    "SELECT model_id, COUNT(*) FROM products WHERE vector_id IS NOT NULL"
                    " GROUP BY model_id"
                ).fetchall()
            )
        return CatalogStats(int(total), int(searchable), models, last, self.log_head())

    def get_meta(self, key: str) -> str | None:
        with self._connection() as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = %s", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._connection() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (%s, %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


def _bump_version(conn: psycopg.Connection) -> None:
    """Inside the writing transaction: readers of `version()` see the change with the data."""
    conn.execute("UPDATE catalog_version SET version = version + 1 WHERE id = 1")


def _product_insert(
    write: ProductWrite, created: float, stamp: float, entry: int | None, seqs: list[int]
) -> tuple[str, tuple]:
    p = write.product
    head = (p.id, p.title, p.category, p.brand, _price(p.price), p.image_source)
    attributes = dump_attributes(p.attributes)
    if entry is None:
        return _INSERT_METADATA, (
            *head,
            attributes,
            p.content_hash,
            p.model_id,
            created,
            stamp,
        )
    embedding = np.ascontiguousarray(write.embedding, dtype=np.float32).tobytes()
    return _INSERT_EMBEDDED, (
        *head,
        attributes,
        p.content_hash,
        p.model_id,
        seqs[entry],
        embedding,
        created,
        stamp,
    )


def _price(price: float | None) -> float | None:
    # SQLite stores NaN as NULL; so does this backend, so filters agree.
    return None if price is None or (isinstance(price, float) and math.isnan(price)) else price


def _model_clause(model_id: str | None) -> tuple[str, list[str]]:
    return (" AND model_id = %s", [model_id]) if model_id is not None else ("", [])
