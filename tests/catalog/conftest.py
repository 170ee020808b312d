"""The `backend` and `catalog` fixtures: every test that takes them runs on every backend."""

from tests.support.catalog_backends import backend, catalog

__all__ = ["backend", "catalog"]
