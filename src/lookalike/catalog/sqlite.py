"""SQLite catalog (WAL): the embedded default. Many readers, one writer at a time, any process."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.catalog.base import (
    CatalogStats,
    Product,
    ProductFilter,
    ProductWrite,
    VectorChanges,
    now,
)
from lookalike.catalog.changes import OP_METADATA, net_changes
from lookalike.catalog.filters import SQLiteDialect, filter_sql
from lookalike.catalog.migrations import SQLITE_MIGRATIONS, apply_sqlite_migrations
from lookalike.catalog.rows import PRODUCT_COLUMNS, dump_attributes
from lookalike.catalog.rows import product_from_row as _product
from lookalike.errors import CatalogError, NotFound

_CHUNK = 900  # stays under SQLite's bound-parameter limit
_DIALECT = SQLiteDialect()


class SQLiteCatalog:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        with self._write_lock, self._transaction() as conn:
            apply_sqlite_migrations(conn, SQLITE_MIGRATIONS)

    # --- connections ---------------------------------------------------------------------
    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, timeout=30, isolation_level=None, check_same_thread=False
                )
            except sqlite3.Error as exc:
                raise CatalogError(f"cannot open catalog {self.path}: {exc}") from exc
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self._conn()
        # IMMEDIATE takes the write lock up front, so log sequence numbers follow commit order.
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()

    # --- writes --------------------------------------------------------------------------
    def upsert(self, writes: Sequence[ProductWrite]) -> None:
        if not writes:
            return
        stamp = now()
        with self._write_lock, self._transaction() as conn:
            for write in writes:
                self._upsert_one(conn, write, stamp)
            _bump_version(conn)

    def _upsert_one(self, conn: sqlite3.Connection, write: ProductWrite, stamp: float) -> None:
        p = write.product
        row = conn.execute(
            "SELECT vector_id, created_at FROM products WHERE id = ?", (p.id,)
        ).fetchone()
        old_vector_id, created_at = (row[0], row[1]) if row else (None, stamp)
        attributes = dump_attributes(p.attributes)
        if write.embedding is None:
            if row is None:
                conn.execute(
                    "INSERT INTO products (id, title, category, brand, price, image_source,"
                    " attributes, content_hash, model_id, created_at, updated_at)"
                    " VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        p.id,
                        p.title,
                        p.category,
                        p.brand,
                        p.price,
                        p.image_source,
                        attributes,
                        p.content_hash,
                        p.model_id,
                        stamp,
                        stamp,
                    ),
                )
            else:
                conn.execute(
                    "UPDATE products SET title=?, category=?, brand=?, price=?, image_source=?,"
                    " attributes=?, updated_at=? WHERE id=?",
                    (
                        p.title,
                        p.category,
                        p.brand,
                        p.price,
                        p.image_source,
                        attributes,
                        stamp,
                        p.id,
                    ),
                )
                if old_vector_id is not None:
                    conn.execute(
                        "INSERT INTO vector_log (vector_id, op) VALUES (?, ?)",
                        (old_vector_id, OP_METADATA),
                    )
            return
        embedding = np.ascontiguousarray(write.embedding, dtype=np.float32)
        if old_vector_id is not None:
            conn.execute("INSERT INTO vector_log (vector_id, op) VALUES (?, -1)", (old_vector_id,))
        cursor = conn.execute("INSERT INTO vector_log (vector_id, op) VALUES (NULL, 1)")
        vector_id = cursor.lastrowid
        conn.execute("UPDATE vector_log SET vector_id = ? WHERE seq = ?", (vector_id, vector_id))
        conn.execute(
            "INSERT INTO products (id, title, category, brand, price, image_source, attributes,"
            " content_hash, model_id, vector_id, embedding, created_at, updated_at)"
            " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)"
            " ON CONFLICT(id) DO UPDATE SET title=excluded.title, category=excluded.category,"
            " brand=excluded.brand, price=excluded.price, image_source=excluded.image_source,"
            " attributes=excluded.attributes, content_hash=excluded.content_hash,"
            " model_id=excluded.model_id, vector_id=excluded.vector_id,"
            " embedding=excluded.embedding, updated_at=excluded.updated_at",
            (
                p.id,
                p.title,
                p.category,
                p.brand,
                p.price,
                p.image_source,
                attributes,
                p.content_hash,
                p.model_id,
                vector_id,
                embedding.tobytes(),
                created_at,
                stamp,
            ),
        )

    def delete(self, product_ids: Sequence[str]) -> int:
        deleted = 0
        with self._write_lock, self._transaction() as conn:
            for chunk in _chunks(list(product_ids)):
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(
                    f"SELECT vector_id FROM products WHERE id IN ({marks})", chunk
                ).fetchall()
                conn.executemany(
                    "INSERT INTO vector_log (vector_id, op) VALUES (?, -1)",
                    [(r[0],) for r in rows if r[0] is not None],
                )
                conn.execute(f"DELETE FROM products WHERE id IN ({marks})", chunk)
                deleted += len(rows)
            if deleted:
                _bump_version(conn)
        return deleted

    # --- reads ---------------------------------------------------------------------------
    def get(self, product_id: str) -> Product:
        found = self.get_many([product_id])
        if product_id not in found:
            raise NotFound(f"product {product_id!r}")
        return found[product_id]

    def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]:
        out: dict[str, Product] = {}
        for chunk in _chunks(list(product_ids)):
            marks = ",".join("?" * len(chunk))
            for row in self._conn().execute(
                f"SELECT {PRODUCT_COLUMNS} FROM products WHERE id IN ({marks})", chunk
            ):
                product = _product(row)
                out[product.id] = product
        return out

    def by_vector_ids(self, vector_ids: Sequence[int]) -> dict[int, Product]:
        out: dict[int, Product] = {}
        for chunk in _chunks([int(v) for v in vector_ids]):
            marks = ",".join("?" * len(chunk))
            for row in self._conn().execute(
                f"SELECT {PRODUCT_COLUMNS} FROM products WHERE vector_id IN ({marks})", chunk
            ):
                product = _product(row)
                out[product.vector_id] = product
        return out

    def embedding(self, product_id: str) -> tuple[int, np.ndarray]:
        row = (
            self._conn()
            .execute("SELECT vector_id, embedding FROM products WHERE id = ?", (product_id,))
            .fetchone()
        )
        if row is None or row[1] is None:
            raise NotFound(f"product {product_id!r}" + (" has no embedding" if row else ""))
        return int(row[0]), np.frombuffer(row[1], dtype=np.float32).copy()

    def embeddings_by_vector_ids(
        self, vector_ids: Sequence[int], model_id: str | None = None
    ) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        model_sql, model_params = _model_clause(model_id)
        for chunk in _chunks([int(v) for v in vector_ids]):
            marks = ",".join("?" * len(chunk))
            for vid, blob in self._conn().execute(
                f"SELECT vector_id, embedding FROM products WHERE vector_id IN ({marks})"
                f"{model_sql}",
                [*chunk, *model_params],
            ):
                out[int(vid)] = np.frombuffer(blob, dtype=np.float32)
        return out

    def log_head(self) -> int:
        row = self._conn().execute("SELECT COALESCE(MAX(seq), 0) FROM vector_log").fetchone()
        return int(row[0])

    def version(self) -> int:
        row = self._conn().execute("SELECT version FROM catalog_version WHERE id = 1").fetchone()
        return int(row[0])

    def changes_since(
        self, seq: int, limit: int = 100_000, model_id: str | None = None
    ) -> VectorChanges:
        ops = (
            self._conn()
            .execute(
                "SELECT seq, vector_id, op FROM vector_log WHERE seq > ? ORDER BY seq LIMIT ?",
                (seq, limit),
            )
            .fetchall()
        )
        return net_changes(ops, seq, lambda ids: self.embeddings_by_vector_ids(ids, model_id))

    def iter_embeddings(
        self, batch_size: int = 10_000, model_id: str | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        last = -1
        model_sql, model_params = _model_clause(model_id)
        while True:
            rows = (
                self._conn()
                .execute(
                    f"SELECT vector_id, embedding FROM products WHERE vector_id > ?{model_sql}"
                    " ORDER BY vector_id LIMIT ?",
                    (last, *model_params, batch_size),
                )
                .fetchall()
            )
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield ids, np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
            last = int(ids[-1])

    def iter_products(self, batch_size: int = 1_000) -> Iterator[Product]:
        last = 0
        while True:
            rows = (
                self._conn()
                .execute(
                    f"SELECT pk, {PRODUCT_COLUMNS} FROM products WHERE pk > ? ORDER BY pk LIMIT ?",
                    (last, batch_size),
                )
                .fetchall()
            )
            if not rows:
                return
            yield from (_product(row[1:]) for row in rows)
            last = rows[-1][0]

    def filter_vector_ids(self, product_filter: ProductFilter) -> np.ndarray:
        where, params = filter_sql(product_filter, _DIALECT)
        # Sorted here, not by ORDER BY: SQLite would walk the vector_id index (every row,
        # embeddings included) to avoid a sort instead of using the filter's own index.
        rows = (
            self._conn()
            .execute(
                f"SELECT vector_id FROM products WHERE vector_id IS NOT NULL AND {where}",
                params,
            )
            .fetchall()
        )
        return np.sort(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)))

    def count_matching(self, product_filter: ProductFilter) -> int:
        where, params = filter_sql(product_filter, _DIALECT)
        row = (
            self._conn()
            .execute(
                f"SELECT COUNT(*) FROM products WHERE vector_id IS NOT NULL AND {where}", params
            )
            .fetchone()
        )
        return int(row[0])

    def facets(self, limit: int = 50) -> dict[str, Any]:
        conn = self._conn()
        out: dict[str, Any] = {}
        for column in ("category", "brand"):
            out[column] = [
                {"value": value, "count": count}
                for value, count in conn.execute(
                    f"SELECT {column}, COUNT(*) AS n FROM products WHERE {column} IS NOT NULL"
                    f" GROUP BY {column} ORDER BY n DESC, {column} LIMIT ?",
                    (limit,),
                )
            ]
        low, high = conn.execute("SELECT MIN(price), MAX(price) FROM products").fetchone()
        out["price"] = {"min": low, "max": high}
        return out

    def stats(self) -> CatalogStats:
        conn = self._conn()
        total, searchable, last = conn.execute(
            "SELECT COUNT(*), COUNT(vector_id), MAX(updated_at) FROM products"
        ).fetchone()
        models = dict(
            conn.execute(
                "SELECT model_id, COUNT(*) FROM products WHERE vector_id IS NOT NULL"
                " GROUP BY model_id"
            ).fetchall()
        )
        return CatalogStats(total, searchable, models, last, self.log_head())

    def get_meta(self, key: str) -> str | None:
        row = self._conn().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        with self._write_lock, self._transaction() as conn:
            conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


def _bump_version(conn: sqlite3.Connection) -> None:
    """Inside a writing transaction: readers of `version()` see the change with the data."""
    conn.execute("UPDATE catalog_version SET version = version + 1 WHERE id = 1")


# --- helpers ----------------------------------------------------------------------------
def _model_clause(model_id: str | None) -> tuple[str, list[str]]:
    return (" AND model_id = ?", [model_id]) if model_id is not None else ("", [])


def _chunks(items: list, size: int = _CHUNK) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
