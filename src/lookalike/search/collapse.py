"""Collapse near-duplicates: one hit per near-duplicate group, the best ranked; the group's
other members are listed on it (`SearchHit.duplicates`) and stay reachable through
`GET /v1/products/{id}/duplicates`. Groups come from the catalog (`lookalike
near-duplicates`, kept current by every write)."""

from __future__ import annotations

import numpy as np

from lookalike.catalog.base import Catalog
from lookalike.search.results import SearchHit

MAX_LISTED = 50  # duplicates listed on one hit


def collapse_duplicates(
    catalog: Catalog, hits: list[SearchHit], features: np.ndarray
) -> tuple[list[SearchHit], np.ndarray]:
    """Hits (best first) with every group member after its group's first one dropped, and
    the matching feature rows."""
    if not hits:
        return hits, features
    stored = catalog.image_hashes(product_ids=[hit.product.id for hit in hits])
    group_of = {row.product_id: row.group_id for row in stored if row.group_id is not None}
    if not group_of:
        return hits, features
    members = catalog.group_members(list(set(group_of.values())))
    seen: set[str] = set()
    kept: list[int] = []
    for position, hit in enumerate(hits):
        group = group_of.get(hit.product.id)
        if group is None:
            kept.append(position)
            continue
        if group in seen:
            continue
        seen.add(group)
        others = [pid for pid in members.get(group, []) if pid != hit.product.id]
        hit.duplicates = others[:MAX_LISTED]
        kept.append(position)
    rows = features[kept] if len(features) == len(hits) else features
    return [hits[i] for i in kept], rows
