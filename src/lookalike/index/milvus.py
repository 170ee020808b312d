"""Milvus vector store (pymilvus): a server, cluster or Zilliz Cloud by URI, or embedded
Milvus Lite by a local `.db` path.

A *shared* index: one collection that every replica reads and whoever writes the catalog
writes (through `LiveIndex.apply_writes`). Each row holds the vector id, the vector and the
product fields filters use (category, brand, price and the attributes declared in
`filterable_attributes`), so filters run inside Milvus as filter expressions.

Where the catalog's change log has been applied up to (the watermark) is recorded in the
catalog itself, beside a description of the collection's layout, so any replica can replay
what a crashed writer committed but never wrote. Writes are upserts by id, hence replaying
is idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from lookalike.catalog.base import Catalog, ProductFilter
from lookalike.config import Settings
from lookalike.errors import ConfigError, IndexError_, IndexMismatch, StoreLocked
from lookalike.index.base import IndexCapabilities, IndexMeta
from lookalike.index.milvus_filters import (
    ATTRIBUTES_FIELD,
    can_push_down,
    filter_expression,
    id_expression,
    product_fields,
)
from lookalike.index.shared import CachedCount, CatalogRecord
from lookalike.redact import redact_url

T = TypeVar("T")

SERVER_SCHEMES = ("http://", "https://", "tcp://", "unix:")
# What embedded Milvus Lite builds; IVF_PQ and DISKANN need a Milvus server.
LITE_INDEX_TYPES = frozenset({"AUTOINDEX", "FLAT", "IVF_FLAT", "IVF_SQ8", "HNSW"})
MAX_TOP_K = 16_384  # Milvus's limit per query
RECORD_PREFIX = "index:milvus:"
LAYOUT_VERSION = 1


@dataclass(frozen=True)
class MilvusConfig:
    """The Milvus part of the settings, checked."""

    uri: str
    token: str
    collection: str
    index_type: str
    build_overrides: dict[str, Any]
    search_overrides: dict[str, Any]
    consistency: str
    shards: int
    replicas: int
    write_batch: int
    filterable: tuple[str, ...]

    @property
    def is_lite(self) -> bool:
        return not self.uri.startswith(SERVER_SCHEMES)

    @classmethod
    def from_settings(cls, settings: Settings) -> MilvusConfig:
        uri = settings.index_url or ""
        if uri.startswith("milvus://"):  # our scheme for a Milvus server; pymilvus speaks http
            uri = "http://" + uri.removeprefix("milvus://")
        if not uri.startswith(SERVER_SCHEMES):
            if not uri.endswith(".db"):
                raise ConfigError(
                    f"LOOKALIKE_INDEX_URL={uri!r}: give a Milvus URI (http://host:19530) or a "
                    "local path ending in .db for embedded Milvus Lite"
                )
            path = Path(uri).expanduser().resolve()
            path.parent.mkdir(parents=True, exist_ok=True)
            uri = str(path)
            if settings.milvus_index_type not in LITE_INDEX_TYPES:
                raise ConfigError(
                    f"Milvus Lite cannot build {settings.milvus_index_type}; it builds "
                    f"{', '.join(sorted(LITE_INDEX_TYPES))}. IVF_PQ and DISKANN need a Milvus "
                    "server (LOOKALIKE_INDEX_URL=http://host:19530)"
                )
        return cls(
            uri=uri,
            token=settings.milvus_token.get_secret_value() if settings.milvus_token else "",
            collection=settings.milvus_collection,
            index_type=settings.milvus_index_type,
            build_overrides=dict(settings.milvus_index_params),
            search_overrides=dict(settings.milvus_search_params),
            consistency=settings.milvus_consistency,
            shards=settings.milvus_shards,
            replicas=settings.milvus_replicas,
            write_batch=settings.milvus_write_batch,
            filterable=tuple(sorted(set(settings.filterable_attributes))),
        )


def index_params(
    index_type: str,
    dim: int,
    build_overrides: dict[str, Any] | None = None,
    search_overrides: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(build, search) parameters for a Milvus index type: defaults, then overrides."""
    if index_type in ("IVF_FLAT", "IVF_SQ8", "IVF_PQ"):
        build: dict[str, Any] = {"nlist": 1024}
        search: dict[str, Any] = {"nprobe": 32}
        if index_type == "IVF_PQ":
            # 8 dimensions per sub-quantizer, one byte each: dim / 8 bytes a vector.
            build.update(m=_pq_subquantizers(dim), nbits=8)
    elif index_type == "HNSW":
        build, search = {"M": 16, "efConstruction": 200}, {"ef": 128}
    elif index_type == "DISKANN":
        build, search = {}, {"search_list": 100}
    elif index_type in ("FLAT", "AUTOINDEX"):
        build, search = {}, {}
    else:
        raise ConfigError(f"unknown Milvus index type {index_type!r}")
    build.update(build_overrides or {})
    search.update(search_overrides or {})
    if index_type == "IVF_PQ" and dim % int(build["m"]):
        raise ConfigError(f"IVF_PQ m={build['m']} must divide the dimension {dim}")
    return build, search


