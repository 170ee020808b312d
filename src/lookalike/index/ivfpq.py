"""IVF-PQ index (FAISS IndexIVFPQ): compressed codes for catalogs of millions.

Vectors are assigned to one of `nlist` k-means cells and stored as `m` bytes of product
quantisation codes (64 bytes instead of 2 KB for 512-d). It needs training on a sample of
the catalog before vectors can be added; later vectors are added without retraining.
A query scans the `nprobe` nearest cells. The PQ scores are approximate, so the best
`rerank` x k candidates are re-scored exactly with the stored float vectors (the
catalog's) when a vector source is attached. Deletes are real (`remove_ids`). A filter
widens the scan in proportion to how few entries it keeps: a small filtered set ends up
scanning every cell, so its PQ ranking (then re-ranked) covers all its members.

Unit vectors are indexed under L2 (with precomputed tables, faster than PQ inner
product); for them ||q - x||^2 = 2 - 2 q.x, so scores convert back to inner products.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import faiss
import numpy as np

from lookalike.errors import IndexNotTrained
from lookalike.index.base import IndexCapabilities
from lookalike.index.exact_refine import exact_rerank
from lookalike.index.faiss_index import FaissIndex
from lookalike.index.gpu import train_ivf

# k-means wants ~40 points per centroid; PQ codebooks want 2^nbits centroids trained too.
POINTS_PER_CENTROID = 40
MAX_TRAINING = 256 * 1024


class IvfPqIndex(FaissIndex):
    kind = "ivfpq"
    # The id selector scans the probed lists for matching ids only, with nprobe widened by
    # 1/selectivity. Post-filtering an IVF-PQ result instead re-ranks thousands of
    # candidates that the filter then throws away (1M vectors, a 2% filter: recall@20 0.79
    # at 114 ms against 0.996 at 16 ms with the selector; benchmarks/ivfpq_filter.py).
    capabilities = IndexCapabilities(selector_scan=True)
    defaults: ClassVar[dict[str, Any]] = {
        "nlist": 1024,
        "m": 64,
        "nbits": 8,
        "nprobe": 32,
        "rerank": 4,
    }
    search_knobs = ("nprobe", "rerank")
    mmap_flags = faiss.IO_FLAG_MMAP  # the inverted lists, read-only, from the file

    def _build(self, dim: int, params: dict[str, Any]) -> Any:
        params["m"] = sub_quantizers(dim, int(params["m"]))
        quantizer = faiss.IndexFlatL2(dim)
        return faiss.IndexIVFPQ(
            quantizer, dim, int(params["nlist"]), params["m"], int(params["nbits"])
        )

    # --- training ------------------------------------------------------------------------
    @staticmethod
    def nlist_for(vectors: int) -> int:
        """About 2 x sqrt(n) cells (a power of two), few enough to train well."""
        target = 2 ** round(math.log2(max(2 * math.sqrt(max(vectors, 1)), 1)))
        return int(max(1, min(target, vectors // POINTS_PER_CENTROID, 65536)))

    @classmethod
    def min_vectors(cls, params: dict[str, Any]) -> int:
        """The smallest catalog this family can be trained on."""
        nbits = int(params.get("nbits", cls.defaults["nbits"]))
        return max(POINTS_PER_CENTROID * 2**nbits, 10_000)

    def training_size(self) -> int:
        nlist, nbits = int(self.meta.params["nlist"]), int(self.meta.params["nbits"])
        return min(POINTS_PER_CENTROID * max(nlist, 2**nbits), MAX_TRAINING)

    def train(self, sample: np.ndarray) -> None:
        """Train cells and codebooks on a sample of stored vectors."""
        sample = np.ascontiguousarray(sample, dtype=np.float32)
        if len(sample) < 2 ** int(self.meta.params["nbits"]):
            raise IndexNotTrained(
                f"IVF-PQ needs at least {2 ** int(self.meta.params['nbits'])} training "
                f"vectors, got {len(sample)}"
            )
        self._use_threads()
        with self._lock.write():
            train_ivf(self._index, sample)
            self.meta.params["trained_on"] = len(sample)

    # --- protocol ------------------------------------------------------------------------
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if not self.is_trained and len(ids):
            raise IndexNotTrained("IVF-PQ index must be trained before vectors are added")
        super().add(ids, vectors)

    def ids(self) -> np.ndarray:
        with self._lock.read():
            lists = faiss.extract_index_ivf(self._index).invlists
            parts = [np.zeros(0, dtype=np.int64)]
            for number in range(lists.nlist):
                size = lists.list_size(number)
                if size:
                    pointer = lists.get_ids(number)
                    parts.append(faiss.rev_swig_ptr(pointer, size).copy())
                    lists.release_ids(number, pointer)
        return np.sort(np.concatenate(parts))

    # --- search hooks --------------------------------------------------------------------
    @property
    def _reranks(self) -> bool:
        return self.vectors is not None and int(self.meta.params["rerank"]) > 1

    def _search_parameters(self, selector: Any, k: int, widen: float) -> Any:
        nlist = int(self.meta.params["nlist"])
        nprobe = min(math.ceil(int(self.meta.params["nprobe"]) * widen), nlist)
        params = faiss.SearchParametersIVF(nprobe=max(nprobe, 1))
        if selector is not None:
            params.sel = selector
        return params

    def _candidates(self, k: int) -> int:
        return k * int(self.meta.params["rerank"]) if self._reranks else k

    def _finish(
        self, queries: np.ndarray, scores: np.ndarray, ids: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        lookup = self.vectors
        if lookup is not None and self._reranks:
            return exact_rerank(queries, ids, lookup, k)
        similarity = np.where(ids >= 0, 1.0 - scores / 2.0, -np.inf).astype(np.float32)
        return similarity, ids

    @classmethod
    def estimate_bytes(cls, vectors: int, dim: int, params: dict[str, Any]) -> int:
        p = {**cls.defaults, **params}
        nlist, nbits = int(p["nlist"]), int(p["nbits"])
        m = sub_quantizers(dim, int(p["m"]))
        codes = vectors * (math.ceil(m * nbits / 8) + 8)  # codes + ids in the lists
        centroids = nlist * dim * 4 + 2**nbits * dim * 4
        # L2 residual search precomputes nlist x m x 2^nbits floats when under 2 GiB.
        table = nlist * m * 2**nbits * 4
        return int(codes + centroids + (table if table <= 2**31 else 0))


def sub_quantizers(dim: int, wanted: int) -> int:
    """The largest divisor of `dim` not above `wanted` (PQ splits dims evenly)."""
    for m in range(min(wanted, dim), 0, -1):
        if dim % m == 0:
            return m
    return 1
