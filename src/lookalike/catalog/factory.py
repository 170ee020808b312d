"""Pick the catalog backend from its URL."""

from __future__ import annotations

from lookalike.catalog.base import Catalog
from lookalike.config import Settings
from lookalike.errors import ConfigError


def open_catalog(settings: Settings) -> Catalog:
    url = settings.catalog_location
    if url.startswith("sqlite:///"):
        from lookalike.catalog.sqlite import SQLiteCatalog

        return SQLiteCatalog(url.removeprefix("sqlite:///"))
    if url.startswith(("postgresql://", "postgres://")):
        from lookalike.catalog.postgres import PostgresCatalog  # type: ignore[import-not-found]

        return PostgresCatalog(url)
    raise ConfigError(f"unsupported catalog URL {url!r}: use sqlite:///path or postgresql://...")
