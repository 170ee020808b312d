"""Vector indexes: FAISS in-process (or external engines), kept in step with the catalog."""

from lookalike.index.base import IndexMeta, VectorIndex
from lookalike.index.factory import open_index
from lookalike.index.faiss_index import FlatIndex
from lookalike.index.live import LiveIndex

__all__ = ["FlatIndex", "IndexMeta", "LiveIndex", "VectorIndex", "open_index"]
