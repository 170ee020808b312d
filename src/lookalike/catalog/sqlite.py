"""SQLite catalog (WAL): the embedded default. Many readers, one writer at a time, any process.

What is SQLite's own: a connection per thread with its pragmas, a process-wide write lock
in front of `BEGIN IMMEDIATE` (which serialises writers across processes, so log sequence
numbers follow commit order), and log numbers taken from the AUTOINCREMENT counter.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from lookalike.catalog.base import CatalogCapabilities
from lookalike.catalog.sql.core import SQLCatalog
from lookalike.catalog.sql.dialects import SQLITE
from lookalike.catalog.sql.migrations import apply_migrations
from lookalike.errors import CatalogError

# The AUTOINCREMENT counter (the largest sequence number ever handed out, even of entries
# gone since), or the newest entry where the counter has no row yet.
_LAST_SEQ = (
    "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = 'vector_log'), 0),"
    " COALESCE((SELECT MAX(seq) FROM vector_log), 0))"
)


_PRAGMAS = ("PRAGMA journal_mode=WAL", "PRAGMA synchronous=NORMAL", "PRAGMA foreign_keys=ON")
_PRAGMA_PATIENCE_S = 30.0


def _set_pragmas(conn: sqlite3.Connection) -> None:
    """Switching a new file to WAL needs its exclusive lock. Two connections doing that at
    once (replicas opening a fresh catalog together) can get "database is locked" at once:
    SQLite skips the busy handler where waiting could deadlock. Try again for a while."""
    deadline = time.monotonic() + _PRAGMA_PATIENCE_S
    pause = 0.005
    while True:
        try:
            for pragma in _PRAGMAS:
                conn.execute(pragma)
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


class SQLiteCatalog(SQLCatalog):
    """The Catalog protocol in one SQLite file (`sqlite:///path`, the default)."""

    backend = "sqlite"
    dialect = SQLITE
    capabilities = CatalogCapabilities(shared_between_machines=False, concurrent_writers=True)

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._connections_lock = threading.Lock()
        with self._write_lock, self._errors():
            self.schema = apply_migrations(self._conn(), self.dialect)

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
            _set_pragmas(conn)
            self._local.conn = conn
            with self._connections_lock:
                self._connections.append(conn)
        return conn

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise CatalogError(f"catalog {self.path}: {exc}") from exc

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        with self._errors():
            yield self._conn()

    @contextmanager
    def _writing(self, *, vector_log: bool = True) -> Iterator[sqlite3.Connection]:
        # One writer per process at a time: threads wait here, not in SQLite's busy loop.
        with self._write_lock, self._errors(), self.dialect.transaction(self._conn()) as conn:
            yield conn

    def _number_entries(self, conn: sqlite3.Connection, count: int) -> list[int]:
        if not count:
            return []
        last = int(conn.execute(_LAST_SEQ).fetchone()[0])
        # Inserting them moves the counter past them, as AUTOINCREMENT would.
        return list(range(last + 1, last + 1 + count))

    def close(self) -> None:
        with self._connections_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()
