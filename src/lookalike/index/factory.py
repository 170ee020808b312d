"""Vector index backends by `LOOKALIKE_INDEX_URL`: the one place that maps a URL to an
implementation, shaped like the encoder registry.

- unset, a folder path or `file:///folder`: FAISS files (flat / HNSW / IVF-PQ, chosen by
  the planner) in the data dir's `index/` folder or that folder;
- `milvus://host:19530`, `http(s)://`, `tcp://`, `unix:` or a local `*.db` path: Milvus
  (a server, a cluster, Zilliz Cloud, or embedded Milvus Lite).

A backend registers an opener (open or rebuild, then catch up with the catalog) and a
describer (what `lookalike info` prints without connecting or loading anything); its
indexes declare what they can do (`IndexCapabilities`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from lookalike.catalog.base import Catalog
from lookalike.config import Settings
from lookalike.errors import ConfigError
from lookalike.index.live import LiveIndex

log = logging.getLogger(__name__)

IndexOpener = Callable[[Settings, Catalog, int, str, bool], LiveIndex]
IndexDescriber = Callable[[Settings], dict[str, Any]]


@dataclass(frozen=True)
class IndexBackend:
    name: str
    open: IndexOpener  # (settings, catalog, dim, model_id, progress) -> LiveIndex
    describe: IndexDescriber  # the configured index, without connecting or loading it


_BACKENDS: dict[str, IndexBackend] = {}
_SCHEMES: dict[str, str] = {}  # URL scheme (or "path", "db-path") -> backend name


def register_index(
    name: str, *schemes: str
) -> Callable[[tuple[IndexOpener, IndexDescriber]], tuple[IndexOpener, IndexDescriber]]:
    """Register `(opener, describer)` for URL schemes ("path": a folder; "db-path": a
    local `.db` file)."""

    def decorate(
        pair: tuple[IndexOpener, IndexDescriber],
    ) -> tuple[IndexOpener, IndexDescriber]:
        _BACKENDS[name] = IndexBackend(name, *pair)
        for scheme in schemes:
            _SCHEMES[scheme] = name
        return pair

    return decorate


def url_scheme(url: str | None) -> str:
    """The registry key of an index URL."""
    if not url:
        return "path"
    if url.startswith("unix:"):
        return "unix"
    scheme = urlsplit(url).scheme if "://" in url else ""
    if scheme:
        return scheme
    return "db-path" if url.endswith(".db") else "path"


def index_backend(settings: Settings) -> IndexBackend:
    _register_builtins()
    scheme = url_scheme(settings.index_url)
    name = _SCHEMES.get(scheme)
    if name is None:
        raise ConfigError(
            f"unsupported index URL {settings.index_url!r}: known schemes "
            f"{', '.join(sorted(s for s in _SCHEMES if '-' not in s and s != 'path'))}, "
            "a folder for FAISS files, or a .db path for Milvus Lite"
        )
    return _BACKENDS[name]


def open_index(
    settings: Settings, catalog: Catalog, dim: int, model_id: str, *, progress: bool = False
) -> LiveIndex:
    """The configured index, opened (or rebuilt from stored embeddings) and caught up."""
    return index_backend(settings).open(settings, catalog, dim, model_id, progress)


def describe_index(settings: Settings) -> dict[str, Any]:
    """What the configured index is, without connecting to it or loading it."""
    return index_backend(settings).describe(settings)


def index_directory(settings: Settings) -> Path:
    """Where FAISS files live: the data dir's `index/`, or the folder the URL names."""
    url = settings.index_url
    if url and url.startswith("file://"):
        return Path(unquote(urlsplit(url).path))
    if url and url_scheme(url) == "path":
        return Path(url).expanduser()
    return settings.data_dir / "index"


def _register_builtins() -> None:
    # Imported here so that the optional extras (pymilvus) stay optional.
    from lookalike.index import builtins  # noqa: F401