def _pq_subquantizers(dim: int) -> int:
    target = max(1, dim // 8)
    return max(m for m in range(1, target + 1) if dim % m == 0)


def search_params_for(index_type: str, search: dict[str, Any], k: int) -> dict[str, Any]:
    """Search parameters for one query of top-k (graph searches look at least k nodes)."""
    params = dict(search)
    if index_type == "HNSW":
        params["ef"] = max(int(params.get("ef", k)), k)
    elif index_type == "DISKANN":
        params["search_list"] = max(int(params.get("search_list", k)), k)
    return params


class MilvusIndex:
    """VectorIndex on a Milvus collection (see the module docstring)."""

    kind = "milvus"
    shared = True
    capabilities = IndexCapabilities(shared=True, filter_pushdown=True, max_k=MAX_TOP_K)

    def __init__(
        self, meta: IndexMeta, config: MilvusConfig, catalog: Catalog, client: Any = None
    ) -> None:
        self.meta = meta
        self.config = config
        self.catalog = catalog
        self.build_params, self.search_params = index_params(
            config.index_type, meta.dim, config.build_overrides, config.search_overrides
        )
        self.layout = {
            "version": LAYOUT_VERSION,
            "model_id": meta.model_id,
            "dim": meta.dim,
            "index_type": config.index_type,
            "build_params": self.build_params,
            "filterable": list(config.filterable),
        }
        meta.params = {
            "uri": redact_url(config.uri),
            "collection": config.collection,
            "index_type": config.index_type,
            "build": self.build_params,
            "search": self.search_params,
            "consistency": config.consistency,
            "filterable": ["category", "brand", "price", *config.filterable],
        }
        self.record = CatalogRecord(catalog, RECORD_PREFIX + config.collection, self.layout)
        self._client = client if client is not None else self._connect()
        self._count = CachedCount(self._count_rows)
        self.created = self._open_collection()

    # --- connection and collection -------------------------------------------------------
    def _connect(self) -> Any:
        from pymilvus import MilvusClient
        from pymilvus.exceptions import MilvusException

        try:
            return MilvusClient(uri=self.config.uri, token=self.config.token, timeout=30)
        except MilvusException as exc:
            if self.config.is_lite:
                raise StoreLocked(
                    f"cannot open Milvus Lite at {self.config.uri} ({exc.message}); a Lite file "
                    "serves one process: for several, run a Milvus server and set "
                    "LOOKALIKE_INDEX_URL=http://host:19530"
                ) from exc
            raise IndexError_(
                f"cannot reach Milvus at {redact_url(self.config.uri)}: {exc.message}"
            ) from exc

    def _open_collection(self) -> bool:
        """Use the collection if this catalog built it with this layout; otherwise (re)create
        it. Returns whether it was created (and so needs filling from the catalog)."""
        name = self.config.collection
        exists = self._call(self._client.has_collection, name)
        watermark = self.record.adopt(
            f"Milvus collection {name!r}",
            exists,
            foreign="set LOOKALIKE_MILVUS_COLLECTION to another name, or drop the collection",
        )
        if watermark is not None:
            self.meta.watermark = watermark
            load = {"replica_number": self.config.replicas} if self.config.replicas > 1 else {}
            self._call(self._client.load_collection, name, **load)
            return False
        if exists:
            self._call(self._client.drop_collection, name)
        # The record first: a crash before the collection exists leaves a record whose
        # collection is missing, which the next open creates and fills.
        self.meta.watermark = 0
        self.record.write(0)
        self._create_collection()
        return True

    def _create_collection(self) -> None:
        from pymilvus import DataType, MilvusClient

        schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.meta.dim)
        schema.add_field("category", DataType.VARCHAR, max_length=65_535, nullable=True)
        schema.add_field("brand", DataType.VARCHAR, max_length=65_535, nullable=True)
        schema.add_field("price", DataType.DOUBLE, nullable=True)
        schema.add_field(ATTRIBUTES_FIELD, DataType.JSON)
        params = self._client.prepare_index_params()
        params.add_index(
            field_name="vector",
            index_type=self.config.index_type,
            metric_type="IP",
            params=self.build_params,
        )
        self._call(
            self._client.create_collection,
            self.config.collection,
            schema=schema,
            index_params=params,
            consistency_level=self.config.consistency,
            num_shards=self.config.shards,
        )
        if self.config.replicas > 1:
            self._call(
                self._client.load_collection,
                self.config.collection,
                replica_number=self.config.replicas,
            )

    def load_watermark(self) -> int:
        """The watermark every writer shares (recorded in the catalog)."""
        return self.record.watermark()

    # --- protocol ------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._count()

    def _count_rows(self) -> int:
        result = self._call(
            self._client.query,
            self.config.collection,
            filter="",
            output_fields=["count(*)"],
            consistency_level=self.config.consistency,
        )
        return int(result[0]["count(*)"])

    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Upsert vectors with their products' current fields (present ids are replaced)."""
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if not len(ids):
            return
        if vectors.shape != (len(ids), self.meta.dim):
            raise IndexMismatch(
                f"vectors of shape {vectors.shape} do not fit ids {len(ids)} x dim {self.meta.dim}"
            )
        for start in range(0, len(ids), self.config.write_batch):
            end = start + self.config.write_batch
            self._upsert_current(ids[start:end].tolist(), vectors[start:end])
        self._count.clear()

    def _upsert_current(self, ids: list[int], vectors: np.ndarray) -> None:
        """Write rows with the product fields the catalog holds now. A product gone since
        its log entry is skipped: its remove entry comes later in the log."""
        current = self.catalog.by_vector_ids(ids)
        rows = [
            {"id": vid, "vector": vector, **product_fields(current[vid], self.config.filterable)}
            for vid, vector in zip(ids, vectors, strict=True)
            if vid in current
        ]
        if rows:
            self._call(self._client.upsert, self.config.collection, rows)

    def remove(self, ids: np.ndarray) -> int:
        ids = np.ascontiguousarray(ids, dtype=np.int64)
        if not len(ids):
            return 0
        self._delete(ids.tolist())
        self._count.clear()
        # Milvus deletes by key without saying which keys existed.
        return len(ids)

    def _delete(self, ids: Sequence[int]) -> None:
        for start in range(0, len(ids), self.config.write_batch):
            chunk = [int(i) for i in ids[start : start + self.config.write_batch]]
            self._call(self._client.delete, self.config.collection, ids=chunk)

    def search(
        self, queries: np.ndarray, k: int, *, allowed_ids: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        expression = ""
        if allowed_ids is not None:
            if len(allowed_ids) == 0:
                return _empty(len(np.atleast_2d(queries)), k)
            expression = id_expression(allowed_ids)
        return self._search(queries, k, expression)

    def supports_filter(self, product_filter: ProductFilter) -> bool:
        """Whether `search_filtered` can evaluate this filter inside Milvus."""
        return can_push_down(product_filter, self.config.filterable)

    def search_filtered(
        self, queries: np.ndarray, k: int, product_filter: ProductFilter
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k among vectors whose products match the filter, filtered inside Milvus
        (through the catalog's matching ids when the filter names an attribute not stored)."""
        if not self.supports_filter(product_filter):
            return self.search(
                queries, k, allowed_ids=self.catalog.filter_vector_ids(product_filter)
            )
        return self._search(queries, k, filter_expression(product_filter))

    def _search(
        self, queries: np.ndarray, k: int, expression: str
    ) -> tuple[np.ndarray, np.ndarray]:
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        scores, ids = _empty(len(queries), k)
        limit = min(k, MAX_TOP_K)
        if limit <= 0 or not len(queries):
            return scores, ids
        results = self._call(
            self._client.search,
            self.config.collection,
            data=list(queries),
            filter=expression,
            limit=limit,
            output_fields=["id"],
            search_params={
                "metric_type": "IP",
                "params": search_params_for(self.config.index_type, self.search_params, limit),
            },
            consistency_level=self.config.consistency,
        )
        for row, hits in enumerate(results):
            for col, hit in enumerate(hits[:limit]):
                ids[row, col] = int(hit["id"])
                scores[row, col] = float(hit["distance"])
        return scores, ids

    def save(self) -> None:
        """Record the watermark in the catalog (the vectors are already in Milvus)."""
        self.record.advance(self.meta.watermark)

    def flush(self) -> None:
        """Seal what was written, so Milvus indexes it (after a bulk fill, not per write)."""
        self._call(self._client.flush, self.config.collection)

    def describe(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "vectors": len(self),
            "dim": self.meta.dim,
            "params": self.meta.params,
            "watermark": self.meta.watermark,
        }

    def close(self) -> None:
        self._call(self._client.close)

    # --- errors --------------------------------------------------------------------------
    def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Milvus errors become IndexError_ (HTTP 503) with what Milvus said."""
        from pymilvus.exceptions import MilvusException

        try:
            return method(*args, **kwargs)
        except MilvusException as exc:
            raise IndexError_(
                f"Milvus {getattr(method, '__name__', 'call')} on {self.config.collection!r} "
                f"at {redact_url(self.config.uri)} failed: {exc.message}"
            ) from exc


def _empty(queries: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    k = max(k, 0)
    return np.full((queries, k), -np.inf, dtype=np.float32), np.full((queries, k), -1, np.int64)
