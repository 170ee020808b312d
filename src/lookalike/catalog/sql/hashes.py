"""Image hashes and near-duplicate groups (table `image_hashes`, migrations 0009-0010), for
every SQL backend. A row belongs to one embedding (`vector_id`): rows whose product has since
got another image are never returned, and the next write of that product replaces them."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from lookalike.catalog.base import HashRow, HashValues, Product
from lookalike.catalog.changes import PlannedRow
from lookalike.catalog.rows import PRODUCT_COLUMNS, product_from_row

_SIGN = 1 << 63
_PREFIXED = ", ".join(f"p.{column.strip()}" for column in PRODUCT_COLUMNS.split(","))
_MEMBERS = (
    "SELECT h.group_id, h.product_id FROM image_hashes h"
    " JOIN products p ON p.id = h.product_id AND p.vector_id = h.vector_id"
)
_CURRENT = (
    "SELECT h.product_id, h.vector_id, h.phash, h.phash_mirror, h.group_id, h.crop_hashes,"
    " h.thumbnail, h.aspect FROM image_hashes h"
    " JOIN products p ON p.id = h.product_id AND p.vector_id = h.vector_id"
)
_UPSERT_SET = (
    " ON CONFLICT (product_id) DO UPDATE SET vector_id = excluded.vector_id,"
    " phash = excluded.phash, phash_mirror = excluded.phash_mirror,"
    " crop_hashes = excluded.crop_hashes, thumbnail = excluded.thumbnail,"
    " aspect = excluded.aspect, group_id = NULL"
)


def to_signed(value: int) -> int:
    """An unsigned 64-bit hash as the signed BIGINT it is stored as."""
    return value - (1 << 64) if value >= _SIGN else value


def to_unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


def pack_hashes(values: Sequence[int]) -> bytes:
    """Unsigned 64-bit hashes as bytes, 8 each, most significant first."""
    return np.array(values, dtype=">u8").tobytes() if len(values) else b""


def unpack_hashes(data: bytes | memoryview | None) -> tuple[int, ...]:
    if not data:
        return ()
    return tuple(int(v) for v in np.frombuffer(bytes(data), dtype=">u8"))


def _stored(hashes: HashValues) -> tuple[int, int, bytes | None, bytes | None, float]:
    phash, mirror, crops, thumbnail, aspect = hashes
    # Without crops (crop detection off), NULLs: a later backfill with crops on finds them.
    return (
        to_signed(phash),
        to_signed(mirror),
        pack_hashes(crops) if crops else None,
        bytes(thumbnail) if thumbnail else None,
        aspect,
    )


def _row(raw: tuple) -> HashRow:
    return HashRow(
        str(raw[0]),
        int(raw[1]),
        to_unsigned(int(raw[2])),
        to_unsigned(int(raw[3])),
        raw[4],
        unpack_hashes(raw[5]),
        bytes(raw[6] or b""),
        float(raw[7]) if raw[7] is not None else 1.0,
    )


class HashStore:
    """Mixed into `SQLCatalog` (which provides the connections and `_where_in`)."""

    dialect: Any

    def _write_hashes(self, conn: Any, rows: Sequence[PlannedRow], seqs: Sequence[int]) -> None:
        """Inside an upsert: each new embedding's hashes replace the stored ones (or drop
        them when the write has none); the group is found again afterwards."""
        final: dict[str, tuple[int, HashValues | None]] = {}
        for row in rows:
            if row.vector_entry is not None:
                final[row.write.product.id] = (seqs[row.vector_entry], row.write.hashes)
        if not final:
            return
        p = self.dialect.param
        stored = [(pid, vid, *_stored(h)) for pid, (vid, h) in final.items() if h is not None]
        dropped = [pid for pid, (_, h) in final.items() if h is None]
        if stored:
            self.dialect.executemany(
                conn,
                "INSERT INTO image_hashes (product_id, vector_id, phash, phash_mirror,"
                " crop_hashes, thumbnail, aspect)"
                f" VALUES ({p}, {p}, {p}, {p}, {p}, {p}, {p})" + _UPSERT_SET,
                stored,
            )
        if dropped:
            self._where_in(conn, "DELETE FROM image_hashes", "product_id", dropped, fetch=False)

    def _delete_hashes(self, conn: Any, product_ids: Sequence[str]) -> None:
        self._where_in(conn, "DELETE FROM image_hashes", "product_id", product_ids, fetch=False)

    def image_hashes(
        self, *, after_vector_id: int = -1, product_ids: Sequence[str] | None = None
    ) -> list[HashRow]:
        with self._reading() as conn:
            if product_ids is not None:
                rows = self._where_in(conn, _CURRENT, "h.product_id", list(product_ids))
            else:
                rows = self.dialect.execute(
                    conn,
                    f"{_CURRENT} WHERE h.vector_id > {self.dialect.param} ORDER BY h.vector_id",
                    (after_vector_id,),
                ).fetchall()
        return [_row(raw) for raw in rows]

    def unhashed_products(
        self, limit: int = 1_000, after_vector_id: int = -1, *, crops: bool = False
    ) -> list[Product]:
        p = self.dialect.param
        missing = "h.product_id IS NULL OR h.thumbnail IS NULL" if crops else "h.product_id IS NULL"
        rows = self._rows(
            f"SELECT {_PREFIXED} FROM products p LEFT JOIN image_hashes h"
            " ON h.product_id = p.id AND h.vector_id = p.vector_id"
            f" WHERE p.vector_id > {p} AND ({missing})"
            f" ORDER BY p.vector_id LIMIT {p}",
            (after_vector_id, limit),
        )
        return [product_from_row(row) for row in rows]

    def set_image_hashes(self, rows: Sequence[tuple[str, int, HashValues]]) -> int:
        if not rows:
            return 0
        p = self.dialect.param
        stored = 0
        with self._writing(vector_log=False) as conn:
            for product_id, vector_id, hashes in rows:
                cursor = self.dialect.execute(
                    conn,
                    "INSERT INTO image_hashes (product_id, vector_id, phash, phash_mirror,"
                    " crop_hashes, thumbnail, aspect)"
                    f" SELECT id, vector_id, {p}, {p}, {p}, {p}, {p} FROM products"
                    f" WHERE id = {p} AND vector_id = {p}" + _UPSERT_SET,
                    (*_stored(hashes), product_id, vector_id),
                )
                stored += max(cursor.rowcount, 0)
        return stored

    def set_duplicate_groups(self, groups: Mapping[str, str | None]) -> None:
        if not groups:
            return
        p = self.dialect.param
        with self._writing(vector_log=False) as conn:
            self.dialect.executemany(
                conn,
                f"UPDATE image_hashes SET group_id = {p} WHERE product_id = {p}",
                [(group, pid) for pid, group in groups.items()],
            )
            # Collapsed search results change with the groups: result caches key on this.
            self._bump_version(conn)

    def group_members(self, group_ids: Sequence[str]) -> dict[str, list[str]]:
        if not group_ids:
            return {}
        with self._reading() as conn:
            rows = self._where_in(conn, _MEMBERS, "h.group_id", list(dict.fromkeys(group_ids)))
        members: dict[str, list[str]] = {}
        for group_id, product_id in rows:
            members.setdefault(group_id, []).append(product_id)
        return {group: sorted(ids) for group, ids in members.items()}
