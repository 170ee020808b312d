"""Built-in catalog backends, registered with the factory (each imported on first use)."""

from __future__ import annotations

from lookalike.catalog.base import Catalog
from lookalike.catalog.factory import register_catalog
from lookalike.config import Settings
from lookalike.errors import ConfigError


@register_catalog("sqlite")
def _sqlite(url: str, settings: Settings) -> Catalog:
    if not url.startswith("sqlite:///"):
        raise ConfigError(f"a SQLite catalog URL is sqlite:///path/to/catalog.db, not {url!r}")
    from lookalike.catalog.sqlite import SQLiteCatalog

    return SQLiteCatalog(url.removeprefix("sqlite:///"))


@register_catalog("postgresql", "postgres")
def _postgres(url: str, settings: Settings) -> Catalog:
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
