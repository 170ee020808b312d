"""Product metadata, stored embeddings and search logs: SQLite by default, PostgreSQL for
servers, each a backend of one SQL core (`catalog/sql/`), chosen by URL scheme."""

from lookalike.catalog.base import (
    Catalog,
    CatalogCapabilities,
    CatalogStats,
    Product,
    ProductFilter,
    ProductWrite,
    VectorChanges,
)
from lookalike.catalog.factory import catalog_backends, open_catalog, register_catalog
from lookalike.catalog.logs import ClickRecord, DayTotals, SearchRecord

__all__ = [
    "Catalog",
    "CatalogCapabilities",
    "CatalogStats",
    "ClickRecord",
    "DayTotals",
    "Product",
    "ProductFilter",
    "ProductWrite",
    "SearchRecord",
    "VectorChanges",
    "catalog_backends",
    "open_catalog",
    "register_catalog",
]
