"""The Catalog protocol once, for every SQL database: statements written over a Dialect.

A backend subclasses `SQLCatalog` and brings only what is its own: how it hands out
connections (`_reading`), how it opens a writing transaction that appends to the change
log in commit order (`_writing`), and how it numbers new log entries (`_number_entries`).
"""

from __future__ import annotations

import itertools
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import asdict
from functools import cache
from typing import Any, ClassVar

import numpy as np

from lookalike.catalog.base import (
    CatalogCapabilities,
    CatalogStats,
    Product,
    ProductFilter,
    ProductWrite,
    VectorChanges,
    WriteOutcome,
    now,
)
from lookalike.catalog.changes import (
    OP_REMOVE,
    PlannedRow,
    net_changes,
    plan_upsert,
    resolve_versions,
)
from lookalike.catalog.filters import filter_sql
from lookalike.catalog.keys import ApiKey
from lookalike.catalog.logs import (
    ClickRecord,
    DayTotals,
    LoggedEvent,
    LoggedHit,
    LoggedSearch,
    SearchRecord,
)
from lookalike.catalog.rankers import RankerPromotion, StoredRanker
from lookalike.catalog.rows import (
    METADATA_COLUMNS,
    PRODUCT_COLUMNS,
    dump_attributes,
    product_from_row,
)
from lookalike.catalog.sql.dialects import Dialect
from lookalike.catalog.sql.hashes import HashStore
from lookalike.errors import CatalogError, InvalidInput, NotFound
from lookalike.redact import redact_url


