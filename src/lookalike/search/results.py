"""What a search returns, and its JSON form (result caches, logs)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lookalike.catalog.base import Product

FORMAT = "results/3"  # the JSON layout below; caches key on it so an old layout is never read


@dataclass
class SearchHit:
    product: Product
    score: float  # final score, after any re-ranking
    similarity: float  # cosine similarity to the query
    # With collapse=duplicates: the other members of this hit's near-duplicate group.
    duplicates: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        p = self.product
        return {
            "id": p.id,
            "title": p.title,
            "category": p.category,
            "brand": p.brand,
            "price": p.price,
            "image_source": p.image_source,
            "attributes": p.attributes,
            "score": round(self.score, 6),
            "similarity": round(self.similarity, 6),
            "duplicates": self.duplicates,
        }


@dataclass
class SearchResults:
    hits: list[SearchHit]
    total_found: int  # searchable items that match the filters
    query_time_ms: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)  # stage -> milliseconds
    strategy: str = ""  # how candidates were found: "exact", "ann", "ann+exact", "pushdown"
    ranker: str = ""  # the ranker that ordered the hits (name@version)
    # The ranker's feature values per hit, as computed at serving time (row i = hits[i]);
    # what a learned ranker is trained on. Empty when the ranker computed none.
    feature_names: tuple[str, ...] = ()
    features: np.ndarray | None = None
    # Why the asked-for ranker did not order them (its model missing or corrupt), if so.
    fallback: str | None = None
    arm: str | None = None  # the A/B arm of the session ("control", "candidate"), if any
    explored: int = 0  # top slots shown in random order (position-bias estimation)
    min_score: float | None = None  # the relevance floor that applied (None: none)
    below_floor: int = 0  # how many of the best `limit` candidates it cut

    def to_dict(self) -> dict[str, Any]:
        """What the CLI prints as JSON."""
        return {
            "results": [hit.to_dict() for hit in self.hits],
            "total_found": self.total_found,
            "query_time_ms": round(self.query_time_ms, 3),
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
            "ranker": self.ranker,
            "ranker_fallback": self.fallback,
            "min_score": self.min_score,
            "below_floor": self.below_floor,
        }

    def to_json(self) -> bytes:
        """Everything but the timings, losslessly (scores as floats, products whole)."""
        return json.dumps(
            {
                "format": FORMAT,
                "hits": [
                    [_fields(hit.product), hit.score, hit.similarity, hit.duplicates]
                    for hit in self.hits
                ],
                "total_found": self.total_found,
                "strategy": self.strategy,
                "ranker": self.ranker,
                "feature_names": list(self.feature_names),
                "features": None if self.features is None else self.features.tolist(),
                "fallback": self.fallback,
                "min_score": self.min_score,
                "below_floor": self.below_floor,
            }
        ).encode()

    @classmethod
    def from_json(cls, raw: bytes | str) -> SearchResults:
        """The inverse of `to_json`; ValueError (or KeyError/TypeError) on another layout."""
        data = json.loads(raw)
        if data.get("format") != FORMAT:
            raise ValueError(f"results layout {data.get('format')!r} is not {FORMAT}")
        hits = [
            SearchHit(Product(**product), float(score), float(similarity), list(duplicates))
            for product, score, similarity, duplicates in data["hits"]
        ]
        features = data["features"]
        return cls(
            hits,
            int(data["total_found"]),
            strategy=str(data["strategy"]),
            ranker=str(data["ranker"]),
            feature_names=tuple(data["feature_names"]),
            features=None if features is None else np.asarray(features, dtype=np.float64),
            fallback=data["fallback"],
            min_score=None if data["min_score"] is None else float(data["min_score"]),
            below_floor=int(data["below_floor"]),
        )


_PRODUCT_FIELDS = tuple(f.name for f in dataclasses.fields(Product))


def _fields(product: Product) -> dict[str, Any]:
    # Shallow on purpose: `dataclasses.asdict` deep-copies every attribute value, which
    # cost more than the rest of serialising a page (json.dumps copies nothing it needs).
    return {name: getattr(product, name) for name in _PRODUCT_FIELDS}
