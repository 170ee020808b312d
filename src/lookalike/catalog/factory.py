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
        try:
            from lookalike.catalog.postgres import PostgresCatalog
        except ImportError as exc:
            raise ConfigError(
                f"a PostgreSQL catalog needs `pip install lookalike[postgres]` ({exc})"
            ) from exc
        return PostgresCatalog(
            url,
            pool_min=settings.postgres_pool_min,
            pool_max=settings.postgres_pool_max,
            connect_timeout_s=settings.postgres_connect_timeout_s,
        )
    raise ConfigError(f"unsupported catalog URL {url!r}: use sqlite:///path or postgresql://...")
