"""Product metadata and stored embeddings: SQLite by default, PostgreSQL for servers."""

from lookalike.catalog.base import (
    Catalog,
    CatalogStats,
    Product,
    ProductFilter,
    ProductWrite,
    VectorChanges,
)
from lookalike.catalog.factory import open_catalog

__all__ = [
    "Catalog",
    "CatalogStats",
    "Product",
    "ProductFilter",
    "ProductWrite",
    "VectorChanges",
    "open_catalog",
]