class SQLCatalog(HashStore, ABC):
    """Products, embeddings, the change log, meta, image hashes and the search logs in SQL
    tables."""

    backend: ClassVar[str]
    dialect: ClassVar[Dialect]
    capabilities: ClassVar[CatalogCapabilities]
    url: str
    schema: str  # the newest applied migration

    # --- what a backend provides -------------------------------------------------------
    @abstractmethod
    def _reading(self) -> AbstractContextManager[Any]:
        """A connection for reads (database errors become typed errors)."""

    @abstractmethod
    def _writing(self, *, vector_log: bool = True) -> AbstractContextManager[Any]:
        """A transaction; with `vector_log`, one whose change-log appends commit in order."""

    @abstractmethod
    def _number_entries(self, conn: Any, count: int) -> list[int]:
        """Sequence numbers for `count` new change-log entries, ascending (inside
        `_writing()`: no other writer numbers entries before this one commits)."""

    @abstractmethod
    def close(self) -> None: ...

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "url": redact_url(self.url),
            "schema": self.schema,
            "capabilities": asdict(self.capabilities),
        }

    # --- writes ------------------------------------------------------------------------
    def upsert(self, writes: Sequence[ProductWrite]) -> WriteOutcome:
        if not writes:
            return WriteOutcome()
        stamp = now()
        ids = list(dict.fromkeys(w.product.id for w in writes))
        with self._writing() as conn:
            stored = {
                pid: (vector_id, created)
                for pid, vector_id, created in self._where_in(
                    conn, "SELECT id, vector_id, created_at FROM products", "id", ids
                )
            }
            accepted, stale = resolve_versions(self._current_versions(conn, ids), writes)
            if accepted:
                plan = plan_upsert(stored, accepted, stamp)
                seqs = self._number_entries(conn, len(plan.entries))
                entries = [
                    (s, e.resolve(seqs), e.op) for s, e in zip(seqs, plan.entries, strict=True)
                ]
                self._append_log(conn, entries, stamp)
                # Runs of one kind in write order: a product written twice must end as its
                # last write.
                for with_vector, run in itertools.groupby(
                    plan.rows, key=lambda row: row.vector_entry is not None
                ):
                    self.dialect.executemany(
                        conn,
                        _upsert_sql(self.dialect, with_vector),
                        [_row_params(row, seqs, stamp) for row in run],
                    )
                self._write_hashes(conn, plan.rows, seqs)
                # Written again: the product's delete is history now.
                written = list(dict.fromkeys(w.product.id for w in accepted))
                self._where_in(conn, "DELETE FROM product_tombstones", "id", written, fetch=False)
                self._bump_version(conn)
        changed = tuple(dict.fromkeys(w.product.id for w in accepted))
        return WriteOutcome(changed, tuple(dict.fromkeys(stale)))

    def delete(self, product_ids: Sequence[str]) -> int:
        return len(self.delete_versions(dict.fromkeys(product_ids)).changed)

    def delete_versions(self, versions: Mapping[str, int | None]) -> WriteOutcome:
        ids = list(versions)
        if not ids:
            return WriteOutcome()
        stamp = now()
        p = self.dialect.param
        with self._writing() as conn:
            # SELECT, then DELETE: no RETURNING, which SQLite before 3.35 lacks.
            rows = dict(self._where_in(conn, "SELECT id, vector_id FROM products", "id", ids))
            current = self._current_versions(conn, ids)
            gone: list[str] = []
            stale: list[str] = []
            tombstones: list[tuple[str, int, float]] = []
            for pid, version in versions.items():
                stored = current.get(pid)
                if version is None:
                    if pid not in rows:
                        continue  # nothing to delete, and no version to remember
                    version = (stored or 0) + 1
                elif stored is not None and version <= stored:
                    stale.append(pid)
                    continue
                tombstones.append((pid, version, stamp))
                if pid in rows:
                    gone.append(pid)
            if gone:
                self._where_in(conn, "DELETE FROM products", "id", gone, fetch=False)
                self._delete_hashes(conn, gone)
                removed = [int(rows[pid]) for pid in gone if rows[pid] is not None]
                seqs = self._number_entries(conn, len(removed))
                entries = [(s, v, OP_REMOVE) for s, v in zip(seqs, removed, strict=True)]
                self._append_log(conn, entries, stamp)
                self._bump_version(conn)
            if tombstones:
                self.dialect.executemany(
                    conn,
                    "INSERT INTO product_tombstones (id, version, deleted_at)"
                    f" VALUES ({p}, {p}, {p}) ON CONFLICT (id) DO UPDATE"
                    " SET version = excluded.version, deleted_at = excluded.deleted_at",
                    tombstones,
                )
        return WriteOutcome(tuple(gone), tuple(stale))

    def _current_versions(self, conn: Any, ids: Sequence[str]) -> dict[str, int]:
        """Each id's version: its row's, else its tombstone's (none: never seen)."""
        versions = {
            pid: int(version)
            for pid, version in self._where_in(
                conn, "SELECT id, version FROM product_tombstones", "id", ids
            )
        }
        for pid, version in self._where_in(conn, "SELECT id, version FROM products", "id", ids):
            versions[pid] = max(int(version), versions.get(pid, 0))
        return versions

    def set_meta(self, key: str, value: str) -> None:
        p = self.dialect.param
        with self._writing(vector_log=False) as conn:
            self.dialect.execute(
                conn,
                f"INSERT INTO meta (key, value) VALUES ({p}, {p})"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def _append_log(self, conn: Any, entries: list[tuple[int, int, int]], stamp: float) -> None:
        if entries:
            p = self.dialect.param
            self.dialect.executemany(
                conn,
                "INSERT INTO vector_log (seq, vector_id, op, committed_at)"
                f" VALUES ({p}, {p}, {p}, {p})",
                [(*entry, stamp) for entry in entries],
            )

    def _bump_version(self, conn: Any) -> None:
        """Inside the writing transaction: readers of `version()` see it with the data."""
        self.dialect.execute(conn, "UPDATE catalog_version SET version = version + 1 WHERE id = 1")

    # --- reads -------------------------------------------------------------------------
    def get(self, product_id: str) -> Product:
        found = self.get_many([product_id])
        if product_id not in found:
            raise NotFound(f"product {product_id!r}")
        return found[product_id]

    def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]:
        with self._reading() as conn:
            rows = self._where_in(
                conn, f"SELECT {PRODUCT_COLUMNS} FROM products", "id", product_ids
            )
        return {row[0]: product_from_row(row) for row in rows}

    def by_vector_ids(self, vector_ids: Sequence[int]) -> dict[int, Product]:
        with self._reading() as conn:
            rows = self._where_in(
                conn,
                f"SELECT {PRODUCT_COLUMNS} FROM products",
                "vector_id",
                [int(v) for v in vector_ids],
                sql_type="bigint",
            )
        return {int(row[9]): product_from_row(row) for row in rows}

    def embedding(self, product_id: str) -> tuple[int, np.ndarray]:
        p = self.dialect.param
        row = self._row(
            f"SELECT vector_id, embedding FROM products WHERE id = {p}", (product_id,), binary=True
        )
        if row is None or row[1] is None:
            raise NotFound(f"product {product_id!r}" + (" has no embedding" if row else ""))
        return int(row[0]), np.frombuffer(row[1], dtype=np.float32).copy()

    def embeddings_by_vector_ids(
        self, vector_ids: Sequence[int], model_id: str | None = None
    ) -> dict[int, np.ndarray]:
        model_sql, model_params = self._model_clause(model_id)
        with self._reading() as conn:
            rows = self._where_in(
                conn,
                "SELECT vector_id, embedding FROM products",
                "vector_id",
                [int(v) for v in vector_ids],
                model_sql,
                model_params,
                sql_type="bigint",
                binary=True,
            )
        return {int(vid): np.frombuffer(blob, dtype=np.float32) for vid, blob in rows}

    def log_head(self) -> int:
        return int(self._row("SELECT COALESCE(MAX(seq), 0) FROM vector_log")[0])

    def version(self) -> int:
        return int(self._row("SELECT version FROM catalog_version WHERE id = 1")[0])

    def changes_since(
        self, seq: int, limit: int = 100_000, model_id: str | None = None
    ) -> VectorChanges:
        p = self.dialect.param
        rows = self._rows(
            "SELECT seq, vector_id, op, committed_at FROM vector_log"
            f" WHERE seq > {p} ORDER BY seq LIMIT {p}",
            (seq, limit),
        )
        changes = net_changes(
            [row[:3] for row in rows], seq, lambda ids: self.embeddings_by_vector_ids(ids, model_id)
        )
        times = {float(row[3]) for row in rows if row[3] is not None}
        changes.commit_times = np.asarray(sorted(times), dtype=np.float64)
        return changes

    def versions(self, product_ids: Sequence[str]) -> dict[str, int]:
        with self._reading() as conn:
            return self._current_versions(conn, list(dict.fromkeys(product_ids)))

    def commit_times(self, seqs: Sequence[int]) -> dict[int, float]:
        with self._reading() as conn:
            rows = self._where_in(
                conn,
                "SELECT seq, committed_at FROM vector_log",
                "seq",
                [int(s) for s in seqs],
                " AND committed_at IS NOT NULL",
                sql_type="bigint",
            )
        return {int(seq): float(at) for seq, at in rows}

    def iter_embeddings(
        self, batch_size: int = 10_000, model_id: str | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        p = self.dialect.param
        model_sql, model_params = self._model_clause(model_id)
        last = -1
        while True:
            rows = self._rows(
                f"SELECT vector_id, embedding FROM products WHERE vector_id > {p}{model_sql}"
                f" ORDER BY vector_id LIMIT {p}",
                (last, *model_params, batch_size),
                binary=True,
            )
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield ids, np.stack([np.frombuffer(r[1], dtype=np.float32) for r in rows])
            last = int(ids[-1])

    def iter_products(self, batch_size: int = 1_000) -> Iterator[Product]:
        p = self.dialect.param
        last = 0
        while True:
            rows = self._rows(
                f"SELECT pk, {PRODUCT_COLUMNS} FROM products WHERE pk > {p} ORDER BY pk LIMIT {p}",
                (last, batch_size),
            )
            if not rows:
                return
            yield from (product_from_row(row[1:]) for row in rows)
            last = rows[-1][0]

    def filter_vector_ids(self, product_filter: ProductFilter) -> np.ndarray:
        # Sorted here, not by ORDER BY: SQLite would walk the vector_id index (every row,
        # embeddings included) to avoid a sort instead of using the filter's own index.
        rows = self._searchable("vector_id", product_filter)
        return np.sort(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)))

    def count_matching(self, product_filter: ProductFilter) -> int:
        return int(self._searchable("COUNT(*)", product_filter)[0][0])

    def _searchable(self, select: str, product_filter: ProductFilter) -> list[tuple]:
        """`select` over the searchable products the filter matches (covering indexes
        answer both uses without reading the wide rows)."""
        where, params = filter_sql(product_filter, self.dialect)
        return self._rows(
            f"SELECT {select} FROM products WHERE vector_id IS NOT NULL AND {where}", params
        )

    def facets(self, limit: int = 50) -> dict[str, Any]:
        p, order = self.dialect.param, self.dialect.byte_order
        out: dict[str, Any] = {}
        with self._reading() as conn:
            for column in ("category", "brand"):
                out[column] = [
                    {"value": value, "count": int(count)}
                    for value, count in self.dialect.execute(
                        conn,
                        f"SELECT {column}, COUNT(*) AS n FROM products WHERE {column} IS NOT NULL"
                        f" GROUP BY {column} ORDER BY n DESC, {column}{order} LIMIT {p}",
                        (limit,),
                    ).fetchall()
                ]
            low, high = self.dialect.execute(
                conn, "SELECT MIN(price), MAX(price) FROM products"
            ).fetchone()
        out["price"] = {"min": low, "max": high}
        return out

    def stats(self) -> CatalogStats:
        with self._reading() as conn:
            total, searchable, last = self.dialect.execute(
                conn, "SELECT COUNT(*), COUNT(vector_id), MAX(updated_at) FROM products"
            ).fetchone()
            models = dict(
                self.dialect.execute(
                    conn,
                    "SELECT model_id, COUNT(*) FROM products WHERE vector_id IS NOT NULL"
                    " GROUP BY model_id",
                ).fetchall()
            )
        return CatalogStats(int(total), int(searchable), models, last, self.log_head())

    def get_meta(self, key: str) -> str | None:
        row = self._row(f"SELECT value FROM meta WHERE key = {self.dialect.param}", (key,))
        return row[0] if row else None

    def image_sources(self, content_hashes: Sequence[str]) -> set[str]:
        with self._reading() as conn:
            rows = self._where_in(
                conn,
                "SELECT DISTINCT image_source FROM products",
                "content_hash",
                list(content_hashes),
                " AND image_source IS NOT NULL",
            )
        return {source for (source,) in rows}

    # --- search and click logs ---------------------------------------------------------
    def write_search_logs(
        self, searches: Sequence[SearchRecord], clicks: Sequence[ClickRecord]
    ) -> None:
        if not (searches or clicks):
            return
        p, j = self.dialect.param, self.dialect.json_param
        with self._writing(vector_log=False) as conn:
            if searches:
                self.dialect.executemany(
                    conn,
                    "INSERT INTO search_log (search_id, ts, query_type, result_count,"
                    " total_found, latency_ms, product_ids, categories, session_hash, ranker,"
                    " model_id, arm, explored, feature_names)"
                    f" VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {j}, {j},"
                    f" {p}, {p}, {p}, {p}, {p}, {j})"
                    " ON CONFLICT (search_id) DO NOTHING",
                    [_search_params(s) for s in searches],
                )
                hits = [row for s in searches for row in _hit_params(s)]
                if hits:
                    self.dialect.executemany(
                        conn,
                        "INSERT INTO search_log_hits (search_id, position, product_id,"
                        f" similarity, features) VALUES ({p}, {p}, {p}, {p}, {j})"
                        " ON CONFLICT (search_id, position) DO NOTHING",
                        hits,
                    )
            if clicks:
                self.dialect.executemany(
                    conn,
                    "INSERT INTO click_log (search_id, product_id, position, ts, kind)"
                    f" VALUES ({p}, {p}, {p}, {p}, {p})",
                    [(c.search_id, c.product_id, c.position, c.ts, c.kind) for c in clicks],
                )

    def logged_searches(
        self,
        since_ts: float,
        until_ts: float,
        *,
        with_hits: bool = True,
        with_events_only: bool = False,
    ) -> list[LoggedSearch]:
        p = self.dialect.param
        window = (since_ts, until_ts)
        evented = (
            " AND EXISTS (SELECT 1 FROM click_log c WHERE c.search_id = search_log.search_id)"
            if with_events_only
            else ""
        )
        with self._reading() as conn:
            searches = self.dialect.execute(
                conn,
                "SELECT search_id, ts, query_type, result_count, session_hash, ranker, arm,"
                " explored, feature_names FROM search_log"
                f" WHERE ts >= {p} AND ts < {p}{evented} ORDER BY ts, search_id",
                window,
            ).fetchall()
            hits: dict[str, list[LoggedHit]] = {}
            if with_hits:
                for sid, position, pid, similarity, features in self.dialect.execute(
                    conn,
                    "SELECT h.search_id, h.position, h.product_id, h.similarity, h.features"
                    " FROM search_log_hits h JOIN search_log s ON s.search_id = h.search_id"
                    f" WHERE s.ts >= {p} AND s.ts < {p} ORDER BY h.search_id, h.position",
                    window,
                ).fetchall():
                    values = tuple(float(v) for v in (_json(features) or ()))
                    hits.setdefault(sid, []).append(
                        LoggedHit(int(position), pid, float(similarity), values)
                    )
            # Events join the hits by product: the position is the logged one, whatever
            # the client said (0 when the product was not among the logged hits).
            events: dict[str, list[LoggedEvent]] = {}
            for sid, pid, kind, ts, position in self.dialect.execute(
                conn,
                "SELECT c.search_id, c.product_id, c.kind, c.ts, COALESCE(h.position, 0)"
                " FROM click_log c JOIN search_log s ON s.search_id = c.search_id"
                " LEFT JOIN search_log_hits h"
                " ON h.search_id = c.search_id AND h.product_id = c.product_id"
                f" WHERE s.ts >= {p} AND s.ts < {p} ORDER BY c.search_id, c.ts, c.pk",
                window,
            ).fetchall():
                events.setdefault(sid, []).append(LoggedEvent(pid, int(position), kind, float(ts)))
        return [
            LoggedSearch(
                search_id=sid,
                ts=float(ts),
                query_type=query_type,
                result_count=int(count),
                session=session,
                ranker=ranker,
                arm=arm,
                explored=int(explored or 0),
                feature_names=tuple(_json(names) or ()),
                hits=tuple(hits.get(sid, ())),
                events=tuple(events.get(sid, ())),
            )
            for sid, ts, query_type, count, session, ranker, arm, explored, names in searches
        ]

    def erase_session(self, session: str) -> int:
        p = self.dialect.param
        of_session = f"search_id IN (SELECT search_id FROM search_log WHERE session_hash = {p})"
        with self._writing(vector_log=False) as conn:
            for table in ("click_log", "search_log_hits"):
                self.dialect.execute(conn, f"DELETE FROM {table} WHERE {of_session}", (session,))
            cursor = self.dialect.execute(
                conn, f"DELETE FROM search_log WHERE session_hash = {p}", (session,)
            )
            return max(int(cursor.rowcount), 0)

    # --- learned ranker models -----------------------------------------------------------
    def save_ranker(self, version: str, manifest: dict[str, Any], model: str) -> None:
        p, j = self.dialect.param, self.dialect.json_param
        with self._writing(vector_log=False) as conn:
            found = self.dialect.execute(
                conn, f"SELECT model FROM ranker_models WHERE version = {p}", (version,)
            ).fetchone()
            if found is not None:
                if found[0] != model:
                    raise CatalogError(f"ranker model {version!r} exists with other content")
                return
            self.dialect.execute(
                conn,
                "INSERT INTO ranker_models (version, created_at, manifest, model)"
                f" VALUES ({p}, {p}, {j}, {p})",
                (version, now(), json.dumps(manifest), model),
            )

    def ranker(self, version: str) -> StoredRanker:
        p = self.dialect.param
        row = self._row(
            f"SELECT version, created_at, manifest, model FROM ranker_models WHERE version = {p}",
            (version,),
        )
        if row is None:
            raise NotFound(f"ranker model {version!r}")
        return StoredRanker(row[0], float(row[1]), _json(row[2]) or {}, row[3])

    def rankers(self) -> list[StoredRanker]:
        rows = self._rows(
            "SELECT version, created_at, manifest FROM ranker_models"
            " ORDER BY created_at DESC, version DESC"
        )
        return [StoredRanker(v, float(t), _json(m) or {}, "") for v, t, m in rows]

    def ranker_promotions(self) -> list[RankerPromotion]:
        rows = self._rows(
            "SELECT version, promoted_at, rolled_back_at FROM ranker_promotions ORDER BY seq"
        )
        return [RankerPromotion(v, float(t), None if r is None else float(r)) for v, t, r in rows]

    def promoted_ranker(self) -> str | None:
        row = self._row(
            "SELECT version FROM ranker_promotions WHERE rolled_back_at IS NULL"
            " ORDER BY seq DESC LIMIT 1"
        )
        return None if row is None else row[0]

    def promote_ranker(self, version: str) -> None:
        p = self.dialect.param
        with self._writing(vector_log=False) as conn:
            known = self.dialect.execute(
                conn, f"SELECT 1 FROM ranker_models WHERE version = {p}", (version,)
            ).fetchone()
            if known is None:
                raise NotFound(f"ranker model {version!r}")
            self.dialect.execute(
                conn,
                f"INSERT INTO ranker_promotions (version, promoted_at) VALUES ({p}, {p})",
                (version, now()),
            )

    def rollback_ranker(self) -> str | None:
        p = self.dialect.param
        with self._writing(vector_log=False) as conn:
            current = self.dialect.execute(
                conn,
                "SELECT seq FROM ranker_promotions WHERE rolled_back_at IS NULL"
                " ORDER BY seq DESC LIMIT 1",
            ).fetchone()
            if current is None:
                raise NotFound("a promoted ranker model to roll back")
            self.dialect.execute(
                conn,
                f"UPDATE ranker_promotions SET rolled_back_at = {p} WHERE seq = {p}",
                (now(), current[0]),
            )
            row = self.dialect.execute(
                conn,
                "SELECT version FROM ranker_promotions WHERE rolled_back_at IS NULL"
                " ORDER BY seq DESC LIMIT 1",
            ).fetchone()
        return None if row is None else row[0]

    def daily_search_totals(self, since_ts: float) -> list[DayTotals]:
        rows = self._rows(_daily_totals_sql(self.dialect), (since_ts,))
        # PostgreSQL sums to `numeric`: Decimals, made plain numbers here.
        return [
            DayTotals(
                str(r[0]),
                int(r[1]),
                int(r[2]),
                int(r[3]),
                float(r[4]),
                float(r[5]),
                int(r[6]),
                int(r[7]),
            )
            for r in rows
        ]

    def search_results(self, search_id: str) -> tuple[str, ...] | None:
        p = self.dialect.param
        row = self._row(f"SELECT product_ids FROM search_log WHERE search_id = {p}", (search_id,))
        if row is None:
            return None
        ids = json.loads(row[0]) if isinstance(row[0], (str, bytes)) else row[0]
        return tuple(ids)

    def prune_search_logs(self, before_ts: float) -> tuple[int, int]:
        # In batches, each its own short transaction: a months-old backlog never holds the
        # database's write lock for long (SQLite has one writer at a time). A search's shown
        # hits (and their features) go with it, in the same transaction.
        p = self.dialect.param
        counts = []
        for table, key, with_it in (
            ("search_log", "search_id", ("search_log_hits",)),
            ("click_log", "pk", ()),
        ):
            batch = (
                f"SELECT {key} FROM {table} WHERE ts < {p} ORDER BY ts, {key} LIMIT {PRUNE_BATCH}"
            )
            total = 0
            while True:
                with self._writing(vector_log=False) as conn:
                    for dependent in with_it:
                        self.dialect.execute(
                            conn,
                            f"DELETE FROM {dependent} WHERE {key} IN ({batch})",
                            (before_ts,),
                        )
                    cursor = self.dialect.execute(
                        conn, f"DELETE FROM {table} WHERE {key} IN ({batch})", (before_ts,)
                    )
                    deleted = max(cursor.rowcount, 0)
                total += deleted
                if deleted < PRUNE_BATCH:
                    break
            counts.append(total)
        return counts[0], counts[1]

    # --- API keys ----------------------------------------------------------------------
    def add_api_key(self, key: ApiKey) -> None:
        p = self.dialect.param
        with self._writing(vector_log=False) as conn:
            added = self.dialect.execute(
                conn,
                "INSERT INTO api_keys (name, digest, scope, created_at, last_used_at)"
                f" VALUES ({p}, {p}, {p}, {p}, {p}) ON CONFLICT (name) DO NOTHING",
                (key.name, key.digest, key.scope, key.created_at, key.last_used_at),
            ).rowcount
        if not added:
            raise InvalidInput(f"a key named {key.name!r} exists: revoke it or pick another name")

    def api_key(self, digest: str) -> ApiKey | None:
        row = self._row(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE digest = {self.dialect.param}", (digest,)
        )
        return _api_key(row) if row else None

    def api_keys(self) -> list[ApiKey]:
        return [
            _api_key(row)
            for row in self._rows(
                f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY name{self.dialect.byte_order}"
            )
        ]

    def revoke_api_key(self, name: str) -> bool:
        p = self.dialect.param
        with self._writing(vector_log=False) as conn:
            gone = self.dialect.execute(conn, f"DELETE FROM api_keys WHERE name = {p}", (name,))
            return gone.rowcount > 0

    def touch_api_key(self, digest: str, when: float) -> None:
        p = self.dialect.param
        with self._writing(vector_log=False) as conn:
            self.dialect.execute(
                conn, f"UPDATE api_keys SET last_used_at = {p} WHERE digest = {p}", (when, digest)
            )

    # --- helpers -----------------------------------------------------------------------
    def _rows(self, sql: str, params: Sequence[Any] = (), *, binary: bool = False) -> list[tuple]:
        with self._reading() as conn:
            return self.dialect.execute(conn, sql, params, binary=binary).fetchall()

    def _row(self, sql: str, params: Sequence[Any] = (), *, binary: bool = False) -> tuple | None:
        with self._reading() as conn:
            return self.dialect.execute(conn, sql, params, binary=binary).fetchone()

    def _where_in(
        self,
        conn: Any,
        statement: str,
        column: str,
        values: Sequence[Any],
        more_sql: str = "",
        more_params: Sequence[Any] = (),
        *,
        sql_type: str = "text",
        binary: bool = False,
        fetch: bool = True,
    ) -> list[tuple]:
        """Rows of `statement WHERE column IN values more_sql`, the list bound in chunks
        the dialect can take (`fetch=False` for a statement that returns none)."""
        rows: list[tuple] = []
        for chunk in self.dialect.chunks(values):
            clause, params = self.dialect.column_in(column, chunk, sql_type)
            cursor = self.dialect.execute(
                conn,
                f"{statement} WHERE {clause}{more_sql}",
                [*params, *more_params],
                binary=binary,
            )
            if fetch:
                rows.extend(cursor.fetchall())
        return rows

    def _model_clause(self, model_id: str | None) -> tuple[str, list[str]]:
        if model_id is None:
            return "", []
        return f" AND model_id = {self.dialect.param}", [model_id]


