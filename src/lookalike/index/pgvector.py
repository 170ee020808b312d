"""pgvector: the vectors in a table of the PostgreSQL catalog's own database.

`LOOKALIKE_INDEX_URL=pgvector://` with `LOOKALIKE_CATALOG_URL=postgresql://...`: no second
system for a team that already runs PostgreSQL. Each (model, dimension) gets one table
`(vector_id bigint primary key, embedding vector(dim))` with an HNSW index (inner product,
on L2-normalised vectors), created here on first open (not by a catalog migration) and
filled from the stored embeddings.

A filtered search is one SQL statement: the vector table joined with the catalog's
`products` table, the filter rendered by the catalog's own SQL (`catalog/filters.py`), so
it selects exactly what the catalog selects, always on current metadata. PostgreSQL's
planner scores a selective filter's few matches exactly through the catalog's covering
indexes, and walks the HNSW graph for a broad one with pgvector 0.8's iterative scan,
which scans on until k rows pass the filter. A list still short after that (the scan
stopped at `pgvector_max_scan_tuples`) is completed by an exact search, so filtered lists
stay full. A join rather than the filter fields copied beside each vector: the copy
measured no faster, needs an index per field to match the join on selective filters, a
write per metadata change, and lags the catalog (`benchmarks/pgvector_vs_faiss_milvus.py`,
docs/scaling.md).

A *shared* index, like Milvus: written by whoever writes the catalog (through
`LiveIndex.apply_writes`), its watermark recorded in the catalog's meta so any replica
replays what a crashed writer committed. A vector id's vector never changes (a new
embedding gets a new id), so writes are inserts that skip present ids: replaying is
idempotent.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from tqdm.auto import tqdm

from lookalike.catalog.base import Catalog, ProductFilter
from lookalike.catalog.filters import filter_sql
from lookalike.catalog.sql.dialects import POSTGRES
from lookalike.config import Settings
from lookalike.errors import ConfigError, IndexError_, IndexMismatch
from lookalike.index.base import IndexCapabilities, IndexMeta
from lookalike.index.factory import register_index
from lookalike.index.live import LiveIndex, rebuild_from_catalog
from lookalike.index.shared import CachedCount, CatalogRecord
from lookalike.redact import redact_url

SCHEME = "pgvector://"
CATALOG_SCHEMES = ("postgresql", "postgres")
# Iterative index scans (0.8.0) keep filtered result lists full.
MIN_VERSION = (0, 8, 0)
MAX_EF_SEARCH = 1000  # pgvector's bound on hnsw.ef_search
MAX_HNSW_DIM = 2000  # pgvector's bound on an HNSW index over `vector`
RECORD_PREFIX = "index:pgvector:"
LAYOUT_VERSION = 1
WRITE_BATCH = 2000
# Every process creating the extension takes this lock (any fixed number; "PGVE").
EXTENSION_LOCK = 0x50475645


@dataclass(frozen=True)
class PgvectorConfig:
    """The pgvector part of the settings, checked."""

    dsn: str  # the catalog's database, credentials included: never printed unredacted
    m: int
    ef_construction: int
    ef_search: int
    iterative_scan: str
    max_scan_tuples: int
    build_memory_mb: int
    pool_max: int
    connect_timeout_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> PgvectorConfig:
        if settings.index_url != SCHEME:
            raise ConfigError(
                f"LOOKALIKE_INDEX_URL={settings.index_url!r}: pgvector keeps the vectors in the "
                f"catalog's own database, so the URL is exactly {SCHEME!r} (a separate database "
                "could not join the products table that filters read)"
            )
        catalog = settings.catalog_url or ""
        if urlsplit(catalog).scheme.lower() not in CATALOG_SCHEMES:
            raise ConfigError(
                f"LOOKALIKE_INDEX_URL={SCHEME} keeps the vectors in the PostgreSQL catalog's "
                "database: set LOOKALIKE_CATALOG_URL=postgresql://user@host/db (the catalog is "
                f"{redact_url(settings.catalog_location)})"
            )
        if settings.pgvector_ef_construction < 2 * settings.pgvector_m:
            raise ConfigError(
                f"pgvector_ef_construction={settings.pgvector_ef_construction} must be at "
                f"least 2 x pgvector_m={settings.pgvector_m}"
            )
        return cls(
            dsn=catalog,
            m=settings.pgvector_m,
            ef_construction=settings.pgvector_ef_construction,
            ef_search=settings.pgvector_ef_search,
            iterative_scan=settings.pgvector_iterative_scan,
            max_scan_tuples=settings.pgvector_max_scan_tuples,
            build_memory_mb=settings.pgvector_build_memory_mb,
            # The searches of a process run in parallel over these; writes take one more.
            pool_max=max(2, settings.postgres_pool_max),
            connect_timeout_s=settings.postgres_connect_timeout_s,
        )


def table_name(model_id: str, dim: int) -> str:
    """One table per (model, dimension): readable, and unique by a digest of both."""
    slug = re.sub(r"[^a-z0-9]+", "_", model_id.lower()).strip("_")[:20]
    digest = hashlib.sha256(f"{model_id}\0{dim}".encode()).hexdigest()[:10]
    # Only [a-z0-9_], at most 55 characters (PostgreSQL keeps 63): safe to put in SQL as is.
    return f"lookalike_vectors_{slug}_{dim}_{digest}"


class PgvectorIndex:
    """VectorIndex on a pgvector table beside the catalog (see the module docstring)."""

    kind = "pgvector"
    shared = True
    # `search(allowed_ids=...)` scores exactly those ids, in the database.
    capabilities = IndexCapabilities(shared=True, filter_pushdown=True, exact_filtered=True)

    def __init__(self, meta: IndexMeta, config: PgvectorConfig, catalog: Catalog) -> None:
        if meta.dim > MAX_HNSW_DIM:
            raise ConfigError(f"pgvector's HNSW index takes up to {MAX_HNSW_DIM} dimensions")
        self.meta = meta
        self.config = config
        self.catalog = catalog
        self.table = table_name(meta.model_id or "", meta.dim)
        self.layout = {
            "version": LAYOUT_VERSION,
            "model_id": meta.model_id,
            "dim": meta.dim,
            "m": config.m,
            "ef_construction": config.ef_construction,
        }
        self.record = CatalogRecord(catalog, RECORD_PREFIX + self.table, self.layout)
        self.created = False
        self._count = CachedCount(self._count_rows)
        self.version = self._check_extension()
        meta.params = {
            "database": redact_url(config.dsn),
            "table": self.table,
            "pgvector": self.version,
            "m": config.m,
            "ef_construction": config.ef_construction,
            "ef_search": config.ef_search,
            "iterative_scan": config.iterative_scan,
            "max_scan_tuples": config.max_scan_tuples,
        }
        self._pool = self._open_pool()

    # --- connections ---------------------------------------------------------------------
    def _direct(self) -> Any:
        """One connection outside the pool (it reports why a server cannot be reached)."""
        import psycopg

        try:
            return psycopg.connect(
                self.config.dsn,
                autocommit=True,
                connect_timeout=max(1, round(self.config.connect_timeout_s)),
            )
        except psycopg.Error as exc:
            raise IndexError_(f"cannot reach {redact_url(self.config.dsn)}: {exc}") from exc

    def _check_extension(self) -> str:
        """The pgvector version of the database, creating the extension when it is missing."""
        import psycopg

        with self._direct() as conn, self._errors("check the pgvector extension"):
            installed = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
            if installed is None:
                if not conn.execute(
                    "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
                ).fetchone():
                    raise ConfigError(
                        f"the PostgreSQL server of {redact_url(self.config.dsn)} has no pgvector "
                        "extension: install it (e.g. the postgresql-NN-pgvector package, 0.8 or "
                        "newer)"
                    )
                try:
                    with conn.transaction():
                        # Replicas starting together create it once.
                        conn.execute("SELECT pg_advisory_xact_lock(%s)", (EXTENSION_LOCK,))
                        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                except psycopg.errors.InsufficientPrivilege as exc:
                    raise ConfigError(
                        "pgvector is not enabled in the catalog's database and this user may "
                        "not enable it: have a superuser run CREATE EXTENSION vector there"
                    ) from exc
                installed = conn.execute(
                    "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
                ).fetchone()
        version = str(installed[0])
        if _version_tuple(version) < MIN_VERSION:
            raise ConfigError(
                f"pgvector {version} in {redact_url(self.config.dsn)} is too old: 0.8.0 added the "
                "iterative index scans that keep filtered result lists full; upgrade the package "
                "and run ALTER EXTENSION vector UPDATE"
            )
        return version

    def _open_pool(self) -> Any:
        from psycopg_pool import ConnectionPool

        return ConnectionPool(
            self.config.dsn,
            min_size=1,
            max_size=self.config.pool_max,
            # Never prepared: a filter's plan must be made for its values (a selective one
            # is scored exactly, a broad one walks the graph); a generic plan cannot choose.
            kwargs={"autocommit": True, "prepare_threshold": None},
            configure=self._configure,
            timeout=self.config.connect_timeout_s,
            name="lookalike-pgvector",
            open=True,
        )

    def _configure(self, conn: Any) -> None:
        """Each new pooled connection: vectors as numpy arrays, this index's scan settings."""
        from pgvector.psycopg import register_vector

        register_vector(conn)
        conn.execute(
            "SELECT set_config('hnsw.ef_search', %s, false),"
            " set_config('hnsw.iterative_scan', %s, false),"
            " set_config('hnsw.max_scan_tuples', %s, false)",
            (
                str(self.config.ef_search),
                self.config.iterative_scan,
                str(self.config.max_scan_tuples),
            ),
        )

    @contextmanager
    def _connection(self, what: str) -> Iterator[Any]:
        """A pooled connection; database errors become IndexError_ (HTTP 503)."""
        from psycopg_pool import PoolTimeout

        try:
            # A pool that times out says so, not as a failed statement.
            with self._pool.connection() as conn, self._errors(what):
                yield conn
        except PoolTimeout as exc:
            raise IndexError_(
                f"no pgvector connection free or reachable at {redact_url(self.config.dsn)}"
            ) from exc

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        import psycopg

        try:
            yield
        except psycopg.Error as exc:
            raise IndexError_(f"pgvector: cannot {what} ({self.table}): {exc}") from exc

    # --- the table -----------------------------------------------------------------------
    def prepare(self, *, progress: bool = False) -> None:
        """Use the table if this catalog built it with this layout; else (re)create and fill
        it from the stored embeddings, then build its HNSW index. One process at a time: the
        others wait on a lock, then find it ready."""
        lock = int.from_bytes(hashlib.sha256(self.table.encode()).digest()[:8], "big", signed=True)
        # Closing the connection releases the lock, whatever happens in between.
        with self._direct() as conn, self._errors("open the table"):
            conn.execute("SELECT pg_advisory_lock(%s)", (lock,))
            self.created = self._open_table(conn)
            if self.created:
                rebuild_from_catalog(self, self.catalog, progress=progress)
            # Also after a crash between filling and indexing.
            self._build_hnsw(conn, progress=progress)
            if self.created:
                self.record.write(self.meta.watermark)

    def _open_table(self, conn: Any) -> bool:
        """Returns whether the table was created (and so needs filling)."""
        exists = conn.execute("SELECT to_regclass(%s)", (self.table,)).fetchone()[0] is not None
        watermark = self.record.adopt(
            f"pgvector table {self.table}", exists, foreign="drop it, or use another database"
        )
        if watermark is not None:
            self.meta.watermark = watermark
            return False
        if exists:
            conn.execute(f"DROP TABLE {self.table}")
        # The record first: a crash before the table exists leaves a record whose table is
        # missing, which the next open creates and fills.
        self.meta.watermark = 0
        self.record.write(0)
        conn.execute(
            f"CREATE TABLE {self.table} (vector_id bigint PRIMARY KEY,"
            f" embedding vector({self.meta.dim}) NOT NULL)"
        )
        return True

    def _build_hnsw(self, conn: Any, *, progress: bool) -> None:
        """The HNSW index, when it is missing (built after a fill: many times faster)."""
        name = f"{self.table}_hnsw"
        if conn.execute("SELECT to_regclass(%s)", (name,)).fetchone()[0] is not None:
            return
        conn.execute(f"SET maintenance_work_mem = '{int(self.config.build_memory_mb)}MB'")
        rows = len(self) if progress else 0
        with _build_progress(self.config.dsn, conn.info.backend_pid, rows, enabled=progress):
            conn.execute(
                f"CREATE INDEX {name} ON {self.table} USING hnsw (embedding vector_ip_ops)"
                f" WITH (m = {int(self.config.m)}, ef_construction = "
                f"{int(self.config.ef_construction)})"
            )
        conn.execute("RESET maintenance_work_mem")
        conn.execute(f"ANALYZE {self.table}")

    def load_watermark(self) -> int:
        """The watermark every writer shares (recorded in the catalog)."""
        return self.record.watermark()

    # --- protocol ------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._count()

    def _count_rows(self) -> int:
        with self._connection("count the vectors") as conn:
            return int(conn.execute(f"SELECT count(*) FROM {self.table}").fetchone()[0])

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert vectors under ids not yet present (a present id holds the same vector)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not len(ids):
            return
        if vectors.shape != (len(ids), self.meta.dim):
            raise IndexMismatch(
                f"vectors of shape {vectors.shape} do not fit ids {len(ids)} x dim {self.meta.dim}"
            )
        with self._connection("write vectors") as conn:
            # %b: vectors sent binary (as text they cost ~30x more to send and parse).
            for start in range(0, len(ids), WRITE_BATCH):
                end = start + WRITE_BATCH
                conn.execute(
                    f"INSERT INTO {self.table} (vector_id, embedding)"
                    " SELECT * FROM unnest(%s::bigint[], %b::vector[])"
                    " ON CONFLICT (vector_id) DO NOTHING",
                    (ids[start:end].tolist(), list(vectors[start:end])),
                )
        self._count.clear()

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        with self._connection("delete vectors") as conn:
            removed = conn.execute(
                f"DELETE FROM {self.table} WHERE vector_id = ANY(%s::bigint[])", (ids.tolist(),)
            ).rowcount
        self._count.clear()
        return int(removed)

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k by the HNSW index; with `allowed_ids`, exactly those ids scored."""
        if allowed_ids is None:
            return self._complete(queries, k, "", [])
        queries = np.atleast_2d(queries)
        if len(allowed_ids) == 0:
            return _empty(len(queries), k)
        condition = "WHERE v.vector_id = ANY(%s::bigint[])"
        return self._run(queries, k, condition, [np.asarray(allowed_ids).tolist()], exact=True)

    def supports_filter(self, product_filter: ProductFilter) -> bool:
        """Always: the products table the catalog filters is joined in the same statement."""
        return True

    def search_filtered(
        self, queries: np.ndarray, k: int, product_filter: ProductFilter
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k among vectors whose products match the filter, in one SQL statement."""
        return self._complete(queries, k, *filter_condition(product_filter))

    def _complete(
        self, queries: np.ndarray, k: int, condition: str, params: list[Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        """ANN by the HNSW index; a query whose list came back short (its iterative scan
        hit `max_scan_tuples`, or fewer match) is searched exactly instead."""
        queries = np.atleast_2d(queries)
        scores, ids = self._run(queries, k, condition, params, exact=False)
        short = np.flatnonzero((ids >= 0).sum(axis=1) < k)
        if len(short):
            scores[short], ids[short] = self._run(queries[short], k, condition, params, exact=True)
        return scores, ids

    def _run(
        self, queries: np.ndarray, k: int, condition: str, params: list[Any], *, exact: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        """Every query in one statement (a lateral join over the query vectors)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        scores, ids = _empty(len(queries), k)
        if k <= 0 or not len(queries):
            return scores, ids
        sql = search_sql(self.table, condition, exact=exact)
        values = (list(queries), *params, k)
        # A graph search looks at k candidates at least before its iterative part.
        ef_search = min(MAX_EF_SEARCH, max(self.config.ef_search, k))
        with self._connection("search") as conn:
            if ef_search == self.config.ef_search:
                rows = conn.execute(sql, values).fetchall()
            else:
                with conn.transaction():
                    conn.execute("SELECT set_config('hnsw.ef_search', %s, true)", (str(ef_search),))
                    rows = conn.execute(sql, values).fetchall()
        if not rows:
            return scores, ids
        row = np.fromiter((r[0] - 1 for r in rows), dtype=np.int64, count=len(rows))
        vid = np.fromiter((r[1] for r in rows), dtype=np.int64, count=len(rows))
        distance = np.fromiter((r[2] for r in rows), dtype=np.float64, count=len(rows))
        # Relaxed iterative scans return rows nearly in order: sort each query's rows.
        order = np.lexsort((distance, row))
        row, vid, distance = row[order], vid[order], distance[order]
        col = np.arange(len(row)) - np.searchsorted(row, row)  # rank within its query
        ids[row, col] = vid
        scores[row, col] = -distance  # `<#>` is the negative inner product
        return scores, ids

    def save(self) -> None:
        """Record the watermark in the catalog (the vectors are already in the table)."""
        self.record.advance(self.meta.watermark)

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "vectors": len(self),
            "dim": self.meta.dim,
            "params": self.meta.params,
            "watermark": self.meta.watermark,
        }

    def close(self) -> None:
        self._pool.close()


def filter_condition(product_filter: ProductFilter) -> tuple[str, list[Any]]:
    """(condition, parameters) for `search_sql`: the catalog's products joined, and the
    filter as the catalog renders it (so both select exactly the same products)."""
    where, params = filter_sql(product_filter, POSTGRES)
    # Only the products table has the columns the filter names (category, brand, ...).
    return f"JOIN products p ON p.vector_id = v.vector_id WHERE {where}", params


def search_sql(table: str, condition: str = "", *, exact: bool = False) -> str:
    """The statement of a search: for each query vector (parameter 1, `vector[]`), its
    nearest rows of `table` (alias `v`) under `condition` (its parameters next), at most
    k of them (the last parameter); rows `(query number from 1, vector_id, distance)`.
    The query vectors go binary (%b): as text they cost more than the search."""
    scored = f"SELECT v.vector_id, v.embedding <#> q.v AS distance FROM {table} v"
    if exact:
        # OFFSET 0 keeps the subquery whole, so the sort cannot be served by the index.
        nearest = f"SELECT * FROM ({scored} {condition} OFFSET 0) s ORDER BY distance"
    else:
        nearest = f"{scored} {condition} ORDER BY v.embedding <#> q.v"
    return (
        "SELECT q.n, r.vector_id, r.distance FROM unnest(%b::vector[]) WITH ORDINALITY"
        f" AS q(v, n) CROSS JOIN LATERAL ({nearest} LIMIT %s) r"
    )


def _empty(queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    k = max(k, 0)
    return np.full((queries, k), -np.inf, dtype=np.float32), np.full((queries, k), -1, np.int64)


def _version_tuple(version: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", version)[:3])


@contextmanager
def _build_progress(dsn: str, backend_pid: int, rows: int, *, enabled: bool) -> Iterator[None]:
    """A progress bar over an index build of `rows` vectors, read from
    pg_stat_progress_create_index (pgvector counts the vectors it has inserted)."""
    if not enabled:
        yield
        return
    import psycopg

    done = threading.Event()

    def watch() -> None:
        with (
            psycopg.connect(dsn, autocommit=True) as conn,
            tqdm(desc="pgvector HNSW build", unit="vec", total=rows) as bar,
        ):
            while not done.wait(0.5):
                row = conn.execute(
                    "SELECT tuples_done FROM pg_stat_progress_create_index WHERE pid = %s",
                    (backend_pid,),
                ).fetchone()
                if row:
                    bar.update(int(row[0]) - bar.n)
            bar.update(rows - bar.n)

    watcher = threading.Thread(target=watch, name="pgvector-build-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        done.set()
        watcher.join(timeout=5)


# --- registration ------------------------------------------------------------------------
def open_pgvector(
    settings: Settings, catalog: Catalog, dim: int, model_id: str, progress: bool
) -> LiveIndex:
    """The pgvector table: created and filled from stored embeddings when new, then the log
    replayed from the watermark all writers share."""
    try:
        import pgvector.psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        raise ConfigError(
            f"LOOKALIKE_INDEX_URL={SCHEME} needs `pip install lookalike[pgvector]` ({exc})"
        ) from exc
    config = PgvectorConfig.from_settings(settings)
    index = PgvectorIndex(IndexMeta("pgvector", dim, model_id), config, catalog)
    index.prepare(progress=progress)
    live = LiveIndex(index, catalog, save_interval_s=settings.index_save_interval_s)
    live.apply_writes()
    return live


def describe_pgvector(settings: Settings) -> dict[str, Any]:
    """The configured pgvector index, without connecting."""
    return {
        "type": "pgvector",
        "params": {
            "database": redact_url(settings.catalog_url or ""),
            "m": settings.pgvector_m,
            "ef_construction": settings.pgvector_ef_construction,
            "ef_search": settings.pgvector_ef_search,
            "iterative_scan": settings.pgvector_iterative_scan,
        },
    }


register_index("pgvector", "pgvector")((open_pgvector, describe_pgvector))
