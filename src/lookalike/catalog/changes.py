"""The vector change log's entries and how a stretch of them folds into index operations.

Shared by every SQL backend: each stores rows of (seq, vector_id, op) and hands them here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import numpy as np

from lookalike.catalog.base import VectorChanges

OP_ADD = 1  # a new embedding under a fresh vector id
OP_REMOVE = -1  # the embedding was replaced or its product deleted
# The product's metadata changed, its vector did not. Indexes that keep filterable
# attributes beside the vectors (a vector database) re-read them; FAISS ignores it.
OP_METADATA = 0

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