PRUNE_BATCH = 5_000  # log rows one pruning transaction deletes

_INSERTED = (
    "id, title, category, brand, price, image_source, attributes, content_hash, model_id, version"
)


@cache
def _upsert_sql(dialect: Dialect, with_vector: bool) -> str:
    """Insert a product, or update it: metadata only, or its vector too."""
    p, j = dialect.param, dialect.json_param
    values = [p] * 6 + [j, p, p, p]
    columns, updated = _INSERTED, [*METADATA_COLUMNS, "version"]
    if with_vector:
        columns += ", vector_id, embedding"
        values += [p, p]
        updated += ["content_hash", "model_id", "vector_id", "embedding"]
    columns += ", created_at, updated_at"
    values += [p, p]
    updated.append("updated_at")
    return (
        f"INSERT INTO products ({columns}) VALUES ({', '.join(values)})"
        f" ON CONFLICT (id) DO UPDATE SET {', '.join(f'{c} = excluded.{c}' for c in updated)}"
    )


def _row_params(row: PlannedRow, seqs: Sequence[int], stamp: float) -> tuple:
    p = row.write.product
    head = (
        p.id,
        p.title,
        p.category,
        p.brand,
        _price(p.price),
        p.image_source,
        dump_attributes(p.attributes),
        p.content_hash,
        p.model_id,
        row.write.version,
    )
    if row.vector_entry is None:
        return (*head, row.created_at, stamp)
    embedding = np.ascontiguousarray(row.write.embedding, dtype=np.float32).tobytes()
    return (*head, seqs[row.vector_entry], embedding, row.created_at, stamp)


