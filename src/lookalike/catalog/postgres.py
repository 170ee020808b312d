"""PostgreSQL catalog: the SQLite catalog's behaviour, for several servers sharing one catalog.

psycopg 3 with a connection pool (autocommit; writes open explicit transactions). Every
write transaction that appends to the change log first takes
`LOCK TABLE vector_log IN EXCLUSIVE MODE`: a sequence alone does not give commit order (a
later `nextval` can commit first, and a reader tailing the log would skip the earlier one
for good), while under the lock a transaction allocates its sequence numbers and commits
before the next writer allocates any. Reads take no lock (EXCLUSIVE still admits plain
SELECTs); nor do writes of meta or search logs, which append nothing to the change log.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from lookalike.catalog.base import CatalogCapabilities
from lookalike.catalog.sql.core import SQLCatalog
from lookalike.catalog.sql.dialects import POSTGRES
from lookalike.catalog.sql.migrations import apply_migrations
from lookalike.errors import CatalogError, InvalidInput
from lookalike.redact import redact_url

_NEXT_SEQ = (
    "SELECT nextval(pg_get_serial_sequence('vector_log', 'seq')) FROM generate_series(1, %s)"
)


class PostgresCatalog(SQLCatalog):
    """The Catalog protocol on PostgreSQL (selected by `LOOKALIKE_CATALOG_URL=postgresql://`)."""

    backend = "postgresql"
    dialect = POSTGRES
    capabilities = CatalogCapabilities(shared_between_machines=True, concurrent_writers=True)

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
                self.schema = apply_migrations(conn, self.dialect)
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
    def _reading(self) -> Iterator[psycopg.Connection]:
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
    def _writing(self, *, vector_log: bool = True) -> Iterator[psycopg.Connection]:
        """A transaction; one that may append to the change log takes the log's lock first
        (see the module docstring)."""
        with self._reading() as conn, conn.transaction():
            if vector_log:
                conn.execute("LOCK TABLE vector_log IN EXCLUSIVE MODE")
            yield conn

    def _number_entries(self, conn: psycopg.Connection, count: int) -> list[int]:
        if not count:
            return []
        return sorted(int(r[0]) for r in conn.execute(_NEXT_SEQ, (count,)))

    def close(self) -> None:
        self._pool.close()
