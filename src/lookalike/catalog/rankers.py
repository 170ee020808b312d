"""Learned ranker models kept in the catalog database, so every worker and replica that
opens the catalog serves the same promoted model (`search/ranking/learned.py` loads them).

A model is stored once under its version: the JSON manifest and LightGBM's text format,
never a pickle. Promotions form a history; the newest one not rolled back is the model
`LOOKALIKE_RANKER=learned` serves. Rolling back marks the newest promotion, so the one
before it serves again (none left: the hand-weighted ranker).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StoredRanker:
    version: str
    created_at: float
    manifest: dict[str, Any]
    model: str  # LightGBM's text format; "" when listed without it


@dataclass(frozen=True)
class RankerPromotion:
    version: str
    promoted_at: float
    rolled_back_at: float | None  # None: still in force (the newest such one serves)