def _price(price: float | None) -> float | None:
    # SQLite stores NaN as NULL; every backend does, so filters agree.
    return None if price is None or (isinstance(price, float) and math.isnan(price)) else price


_KEY_COLUMNS = "name, scope, digest, created_at, last_used_at"


def _api_key(row: Sequence[Any]) -> ApiKey:
    name, scope, digest, created, used = row
    return ApiKey(name, scope, digest, float(created), None if used is None else float(used))


def _search_params(record: SearchRecord) -> tuple:
    return (
        record.search_id,
        record.ts,
        record.query_type,
        len(record.product_ids),
        record.total_found,
        record.latency_ms,
        json.dumps(list(record.product_ids)),
        json.dumps(list(record.categories)),
        record.session,
        record.ranker,
        record.model_id,
        record.arm,
        record.explored,
        json.dumps(list(record.feature_names)) if record.feature_names else None,
    )


def _hit_params(record: SearchRecord) -> list[tuple]:
    """Rows of search_log_hits: one per result whose similarity was logged."""
    if len(record.similarities) != len(record.product_ids):
        return []
    rows = []
    for position, (pid, similarity) in enumerate(
        zip(record.product_ids, record.similarities, strict=True), start=1
    ):
        features = record.features[position - 1] if record.features else None
        values = None if features is None else json.dumps([float(v) for v in features])
        rows.append((record.search_id, position, pid, float(similarity), values))
    return rows


