"""Vector indexes: FAISS in-process (or external engines), kept in step with the catalog."""

from lookalike.index.base import IndexCapabilities, IndexMeta, VectorIndex
from lookalike.index.factory import describe_index, open_index, register_index
from lookalike.index.faiss_index import FlatIndex
from lookalike.index.hnsw import HnswIndex
from lookalike.index.ivfpq import IvfPqIndex
from lookalike.index.live import LiveIndex

__all__ = [
    "FlatIndex",
    "HnswIndex",
    "IndexCapabilities",
    "IndexMeta",
    "IvfPqIndex",
    "LiveIndex",
    "VectorIndex",
    "describe_index",
    "open_index",
    "register_index",
]
