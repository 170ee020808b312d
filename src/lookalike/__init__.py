"""Lookalike: image search by image, text or both, over your own catalog."""

from lookalike.config import Settings
from lookalike.engine import Engine, SearchRequest

__all__ = ["Engine", "SearchRequest", "Settings"]
__version__ = "0.1.0"