def _json(value: Any) -> Any:
    """A JSON column's value: text in SQLite, already decoded by psycopg."""
    if isinstance(value, (str, bytes)):
        return json.loads(value) if value else None
    return value


@cache
def _daily_totals_sql(dialect: Dialect) -> str:
    categories = dialect.json_array_values("s.categories", "c")
    return f"""
        WITH first_click AS (
            SELECT search_id, MIN(position) AS position, COUNT(*) AS clicks
            FROM click_log GROUP BY search_id
        ),
        per_search AS (
            SELECT {dialect.utc_day("s.ts")} AS day, s.result_count, f.position,
                COALESCE(f.clicks, 0) AS clicks,
                (SELECT COUNT(DISTINCT c.value) FROM {categories}) AS distinct_categories,
                (SELECT COUNT(c.value) FROM {categories}) AS categorised
            FROM search_log s LEFT JOIN first_click f ON f.search_id = s.search_id
            WHERE s.ts >= {dialect.param}
        )
        SELECT day, COUNT(*), SUM(clicks), COUNT(position),
            COALESCE(SUM(1.0 / position), 0),
            COALESCE(SUM(CASE WHEN categorised > 0
                THEN 1.0 * distinct_categories / categorised END), 0),
            SUM(CASE WHEN categorised > 0 THEN 1 ELSE 0 END), SUM(result_count)
        FROM per_search GROUP BY day ORDER BY day
    """
