"""Product rows by vector id, kept in memory for one catalog version at a time.

Every search reads the rows of its candidates (a re-ranked text query: the pool of about a
hundred, to check each is still live and matches, and to rank on its fields). The rows of
the items shoppers are shown are few and asked for again and again, so a search reads them
from here; SQL is asked only for the ones missing. Nothing is ever served from an older
catalog: the cache belongs to one `Catalog.version()` (which moves with every committed
product write, from any process), and the first search that sees a newer version empties
it. A search that read an older version than the cache's neither reads nor fills it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

from lookalike.catalog.base import Catalog, Product


class ProductCache:
    """At most `max_items` products, least recently used out first; thread-safe."""

    def __init__(self, max_items: int) -> None:
        self.max_items = max_items
        self._version = -1
        self._products: OrderedDict[int, Product] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def at(self, catalog: Catalog, version: int) -> CachedRows:
        """The rows as of `version` (a value `catalog.version()` returned)."""
        return CachedRows(self, catalog, version)

    def __len__(self) -> int:
        return len(self._products)

    def by_vector_ids(
        self, catalog: Catalog, vector_ids: Sequence[int], version: int
    ) -> dict[int, Product]:
        """`catalog.by_vector_ids` for a search that read `version`: what is kept from here,
        the rest from the catalog (and kept, while `version` is the cache's)."""
        wanted = [int(v) for v in vector_ids]
        found = self._known(wanted, version)
        missing = [vid for vid in wanted if vid not in found]
        if missing:
            fetched = catalog.by_vector_ids(missing)
            self._keep(fetched, version)
            found.update(fetched)
        return found

    def _known(self, vector_ids: Sequence[int], version: int) -> dict[int, Product]:
        with self._lock:
            if version > self._version:
                self._products.clear()
                self._version = version
            if version != self._version:
                return {}
            found: dict[int, Product] = {}
            for vid in vector_ids:
                product = self._products.get(vid)
                if product is not None:
                    self._products.move_to_end(vid)
                    found[vid] = product
            self.hits += len(found)
            self.misses += len(vector_ids) - len(found)
            return found

    def _keep(self, products: dict[int, Product], version: int) -> None:
        with self._lock:
            if version != self._version:
                return
            self._products.update(products)
            while len(self._products) > self.max_items:
                self._products.popitem(last=False)


class CachedRows:
    """`Catalog.by_vector_ids` through a ProductCache, for one search."""

    def __init__(self, cache: ProductCache, catalog: Catalog, version: int) -> None:
        self.cache = cache
        self.catalog = catalog
        self.version = version

    def by_vector_ids(self, vector_ids: Sequence[int]) -> dict[int, Product]:
        return self.cache.by_vector_ids(self.catalog, vector_ids, self.version)
