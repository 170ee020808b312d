"""Search and click logs in the catalog database (tables made by its migrations)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lookalike.catalog.base import Catalog
from lookalike.errors import CatalogError


@dataclass(frozen=True)
class SearchRecord:
    search_id: str
    ts: float
    query_type: str  # image, text, hybrid
    product_ids: tuple[str, ...]  # the results, best first
    categories: tuple[str | None, ...]  # their categories, for diversity
    total_found: int
    latency_ms: float


@dataclass(frozen=True)
class ClickRecord:
    search_id: str
    product_id: str
    position: int  # 1 = the first result
    ts: float


@dataclass(frozen=True)
class DayTotals:
    """Sums for one UTC day, from which rates are computed (and combined across days)."""

    day: str
    searches: int
    clicks: int
    clicked_searches: int
    reciprocal_rank_sum: float  # of each clicked search's first click
    diversity_sum: float  # distinct categories / results with one, per search
    diversity_searches: int
    results: int  # results shown, all searches together


class SQLiteQualityStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            try:
                conn = sqlite3.connect(
                    self.path, timeout=30, isolation_level=None, check_same_thread=False
                )
            except sqlite3.Error as exc:
                raise CatalogError(f"cannot open {self.path}: {exc}") from exc
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def add(self, searches: Sequence[SearchRecord], clicks: Sequence[ClickRecord]) -> None:
        """Write a batch in one transaction (a search logged twice is kept once)."""
        conn = self._conn()
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(
                "INSERT OR IGNORE INTO search_log (search_id, ts, query_type, result_count,"
                " total_found, latency_ms, product_ids, categories) VALUES (?,?,?,?,?,?,?,?)",
                [
                    (
                        s.search_id,
                        s.ts,
                        s.query_type,
                        len(s.product_ids),
                        s.total_found,
                        s.latency_ms,
                        json.dumps(list(s.product_ids)),
                        json.dumps(list(s.categories)),
                    )
                    for s in searches
                ],
            )
            conn.executemany(
                "INSERT INTO click_log (search_id, product_id, position, ts) VALUES (?,?,?,?)",
                [(c.search_id, c.product_id, c.position, c.ts) for c in clicks],
            )
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise CatalogError(f"cannot write search logs to {self.path}: {exc}") from exc

    def daily_totals(self, since_ts: float) -> list[DayTotals]:
        """Per UTC day since `since_ts`, oldest first."""
        rows = (
            self._conn()
            .execute(
                """
            WITH first_click AS (
                SELECT search_id, MIN(position) AS position, COUNT(*) AS clicks
                FROM click_log GROUP BY search_id
            ),
            per_search AS (
                SELECT date(s.ts, 'unixepoch') AS day, s.result_count, f.position,
                    COALESCE(f.clicks, 0) AS clicks,
                    (SELECT COUNT(DISTINCT value) FROM json_each(s.categories)
                        WHERE value IS NOT NULL) AS distinct_categories,
                    (SELECT COUNT(value) FROM json_each(s.categories)) AS categorised
                FROM search_log s LEFT JOIN first_click f ON f.search_id = s.search_id
                WHERE s.ts >= ?
            )
            SELECT day, COUNT(*), SUM(clicks), COUNT(position),
                COALESCE(SUM(1.0 / position), 0),
                COALESCE(SUM(CASE WHEN categorised > 0
                    THEN 1.0 * distinct_categories / categorised END), 0),
                SUM(categorised > 0), SUM(result_count)
            FROM per_search GROUP BY day ORDER BY day
            """,
                (since_ts,),
            )
            .fetchall()
        )
        return [DayTotals(*row) for row in rows]

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        self._local = threading.local()


def open_quality_store(catalog: Catalog) -> SQLiteQualityStore | None:
    """The logs live in the catalog's database; None where that is not SQLite (yet)."""
    from lookalike.catalog.sqlite import SQLiteCatalog

    if isinstance(catalog, SQLiteCatalog):
        return SQLiteQualityStore(catalog.path)
    return None
