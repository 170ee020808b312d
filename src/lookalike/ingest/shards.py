"""Embedding shards of a batch run and the run's resume state.

A shard is one Parquet file per completed block of `shard_size` manifest items: position,
id, what the run does with the item (encode / metadata / unchanged / failed), the product
record (JSON, with its content hash), the reason of a failure, and the embedding. Files are
written atomically and carry their own description (format, model, dimension, a digest of
the planned items), so a file is either complete and checked, or ignored.

The run directory holds `state.json` (which run this is), the shard files and, once a
shard is in the catalog, a small `.loaded` marker beside it. A run that stops part-way
resumes from these: loaded shards are counted, not redone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lookalike.catalog.base import Product
from lookalike.errors import StoreLocked
from lookalike.files.atomic import atomic_write
from lookalike.ingest.prepare import Prepared
from lookalike.ingest.sources import BadRow, ItemSpec

SHARD_FORMAT = 1
_META_KEY = b"lookalike"


# --- records as JSON (for shards, and for handing items to remote workers) ----------------
def product_to_json(product: Product | None) -> str:
    return "" if product is None else json.dumps(asdict(product), sort_keys=True, default=str)


def product_from_json(text: str) -> Product | None:
    return Product(**json.loads(text)) if text else None


def item_to_json(item: ItemSpec | BadRow) -> str:
    kind = "bad" if isinstance(item, BadRow) else "item"
    return json.dumps({kind: asdict(item)}, sort_keys=True, default=str)


def item_from_json(text: str) -> ItemSpec | BadRow:
    data = json.loads(text)
    return BadRow(**data["bad"]) if "bad" in data else ItemSpec(**data["item"])


def plan_digest(items: Sequence[ItemSpec | BadRow]) -> str:
    """Fingerprint of a shard's planned items: a resumed shard must hold the same ones."""
    digest = hashlib.sha256()
    for item in items:
        digest.update(item_to_json(item).encode())
        digest.update(b"\n")
    return digest.hexdigest()


# --- shard files ---------------------------------------------------------------------------
@dataclass
class ShardItem:
    """One item of a shard: its position in the shard, its outcome and its embedding."""

    pos: int
    prepared: Prepared
    embedding: np.ndarray | None = None


@dataclass(frozen=True)
class ShardInfo:
    """What a shard file must be to count as complete."""

    shard: int
    digest: str
    rows: int
    model_id: str
    dim: int


def write_shard(path: Path, info: ShardInfo, items: Sequence[ShardItem]) -> None:
    """Write the shard atomically (temp file, fsync, rename): complete or absent."""
    items = sorted(items, key=lambda it: it.pos)
    if len(items) != info.rows:
        raise ValueError(f"shard {info.shard} has {len(items)} items, planned {info.rows}")
    valid = np.array([it.embedding is not None for it in items], dtype=bool)
    values = np.zeros((len(items), info.dim), dtype=np.float32)
    for row, it in enumerate(items):
        if it.embedding is not None:
            values[row] = it.embedding
    embedding = pa.FixedSizeListArray.from_arrays(
        pa.array(values.reshape(-1)), info.dim, mask=pa.array(~valid)
    )
    failures = [it.prepared.failure for it in items]
    products = [it.prepared.product for it in items]
    table = pa.table(
        {
            "pos": pa.array([it.pos for it in items], pa.int64()),
            "id": [p.id if p else f.id for p, f in zip(products, failures, strict=True)],
            "action": [it.prepared.action for it in items],
            "existed": pa.array([it.prepared.existed for it in items], pa.bool_()),
            "product": [product_to_json(p) for p in products],
            "source": [f.source if f else None for f in failures],
            "reason": [f.reason if f else None for f in failures],
            "embedding": embedding,
        }
    )
    meta = {"format": SHARD_FORMAT, **asdict(info)}
    table = table.replace_schema_metadata({_META_KEY: json.dumps(meta).encode()})
    atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def read_shard(path: Path, expected: ShardInfo) -> list[ShardItem] | None:
    """The shard's items, or None when the file is missing or not the expected shard."""
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {}).get(_META_KEY, b"{}"))
    except (OSError, ValueError, pa.ArrowException):
        return None
    if meta != {"format": SHARD_FORMAT, **asdict(expected)} or table.num_rows != expected.rows:
        return None
    column = table.column("embedding").combine_chunks()
    valid = np.asarray(column.is_valid())
    vectors = column.values.to_numpy(zero_copy_only=False)
    vectors = vectors[column.offset * expected.dim :][: len(column) * expected.dim]
    vectors = vectors.reshape(len(column), expected.dim).astype(np.float32)
    items = []
    for row, record in enumerate(table.drop_columns(["embedding"]).to_pylist()):
        failure = (
            BadRow(record["id"], record["source"] or "", record["reason"] or "")
            if record["action"] == "failed"
            else None
        )
        prepared = Prepared(
            record["action"],
            product_from_json(record["product"]),
            failure=failure,
            existed=record["existed"],
        )
        items.append(ShardItem(record["pos"], prepared, vectors[row] if valid[row] else None))
    return items


# --- the run directory ---------------------------------------------------------------------
class RunState:
    """The batch run directory: which run it holds, its shards, which are in the catalog.

    One run at a time per directory (an exclusive lock); a run with another key, or a
    finished one, is cleared when a new run begins.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock_handle: Any = None

    def begin(self, key: dict[str, Any]) -> bool:
        """Take the run directory for the run `key`; True when it resumes an unfinished run."""
        self.directory.mkdir(parents=True, exist_ok=True)
        handle = open(self.directory / "lock", "w")  # noqa: SIM115 - held until finish/close
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            raise StoreLocked(
                f"another batch index run is using {self.directory}; wait for it to finish"
            ) from exc
        self._lock_handle = handle
        state = self._read_state()
        resuming = state.get("key") == key and state.get("status") == "running"
        if not resuming:
            self._clear()
            self._write_state({"format": SHARD_FORMAT, "key": key, "status": "running"})
        return resuming

    def shard_path(self, shard: int) -> Path:
        return self.directory / f"shard-{shard:06d}.parquet"

    def loaded(self, info: ShardInfo) -> bool:
        """Whether this exact shard (same planned items) is already in the catalog."""
        marker = self._marker(info.shard)
        try:
            return json.loads(marker.read_text()) == asdict(info)
        except (OSError, ValueError):
            return False

    def mark_loaded(self, info: ShardInfo) -> None:
        text = json.dumps(asdict(info), sort_keys=True)
        atomic_write(self._marker(info.shard), lambda tmp: Path(tmp).write_text(text))

    def finish(self) -> None:
        """Mark the run done (the next run starts afresh) and drop its shards."""
        state = self._read_state()
        self._write_state({**state, "status": "done"})
        self._clear()

    def close(self) -> None:
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    def _marker(self, shard: int) -> Path:
        return self.directory / f"shard-{shard:06d}.loaded"

    def _read_state(self) -> dict[str, Any]:
        try:
            return json.loads((self.directory / "state.json").read_text())
        except (OSError, ValueError):
            return {}

    def _write_state(self, state: dict[str, Any]) -> None:
        text = json.dumps(state, indent=2, sort_keys=True)
        atomic_write(self.directory / "state.json", lambda tmp: Path(tmp).write_text(text))

    def _clear(self) -> None:
        for path in [*self.directory.glob("shard-*"), *self.directory.glob(".shard-*.tmp")]:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
