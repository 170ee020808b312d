"""Catalog registry: the one place that maps a catalog URL's scheme to a backend."""

from __future__ import annotations

from collections.abc import Callable

from lookalike.catalog.base import Catalog
from lookalike.config import Settings
from lookalike.errors import ConfigError
from lookalike.redact import redact_url

CatalogOpener = Callable[[str, Settings], Catalog]
_OPENERS: dict[str, CatalogOpener] = {}
_BACKENDS: dict[str, tuple[str, ...]] = {}  # backend name (its first scheme) -> schemes


def register_catalog(*schemes: str) -> Callable[[CatalogOpener], CatalogOpener]:
    """Register an opener for URLs of these schemes; the first names the backend."""

    def decorate(opener: CatalogOpener) -> CatalogOpener:
        for scheme in schemes:
            _OPENERS[scheme] = opener
        _BACKENDS[schemes[0]] = schemes
        return opener

    return decorate


def catalog_backends() -> dict[str, tuple[str, ...]]:
    """Every registered backend by name, with the URL schemes that select it."""
    _register_builtins()
    return dict(_BACKENDS)


def open_catalog(settings: Settings) -> Catalog:
    """The catalog at `settings.catalog_location` (migrated up to date)."""
    _register_builtins()
    url = settings.catalog_location
    scheme = url.partition("://")[0].lower() if "://" in url else ""
    opener = _OPENERS.get(scheme)
    if opener is None:
        raise ConfigError(
            f"unsupported catalog URL {redact_url(url)!r}: known schemes are "
            f"{', '.join(f'{s}://' for s in sorted(_OPENERS))}"
        )
    return opener(url, settings)


def _register_builtins() -> None:
    # Imported here so that `import lookalike` stays light and optional extras stay optional.
    from lookalike.catalog import builtins  # noqa: F401
