"""FAISS on a GPU when there is one: never required, and every GPU step falls back to CPU.

The GPU speeds up the bulk work: IVF k-means training and the exact ground truth `tune`
measures recall against. Queries stay on the CPU indexes, whose id filters and tombstones
GPU indexes do not support.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import faiss
import numpy as np

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def gpu_count() -> int:
    """GPUs FAISS can use (0 with faiss-cpu)."""
    count = getattr(faiss, "get_num_gpus", None)
    try:
        return int(count()) if count is not None else 0
    except RuntimeError:
        return 0


@lru_cache(maxsize=1)
def _resources() -> Any:
    return faiss.StandardGpuResources()


def train_ivf(index: Any, sample: np.ndarray) -> None:
    """Train an IVF index, clustering on the GPU when one is there."""
    ivf = faiss.extract_index_ivf(index)
    on_gpu = False
    if gpu_count():
        try:
            ivf.clustering_index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatL2(ivf.d))
            on_gpu = True
        except (RuntimeError, AttributeError) as exc:
            log.warning("GPU clustering unavailable, training on the CPU: %s", exc)
    try:
        index.train(sample)
    finally:
        if on_gpu:
            ivf.clustering_index = None  # frees GPU memory; never saved with the index


def knn_inner_product(queries: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Exact top-k by inner product of `queries` against `base` (positions into base)."""
    k = min(k, len(base))
    if gpu_count():
        try:
            return faiss.knn_gpu(_resources(), queries, base, k, metric=faiss.METRIC_INNER_PRODUCT)
        except (RuntimeError, AttributeError) as exc:
            log.warning("GPU search unavailable, using the CPU: %s", exc)
    return faiss.knn(queries, base, k, metric=faiss.METRIC_INNER_PRODUCT)
