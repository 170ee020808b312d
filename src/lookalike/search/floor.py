"""The relevance floor: hits whose raw similarity is under a minimum never reach a page.

A pipeline stage between candidates and ranking. Candidates come sorted by similarity, so
the floor keeps a prefix of them. `below_floor` says how many of the best `limit`
candidates (by similarity) the floor cut: 20 for a nonsense query with a limit of 20, 0 for
one whose whole page is above it.

Which minimum applies, first match wins:
1. the request's `min_score` (a number in [-1, 1]; -1 turns the floor off);
2. the `min_score` setting (one fixed number for every query kind);
3. the calibrated floor of the index's model and the query's kind (`lookalike calibrate`,
   stored in the catalog's meta; see `calibration.py`) when `relevance_floor` is on;
4. none.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lookalike.catalog.base import Catalog
from lookalike.config import Settings

META_PREFIX = "relevance_floor:"  # + model id -> a Calibration as JSON
NO_FLOOR = -1.0  # cosine similarity is never below it: a request's way to turn it off
RELOAD_S = 5.0  # a server sees a calibration made by another process within this long


def meta_key(model_id: str) -> str:
    return META_PREFIX + model_id


@dataclass(frozen=True)
class Floor:
    """The minimum that applied to one search, and where it came from."""

    min_score: float | None  # None: no floor
    source: str  # "request", "settings", "calibrated" or "none"


def apply_floor(similarities: np.ndarray, min_score: float | None, limit: int) -> tuple[int, int]:
    """(how many leading candidates stay, how many of the first `limit` fell under it).
    `similarities` are sorted best first."""
    if min_score is None or len(similarities) == 0:
        return len(similarities), 0
    under = np.asarray(similarities) < min_score
    kept = int(np.argmax(under)) if under.any() else len(similarities)
    return kept, int(under[:limit].sum())


class FloorDefaults:
    """The default floor per model and query kind, read from the catalog's meta (re-read at
    most every RELOAD_S seconds) with a fallback for models no catalog calibration covers
    (the calibration a model directory carries from `lookalike train`)."""

    def __init__(
        self,
        catalog: Catalog,
        settings: Settings,
        fallback: Callable[[str], dict[str, float | None]] | None = None,
    ) -> None:
        self.catalog = catalog
        self.settings = settings
        self.fallback = fallback
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[float, dict[str, float | None]]] = {}

    def choose(self, requested: float | None, model_id: str, kind: str) -> Floor:
        if requested is not None:
            return Floor(None, "request") if requested <= NO_FLOOR else Floor(requested, "request")
        if self.settings.min_score is not None:
            return Floor(self.settings.min_score, "settings")
        if not self.settings.relevance_floor:
            return Floor(None, "none")
        value = self.thresholds(model_id).get(kind)
        return Floor(value, "calibrated") if value is not None else Floor(None, "none")

    def thresholds(self, model_id: str) -> dict[str, float | None]:
        """kind -> calibrated minimum (None: the model does not separate that kind)."""
        now = time.monotonic()
        with self._lock:
            cached = self._cache.get(model_id)
            if cached is not None and now - cached[0] < RELOAD_S:
                return cached[1]
        raw = self.catalog.get_meta(meta_key(model_id))
        values = thresholds_from_json(raw) if raw else {}
        if not values and self.fallback is not None:
            values = self.fallback(model_id)
        with self._lock:
            self._cache[model_id] = (now, values)
        return values

    def forget(self) -> None:
        """Read the calibration again at the next search (after `calibrate` here)."""
        with self._lock:
            self._cache.clear()


def thresholds_from_json(raw: str) -> dict[str, float | None]:
    """kind -> min_score of a stored calibration; {} for one that cannot be read."""
    try:
        kinds = json.loads(raw)["kinds"]
        return {
            str(kind): (None if entry.get("min_score") is None else float(entry["min_score"]))
            for kind, entry in kinds.items()
        }
    except (ValueError, TypeError, KeyError, AttributeError):
        return {}
