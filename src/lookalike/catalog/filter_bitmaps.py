"""The catalog's filterable fields in memory, answering a ProductFilter without SQL.

Every filter the API takes (`catalog/filters.py`) is a conjunction of value sets
(category, brand, attribute values; each may allow "missing") and a price range. Here each
value of a field holds a compressed bitmap (`pyroaring.BitMap`) of the vector ids whose
product has it, so a value set is a union of bitmaps and a filter the intersection of those
unions: the matching ids of a 50% filter over 1M items come out in about a millisecond, and
their count is the bitmap's cardinality. Prices are a sorted array split into runs of equal
length, each with its bitmap: a range is two `searchsorted`s, the union of the whole runs
inside it and the few ids of the two runs it cuts.

The same semantics as `ProductFilter.matches` (Python's `in`): a dict keyed by value
equates `True`, `1` and `1.0` exactly as `in` does and never a string with a number; a
list or object value is present (so `None` does not match it) but equals no filter value.

Kept in step by the catalog's change log like an index (`apply`, fed by `LiveIndex`):
removed vectors leave every bitmap, added and metadata-changed ones are read back from the
catalog and indexed again, so a delete, a new embedding or a field change shows here once
the log entry is replayed. Applying a stretch twice leaves the same state (entries are
re-read, never replayed as deltas), so catching up from an older watermark is safe.

What the bitmaps do not answer, `supports()` says, and callers ask the catalog instead:
attributes whose distinct values passed `max_values` (free-text-like fields would cost a
bitmap per value; they are dropped, not capped halfway), and vector ids past 2**32 (the
32-bit bitmaps' range).
"""

from __future__ import annotations

import array
import math
import threading
from collections.abc import Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pyroaring import BitMap

from lookalike.catalog.base import Catalog, Product, ProductFilter, VectorChanges
from lookalike.catalog.filters import CheckedFilter, ValueSet, check_filter

MAX_BITMAP_ID = 2**32 - 1
# Prices changed since the sorted array was built wait in a small overflow, scanned on
# every range query; past this share of the array (or PRICE_EXTRA_MAX entries, so the scan
# stays well under a millisecond) it is rebuilt, off the readers' lock.
PRICE_REBUILD_SHARE = 0.02
PRICE_EXTRA_MAX = 4_096
PRICE_RUN_MIN = 512  # ids per price run at least (at most ~1024 runs over 1M items)


def _bitmap(ids: np.ndarray) -> BitMap:
    """A bitmap of uint32-able ids (pyroaring reads an `array.array` by its buffer, a
    numpy array one element at a time: 20x slower)."""
    return BitMap(array.array("I", np.asarray(ids, dtype=np.uint32).tobytes()))


def bitmap_ids(bitmap: BitMap) -> np.ndarray:
    """Sorted int64 ids of a bitmap."""
    return np.frombuffer(bitmap.to_array(), dtype=np.uint32).astype(np.int64)


def _key(value: Any) -> Hashable | None:
    """The dict key of a stored value, or None when no filter value can equal it."""
    if isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    return None  # lists, objects: present, but equal to no scalar


@dataclass
class _Field:
    """One field's values -> ids, and the ids where it has a value (not None)."""

    values: dict[Hashable, BitMap] = field(default_factory=dict)
    present: BitMap = field(default_factory=BitMap)

    def add(self, vector_id: int, value: Any) -> None:
        if value is None:
            return
        self.present.add(vector_id)
        key = _key(value)
        if key is not None:
            self.values.setdefault(key, BitMap()).add(vector_id)

    def drop(self, gone: BitMap) -> None:
        self.present -= gone
        for key in [k for k, ids in self.values.items() if ids.intersect(gone)]:
            ids = self.values[key]
            ids -= gone
            if not ids:
                del self.values[key]

    def matching(self, allowed: ValueSet, everyone: BitMap) -> BitMap:
        """Ids whose value is in the set (a missing value where it allows None)."""
        hits = [self.values[v] for v in (*allowed.strings, *allowed.numbers) if v in self.values]
        if allowed.null:
            hits.append(everyone - self.present)
        return BitMap.union(*hits) if hits else BitMap()

    def memory_bytes(self) -> int:
        # A bitmap's serialized size is its containers' size (the Python objects aside).
        return sum(len(m.serialize()) for m in (self.present, *self.values.values()))


