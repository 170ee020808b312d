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
from lookalike.catalog.logs import (
    EVENT_GRADES,
    ClickRecord,
    DayTotals,
    LoggedEvent,
    LoggedHit,
    LoggedSearch,
    SearchRecord,
)
from lookalike.catalog.rankers import RankerPromotion, StoredRanker

__all__ = [
    "EVENT_GRADES",
    "Catalog",
    "CatalogCapabilities",
    "CatalogStats",
    "ClickRecord",
    "DayTotals",
    "LoggedEvent",
    "LoggedHit",
    "LoggedSearch",
    "Product",
    "ProductFilter",
    "ProductWrite",
    "RankerPromotion",
    "SearchRecord",
    "StoredRanker",
    "VectorChanges",
    "catalog_backends",
    "open_catalog",
    "register_catalog",
]
