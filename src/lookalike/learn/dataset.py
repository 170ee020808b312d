"""Training groups from the search log: one group per logged search, one row per shown hit
with the features it was served with, its grade (the strongest event on it: click 1,
add-to-cart 2, purchase 3; none 0) and the position it was shown at.

The position is kept beside the features, never among them: it only weighs the rows
(position-bias correction, `propensity.py`); at serving time there is no position.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from lookalike.catalog.logs import LoggedSearch
from lookalike.search.ranking.features import FEATURES


@dataclass
class RankingData:
    """Rows of all groups back to back; `group_sizes[g]` rows belong to group g."""

    features: np.ndarray  # (rows, len(FEATURES)) float64, FEATURES order
    grades: np.ndarray  # (rows,) int
    positions: np.ndarray  # (rows,) int, 1 = shown first
    group_sizes: np.ndarray  # (groups,) int
    search_ids: list[str]
    query_types: list[str]
    explored: np.ndarray  # (groups,) int: top slots shown in random order
    ts: np.ndarray  # (groups,) float
    skipped: Counter = field(default_factory=Counter)  # reason -> searches left out

    @property
    def starts(self) -> np.ndarray:
        return np.concatenate([[0], np.cumsum(self.group_sizes)[:-1]]).astype(np.int64)

    @property
    def groups(self) -> int:
        return len(self.group_sizes)

    def group_of_rows(self) -> np.ndarray:
        return np.repeat(np.arange(self.groups), self.group_sizes)

    def with_events(self) -> np.ndarray:
        """(groups,) bool: the group has at least one graded row."""
        if not len(self.grades):
            return np.zeros(self.groups, dtype=bool)
        return np.maximum.reduceat(self.grades, self.starts) > 0

    def subset(self, keep: np.ndarray) -> RankingData:
        """The groups where `keep` (groups,) is true, in order."""
        rows = np.repeat(keep, self.group_sizes)
        return RankingData(
            self.features[rows],
            self.grades[rows],
            self.positions[rows],
            self.group_sizes[keep],
            [s for s, k in zip(self.search_ids, keep, strict=True) if k],
            [q for q, k in zip(self.query_types, keep, strict=True) if k],
            self.explored[keep],
            self.ts[keep],
            Counter(self.skipped),
        )


def build_dataset(searches: Sequence[LoggedSearch]) -> RankingData:
    """Groups of the searches that logged their hits with every feature of FEATURES."""
    features: list[np.ndarray] = []
    grades: list[np.ndarray] = []
    positions: list[np.ndarray] = []
    sizes, ids, kinds, explored, stamps = [], [], [], [], []
    skipped: Counter = Counter()
    columns_by_names: dict[tuple[str, ...], np.ndarray | None] = {}
    for search in searches:
        if not search.hits:
            skipped["no hits logged"] += 1
            continue
        names = search.feature_names
        if names not in columns_by_names:
            missing = [f for f in FEATURES if f not in names]
            columns_by_names[names] = (
                None if missing else np.array([names.index(f) for f in FEATURES], dtype=np.intp)
            )
        columns = columns_by_names[names]
        if columns is None:
            skipped["features missing"] += 1
            continue
        rows = np.array([hit.features for hit in search.hits], dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(names) or not np.isfinite(rows).all():
            skipped["malformed features"] += 1
            continue
        graded = search.grades()
        features.append(rows[:, columns])
        grades.append(np.array([graded.get(h.position, 0) for h in search.hits], dtype=np.int64))
        positions.append(np.array([h.position for h in search.hits], dtype=np.int64))
        sizes.append(len(search.hits))
        ids.append(search.search_id)
        kinds.append(search.query_type)
        explored.append(search.explored)
        stamps.append(search.ts)
    width = len(FEATURES)
    return RankingData(
        np.vstack(features) if features else np.zeros((0, width)),
        np.concatenate(grades) if grades else np.zeros(0, dtype=np.int64),
        np.concatenate(positions) if positions else np.zeros(0, dtype=np.int64),
        np.array(sizes, dtype=np.int64),
        ids,
        kinds,
        np.array(explored, dtype=np.int64),
        np.array(stamps, dtype=np.float64),
        skipped,
    )