class _Prices:
    """Prices as a sorted array cut into runs with a bitmap each, plus changes since."""

    def __init__(self, ids: np.ndarray, prices: np.ndarray) -> None:
        order = np.argsort(prices, kind="stable")
        self.prices = prices[order]
        self.ids = ids[order].astype(np.uint32)
        self.run = max(PRICE_RUN_MIN, len(self.ids) // 1024)
        self.runs = [
            _bitmap(self.ids[start : start + self.run])
            for start in range(0, len(self.ids), self.run)
        ]
        self.stale = BitMap()  # ids whose entry in the array no longer holds
        self.extra: dict[int, float] = {}  # ids priced since the array was built

    def __len__(self) -> int:
        return len(self.ids) - len(self.stale) + len(self.extra)

    def drop(self, gone: BitMap) -> None:
        self.stale |= gone
        for vector_id in [v for v in self.extra if v in gone]:
            del self.extra[vector_id]

    def set(self, vector_id: int, price: float) -> None:
        self.stale.add(vector_id)  # its old entry in the array, if it had one
        self.extra[vector_id] = price

    def needs_rebuild(self) -> bool:
        limit = max(64, min(PRICE_REBUILD_SHARE * len(self.ids), PRICE_EXTRA_MAX))
        return len(self.extra) + len(self.stale) > limit

    def rebuilt(self) -> _Prices:
        keep = ~np.isin(self.ids, bitmap_ids(self.stale)) if self.stale else slice(None)
        extra_ids = np.fromiter(self.extra, dtype=np.int64, count=len(self.extra))
        extra_prices = np.fromiter(self.extra.values(), dtype=np.float64, count=len(self.extra))
        return _Prices(
            np.concatenate([self.ids[keep].astype(np.int64), extra_ids]),
            np.concatenate([self.prices[keep], extra_prices]),
        )

    def between(self, low: float | None, high: float | None) -> BitMap:
        """Ids priced within [low, high] (either end open when None)."""
        start = 0 if low is None else int(np.searchsorted(self.prices, low, side="left"))
        stop = (
            len(self.prices) if high is None else int(np.searchsorted(self.prices, high, "right"))
        )
        parts: list[BitMap] = []
        if start < stop:
            first, last = -(-start // self.run), stop // self.run  # whole runs inside
            if first < last:
                parts.extend(self.runs[first:last])
                parts.append(_bitmap(self.ids[start : first * self.run]))
                parts.append(_bitmap(self.ids[last * self.run : stop]))
            else:
                parts.append(_bitmap(self.ids[start:stop]))
        found = BitMap.union(*parts) if parts else BitMap()
        if self.stale:
            found -= self.stale
        if self.extra:
            ids = np.fromiter(self.extra.keys(), dtype=np.int64, count=len(self.extra))
            prices = np.fromiter(self.extra.values(), dtype=np.float64, count=len(self.extra))
            inside = np.ones(len(ids), dtype=bool)
            if low is not None:
                inside &= prices >= low
            if high is not None:
                inside &= prices <= high
            found |= _bitmap(ids[inside])
        return found

    def memory_bytes(self) -> int:
        runs = sum(len(r.serialize()) for r in self.runs)
        return self.prices.nbytes + self.ids.nbytes + runs + 48 * len(self.extra)


class FilterBitmaps:
    """Matching vector ids of any supported ProductFilter, from memory (see module doc).

    One lock orders reads and writes: a query's bitmap operations take about a
    millisecond, and a write batch's a few.
    """

    def __init__(self, model_id: str | None = None, *, max_values: int = 10_000) -> None:
        self.model_id = model_id
        self.max_values = max_values
        self.watermark = 0  # last change-log entry applied
        self.everyone = BitMap()  # every searchable vector id of the model
        self.categories = _Field()
        self.brands = _Field()
        self.attributes: dict[str, _Field] = {}
        self.unindexed: set[str] = set()  # attributes left to the catalog (too many values)
        self.prices = _Prices(np.zeros(0, np.int64), np.zeros(0, np.float64))
        self.overflow = False  # a vector id past the 32-bit range: the catalog answers
        self._lock = threading.Lock()  # readers and the writer's in-place updates
        self._writing = threading.Lock()  # one writer at a time (rebuilds run outside _lock)

    # --- building and keeping in step ----------------------------------------------------
    @classmethod
    def from_catalog(
        cls, catalog: Catalog, model_id: str | None = None, *, max_values: int = 10_000
    ) -> FilterBitmaps:
        """Every searchable product of the model, then the log written meanwhile."""
        bitmaps = cls(model_id, max_values=max_values)
        # The head is read first: writes made while we read are replayed after.
        head = catalog.log_head()
        bitmaps.load(catalog.iter_products(batch_size=10_000))
        bitmaps.watermark = head
        bitmaps.catch_up(catalog)
        return bitmaps

    def _owns(self, product: Product) -> bool:
        if product.vector_id is None:
            return False
        return self.model_id is None or product.model_id == self.model_id

    def load(self, products: Iterable[Product]) -> None:
        """Fill from `products` (those of other models skipped), replacing what was held."""
        self.categories, self.brands, self.attributes = _Field(), _Field(), {}
        self.unindexed, self.overflow = set(), False
        ids: list[int] = []
        prices: list[tuple[int, float]] = []
        for product in products:
            if not self._owns(product):
                continue
            vid = int(product.vector_id)  # type: ignore[arg-type]
            if vid > MAX_BITMAP_ID:
                self.overflow = True
                continue
            ids.append(vid)
            self._index_fields(vid, product)
            if product.price is not None:
                prices.append((vid, float(product.price)))
        self.everyone = _bitmap(np.asarray(ids, dtype=np.int64))
        self.prices = _Prices(
            np.asarray([p[0] for p in prices], dtype=np.int64),
            np.asarray([p[1] for p in prices], dtype=np.float64),
        )

    def _index_fields(self, vid: int, product: Product) -> None:
        self.categories.add(vid, product.category)
        self.brands.add(vid, product.brand)
        for name, value in product.attributes.items():
            if name in self.unindexed:
                continue
            values = self.attributes.setdefault(name, _Field())
            values.add(vid, value)
            if len(values.values) > self.max_values:
                del self.attributes[name]
                self.unindexed.add(name)

    def catch_up(self, catalog: Catalog, batch: int = 100_000) -> int:
        """Apply the change log after the watermark; returns entries applied."""
        applied = 0
        while True:
            changes = catalog.changes_since(self.watermark, batch, self.model_id)
            if changes.head == self.watermark:
                return applied
            applied += changes.head - self.watermark
            self.apply(catalog, changes)

    def apply(self, catalog: Catalog, changes: VectorChanges) -> None:
        """Apply one stretch of the log (read from any watermark at or before ours)."""
        with self._writing:
            self._apply(catalog, changes)

    def _apply(self, catalog: Catalog, changes: VectorChanges) -> None:
        touched = np.union1d(changes.add_ids, changes.update_ids)
        products = catalog.by_vector_ids(touched.tolist()) if len(touched) else {}
        with self._lock:
            gone_ids = np.union1d(changes.remove_ids, touched)
            gone = _bitmap(gone_ids[gone_ids <= MAX_BITMAP_ID])
            if gone:
                self._drop(gone)
            for vid, product in products.items():
                if not self._owns(product):
                    continue
                if vid > MAX_BITMAP_ID:
                    self.overflow = True
                    continue
                self.everyone.add(vid)
                self._index_fields(vid, product)
                if product.price is not None:
                    self.prices.set(vid, float(product.price))
            self.watermark = max(self.watermark, changes.head)
        if self.prices.needs_rebuild():
            # Only writers change the prices, and this one holds `_writing`: readers go on
            # with the old array while the new one is sorted, then see it whole.
            fresh = self.prices.rebuilt()
            with self._lock:
                self.prices = fresh

    def _drop(self, gone: BitMap) -> None:
        self.everyone -= gone
        self.categories.drop(gone)
        self.brands.drop(gone)
        for values in self.attributes.values():
            values.drop(gone)
        self.prices.drop(gone)

    # --- answering filters ---------------------------------------------------------------
    def supports(self, product_filter: ProductFilter) -> bool:
        """Whether `matching` answers this filter (else ask the catalog). Raises
        InvalidInput for a filter no backend takes, as the catalog would."""
        checked = check_filter(product_filter)
        return not self.overflow and not any(n in self.unindexed for n, _ in checked.attributes)

    def matching(self, product_filter: ProductFilter) -> BitMap:
        """The vector ids matching a supported filter."""
        checked = check_filter(product_filter)
        # Under the writers' lock: an update drops an id and indexes it again, and a
        # reader in between would miss it.
        with self._lock:
            return self._matching(checked)

    def _matching(self, checked: CheckedFilter) -> BitMap:
        everyone = self.everyone
        parts: list[BitMap] = []
        if checked.categories:
            parts.append(self.categories.matching(checked.categories, everyone))
        if checked.brands:
            parts.append(self.brands.matching(checked.brands, everyone))
        for name, allowed in checked.attributes:
            values = self.attributes.get(name, _Field())
            parts.append(values.matching(allowed, everyone))
        if checked.price_min is not None or checked.price_max is not None:
            parts.append(self.prices.between(checked.price_min, checked.price_max))
        if not parts:
            return everyone.copy()
        # Smallest first: every intersection after it is cheaper.
        parts.sort(key=len)
        found = parts[0] & everyone if len(parts) == 1 else BitMap.intersection(*parts)
        return found

    def count(self, product_filter: ProductFilter) -> int:
        return len(self.matching(product_filter))

    def vector_ids(self, product_filter: ProductFilter) -> np.ndarray:
        """Sorted int64 vector ids matching a supported filter (as the catalog's
        `filter_vector_ids`)."""
        return bitmap_ids(self.matching(product_filter))

    # --- reporting -----------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.everyone)

    def fields(self) -> Iterator[tuple[str, _Field]]:
        yield "category", self.categories
        yield "brand", self.brands
        for name, values in self.attributes.items():
            yield f"attribute {name}", values

    def memory_bytes(self) -> int:
        """Bytes held by the bitmaps and price arrays (the dicts' keys not counted)."""
        maps = len(self.everyone.serialize())
        return maps + sum(v.memory_bytes() for _, v in self.fields()) + self.prices.memory_bytes()

    def describe(self) -> dict[str, Any]:
        return {
            "items": len(self),
            "watermark": self.watermark,
            "attributes": sorted(self.attributes),
            "unindexed_attributes": sorted(self.unindexed),
            "memory_bytes": self.memory_bytes(),
        }
