"""The vector change log: which entries a batch of writes appends (`plan_upsert`), and how
a stretch of entries folds into index operations (`net_changes`); which writes of a batch
are new enough to apply (`resolve_versions`).

Both are pure functions shared by every backend: a backend reads the stored state, asks for
the plan, numbers its entries (its own way, in commit order) and writes what it says.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from lookalike.catalog.base import ProductWrite, VectorChanges

OP_ADD = 1  # a new embedding under a fresh vector id
OP_REMOVE = -1  # the embedding was replaced or its product deleted
# The product's metadata changed, its vector did not. Indexes that keep filterable
# attributes beside the vectors (a vector database) re-read them; FAISS ignores it.
OP_METADATA = 0


@dataclass(frozen=True)
class PlannedEntry:
    """One change-log entry. Its vector is a stored one (`vector_id`), or the one the add
    entry at index `added_by` of the same plan creates (an add names itself): that id is
    the add entry's own sequence number, known only once the backend numbers the entries."""

    op: int
    vector_id: int | None = None
    added_by: int | None = None

    def resolve(self, seqs: Sequence[int]) -> int:
        """The vector id, given the sequence numbers of the plan's entries."""
        return int(self.vector_id) if self.added_by is None else int(seqs[self.added_by])


@dataclass(frozen=True)
class PlannedRow:
    """One product row to write: with a new vector (the add entry at `vector_entry`), or
    metadata only (`vector_entry` None: the stored vector, if any, stays)."""

    write: ProductWrite
    created_at: float
    vector_entry: int | None


@dataclass(frozen=True)
class UpsertPlan:
    entries: tuple[PlannedEntry, ...]  # in the order they must be appended
    rows: tuple[PlannedRow, ...]  # in the order of the writes


def plan_upsert(
    stored: Mapping[str, tuple[int | None, float]], writes: Sequence[ProductWrite], stamp: float
) -> UpsertPlan:
    """The log entries and product rows of a batch of upserts.

    `stored`: (vector_id, created_at) of the written ids that exist now. Writes apply in
    order, so a product written twice in one batch sees its first write: a new embedding
    removes the vector before it (stored or just added), a metadata change of an embedded
    product is logged against its current vector, and `created_at` stays the first one.
    """
    # id -> (its vector: a stored id or this plan's add entry, or None; created_at)
    state: dict[str, tuple[_Vector | None, float]] = {
        pid: (None if vid is None else _Vector(int(vid), None), created)
        for pid, (vid, created) in stored.items()
    }
    entries: list[PlannedEntry] = []
    rows: list[PlannedRow] = []
    for write in writes:
        vector, created = state.get(write.product.id, (None, stamp))
        if write.embedding is None:
            if vector is not None:
                entries.append(PlannedEntry(OP_METADATA, *vector))
            rows.append(PlannedRow(write, created, None))
            continue
        if vector is not None:
            entries.append(PlannedEntry(OP_REMOVE, *vector))
        added = len(entries)
        entries.append(PlannedEntry(OP_ADD, added_by=added))
        rows.append(PlannedRow(write, created, added))
        state[write.product.id] = (_Vector(None, added), created)
    return UpsertPlan(tuple(entries), tuple(rows))


def resolve_versions(
    current: Mapping[str, int], writes: Sequence[ProductWrite]
) -> tuple[list[ProductWrite], list[str]]:
    """(the writes to apply, each with the version it gives its product; the ids of those
    refused as stale). `current`: the stored version of each written product that exists
    or was deleted. Writes apply in order: a product written twice in one batch is
    compared with its first write the second time."""
    versions = dict(current)
    accepted: list[ProductWrite] = []
    stale: list[str] = []
    for write in writes:
        pid = write.product.id
        stored = versions.get(pid)
        if write.version is None:
            version = (stored or 0) + 1  # an unversioned write: the next version
        elif stored is not None and write.version <= stored:
            stale.append(pid)
            continue
        else:
            version = write.version
        versions[pid] = version
        accepted.append(dataclasses.replace(write, version=version))
    return accepted, stale


class _Vector(NamedTuple):
    vector_id: int | None
    added_by: int | None


EmbeddingFetcher = Callable[[Sequence[int]], dict[int, np.ndarray]]


def net_changes(
    ops: Iterable[tuple[int, int, int]], after: int, fetch_embeddings: EmbeddingFetcher
) -> VectorChanges:
    """Fold log entries (seq, vector_id, op) after `after` into removes, adds and updates."""
    last_op: dict[int, int] = {}
    touched: dict[int, None] = {}  # an ordered set
    head = after
    for seq, vector_id, op in ops:
        head = int(seq)
        if int(op) == OP_METADATA:
            touched[int(vector_id)] = None
        else:
            last_op[int(vector_id)] = int(op)
    removes = [vid for vid, op in last_op.items() if op < 0]
    wanted = [vid for vid, op in last_op.items() if op > 0]
    # An add in this stretch already carries the latest metadata.
    refresh = [vid for vid in touched if vid not in last_op]
    found = fetch_embeddings(wanted + refresh) if wanted or refresh else {}
    add_ids = [vid for vid in wanted if vid in found]
    # An add whose row has since been replaced or deleted is followed by a remove later on.
    removes.extend(vid for vid in wanted if vid not in found)
    update_ids = [vid for vid in refresh if vid in found]
    return VectorChanges(
        np.asarray(removes, dtype=np.int64),
        np.asarray(add_ids, dtype=np.int64),
        _stack(found, add_ids),
        head,
        update_ids=np.asarray(update_ids, dtype=np.int64),
        update_vectors=_stack(found, update_ids),
    )


def _stack(found: dict[int, np.ndarray], ids: list[int]) -> np.ndarray:
    if not ids:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([found[vid] for vid in ids]).astype(np.float32)
