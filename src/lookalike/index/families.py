"""The FAISS index families by name: the one registry the planner and factory read."""

from __future__ import annotations

from lookalike.index.faiss_index import FaissIndex, FlatIndex
from lookalike.index.hnsw import HnswIndex
from lookalike.index.ivfpq import IvfPqIndex

FAISS_FAMILIES: dict[str, type[FaissIndex]] = {
    "flat": FlatIndex,
    "hnsw": HnswIndex,
    "ivfpq": IvfPqIndex,
}
# From smallest to largest catalogs: `auto` moves up this list as a catalog grows.
SIZE_ORDER = ("flat", "hnsw", "ivfpq")
