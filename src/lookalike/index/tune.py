"""Tune search knobs to a recall target: the cheapest efSearch / nprobe that reaches it.

Queries are stored embeddings drawn from the catalog and held out of their own results
(the query's own entry is dropped from both the exact answer and the index's answer), so
recall is measured on the catalog's real neighbourhoods. The exact answer streams every
stored vector through a brute-force search (FAISS contrib `knn_ground_truth` style), on
the GPU when there is one. Knob values are tried from cheap to expensive; the first that
meets the target is kept and saved with the index.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import faiss
import numpy as np
from tqdm.auto import tqdm

from lookalike.catalog.base import Catalog, ProductFilter
from lookalike.errors import IndexError_
from lookalike.index.faiss_index import FaissIndex
from lookalike.index.gpu import knn_inner_product

log = logging.getLogger(__name__)

EF_LADDER = (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024, 1536, 2048, 4096)
NPROBE_LADDER = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 1024, 2048)
RERANK_LADDER = (1, 2, 4, 8, 16)
SATURATED = 0.002  # two knob steps in a row gaining less recall than this end a ladder


@dataclass
class TuneStep:
    params: dict[str, Any]
    recall: float
    qps: float  # queries per second of the whole held-out batch, all threads


@dataclass
class TuneReport:
    kind: str
    target: float
    k: int
    queries: int
    vectors: int
    chosen: dict[str, Any]
    recall: float
    met: bool
    steps: list[TuneStep] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def sample_queries(
    catalog: Catalog, model_id: str | None, count: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(vector ids, vectors) of up to `count` stored embeddings drawn at random."""
    ids = catalog.filter_vector_ids(ProductFilter())
    rng = np.random.default_rng(seed)
    picked = np.sort(rng.choice(ids, size=min(len(ids), count), replace=False))
    found = catalog.embeddings_by_vector_ids(picked, model_id)
    kept = np.fromiter((i for i in picked.tolist() if i in found), dtype=np.int64)
    vectors = (
        np.stack([found[int(i)] for i in kept]).astype(np.float32)
        if len(kept)
        else np.zeros((0, 0), np.float32)
    )
    return kept, vectors


def exact_neighbours(
    catalog: Catalog,
    model_id: str | None,
    queries: np.ndarray,
    k: int,
    *,
    block: int = 50_000,
    progress: bool = False,
) -> np.ndarray:
    """Exact top-k vector ids per query over every stored embedding, streamed in blocks."""
    heap = faiss.ResultHeap(len(queries), k, keep_max=True)
    total = catalog.stats().models.get(model_id, 0) if model_id else catalog.stats().searchable
    with tqdm(total=total, desc="exact search", unit="vec", disable=not progress) as bar:
        for ids, vectors in catalog.iter_embeddings(batch_size=block, model_id=model_id):
            scores, positions = knn_inner_product(queries, vectors, k)
            heap.add_result(scores, np.where(positions >= 0, ids[positions.clip(0)], -1))
            bar.update(len(ids))
    heap.finalize()
    return heap.I


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of each row of `truth` (ignoring -1) that `found` contains."""
    hits = total = 0
    for row_found, row_truth in zip(found, truth, strict=True):
        wanted = row_truth[row_truth >= 0]
        hits += int(np.isin(wanted, row_found).sum())
        total += len(wanted)
    return hits / total if total else 1.0


def _without_self(ids: np.ndarray, own: np.ndarray, k: int) -> np.ndarray:
    """Drop each query's own id from its row, keep k."""
    out = np.full((len(ids), k), -1, dtype=np.int64)
    for row, (found, self_id) in enumerate(zip(ids, own, strict=True)):
        kept = found[found != self_id][:k]
        out[row, : len(kept)] = kept
    return out


def ladders(index: FaissIndex, k: int) -> list[list[dict[str, Any]]]:
    """Knob settings from cheap to expensive, in groups; a group ends when recall saturates."""
    params = index.meta.params
    if index.kind == "hnsw":
        # efSearch below k is raised to k anyway: k itself is the cheapest setting.
        return [[{"ef_search": v} for v in (k, *(v for v in EF_LADDER if v > k))]]
    if index.kind == "ivfpq":
        nlist = int(params["nlist"])
        probes = [p for p in NPROBE_LADDER if p < nlist] + [nlist]
        current = int(params.get("rerank", 1))
        reranks = [r for r in RERANK_LADDER if r >= current] if index.vectors else [current]
        return [[{"nprobe": p, "rerank": r} for p in probes] for r in reranks]
    return []


def tune_index(
    index: FaissIndex,
    catalog: Catalog,
    *,
    target: float,
    queries: int = 200,
    k: int = 100,
    seed: int = 0,
    progress: bool = False,
) -> TuneReport:
    """Sweep the index's knobs, set the cheapest meeting `target` Recall@k, and return how."""
    query_ids, query_vectors = sample_queries(catalog, index.meta.model_id, queries, seed)
    if len(query_ids) < 2:
        raise IndexError_("tuning needs a catalog with at least two stored embeddings")
    truth = _without_self(
        exact_neighbours(catalog, index.meta.model_id, query_vectors, k + 1, progress=progress),
        query_ids,
        k,
    )
    report = TuneReport(index.kind, target, k, len(query_ids), len(index), {}, 1.0, True)
    groups = ladders(index, k)
    if not groups:  # exact search: nothing to tune
        return report
    original = {knob: index.meta.params[knob] for knob in index.search_knobs}
    best: TuneStep | None = None
    chosen: TuneStep | None = None
    for group in groups:
        previous, flat_steps = -1.0, 0
        for params in group:
            index.set_search_params(**params)
            started = time.perf_counter()
            _, ids = index.search(query_vectors, k + 1)
            elapsed = time.perf_counter() - started
            step = TuneStep(params, recall(_without_self(ids, query_ids, k), truth), 0.0)
            step.qps = len(query_ids) / max(elapsed, 1e-9)
            report.steps.append(step)
            log.info("tune %s: recall@%d %.4f, %.0f q/s", params, k, step.recall, step.qps)
            if best is None or step.recall > best.recall:
                best = step
            if step.recall >= target:
                chosen = step
                break
            flat_steps = (
                flat_steps + 1 if previous >= 0 and step.recall - previous < SATURATED else 0
            )
            if flat_steps >= 2:
                break
            previous = step.recall
        if chosen is not None:
            break
    met = chosen is not None
    pick = chosen or best
    if pick is None:
        index.set_search_params(**original)
        return report
    index.set_search_params(**pick.params)
    report.chosen, report.recall, report.met = dict(pick.params), pick.recall, met
    index.meta.params["tuned"] = {
        "recall_target": target,
        "recall": round(pick.recall, 4),
        "met": met,
        "k": k,
        "queries": len(query_ids),
        "vectors": len(index),
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if not met:
        log.warning(
            "recall target %.3f not reached; best %.4f with %s", target, pick.recall, pick.params
        )
    return report
