"""The `backend` fixture: the log tests run on every catalog backend."""

from tests.support.catalog_backends import backend, catalog

__all__ = ["backend", "catalog"]
