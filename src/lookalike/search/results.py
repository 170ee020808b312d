"""What a search returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lookalike.catalog.base import Product


@dataclass
class SearchHit:
    product: Product
    score: float  # final score, after any re-ranking
    similarity: float  # cosine similarity to the query

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
        }


@dataclass
class SearchResults:
    hits: list[SearchHit]
    total_found: int  # searchable items that match the filters
    query_time_ms: float = 0.0
    timings_ms: dict[str, float] = field(default_factory=dict)  # encode / ann / metadata
    strategy: str = ""  # how candidates were found: "exact", "ann" or "ann+exact"

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": [hit.to_dict() for hit in self.hits],
            "total_found": self.total_found,
            "query_time_ms": round(self.query_time_ms, 3),
            "timings_ms": {k: round(v, 3) for k, v in self.timings_ms.items()},
        }
