"""Near-duplicate groups: candidates from two sources, confirmed pair by pair, joined.

Candidates of an item:
* **hash**: stored perceptual hashes within `duplicate_hash_bits` of its hash or of its
  mirror image's hash (FAISS binary range search: resized, re-compressed, mirrored,
  lightly marked copies);
* **embedding**: its `duplicate_neighbours` nearest neighbours in the vector index;
* **crops**: stored sub-crop hashes within `duplicate_crop_bits` of its hash (it may be a
  crop of theirs), and stored hashes within that of its sub-crop hashes (they may be crops
  of it): a crop moves a whole-image hash as far as an unrelated image's.

A candidate pair is confirmed when
* one is the other's mirror image: its hash within MIRROR_BITS of the other's mirror hash
  while their direct hashes differ (the embeddings saw two orientations, which a model
  need not map alike), or
* its hashes are within `duplicate_hash_bits` and its stored embeddings agree to at least
  `duplicate_hash_similarity` (a hash collision between unlike images does not), or
* its embeddings agree to at least `duplicate_similarity` and its hashes are within
  `duplicate_loose_bits` (unrelated images differ in ~32 of 64 bits; a 20% crop in ~22), or
* one's hash is within `duplicate_crop_bits` of a sub-crop hash of the other's and, on
  their stored thumbnails, it matches a region of the other keeping 76-100% of each side
  with a normalised cross-correlation of its colours of at least `duplicate_crop_match` and
  of its edges of at least `duplicate_crop_edges` (`crop_match.py`: look-alike siblings,
  which a class-trained model's embeddings do not tell from crops, mostly do not line up
  pixel for pixel), and the other is the crop's one original (`originals.py`: of every
  image the crop passes that check against, the best match and its own copies, unless an
  image outside them matches within `duplicate_crop_margin` of the best).

Confirmed pairs join into groups (connected components); a group's id is its smallest
product id at the time it was formed. `mode` "whole" is the rule without the crop
candidates and check; "hash" and "embedding" keep one source and its rule alone: the
baselines of `benchmarks/near_duplicates.py`.

Writes keep groups current incrementally: a written item is compared with its candidates
only, and the groups it touches (its partners' and the one it left) are recomputed from
their members' pairs. As a crop's links depend on every image it matches, a write or delete
that changes which images a stored crop matches re-checks that crop's group too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from tqdm.auto import tqdm

from lookalike.catalog.base import Catalog, HashRow, Product
from lookalike.config import Settings
from lookalike.duplicates.hash_index import HashIndex
from lookalike.duplicates.originals import Originals
from lookalike.encode.phash import hamming
from lookalike.index.base import VectorIndex

log = logging.getLogger(__name__)

Mode = Literal["both", "whole", "hash", "embedding"]
BATCH = 2_048
SCORES_KEPT = 200_000  # crop-check scores kept between passes (~100 bytes each)
# Mirroring commutes with the thumbnail resize, so a mirrored copy's hash equals the
# original's mirror hash up to JPEG noise: a pair this close only through the mirror is one.
MIRROR_BITS = 2


@dataclass(frozen=True)
class DuplicateRules:
    hash_bits: int = 8
    loose_bits: int = 16
    hash_similarity: float = 0.99
    similarity: float = 0.999
    neighbours: int = 10
    crop_bits: int = 12
    crop_match: float = 0.92
    crop_edges: float = 0.86
    crop_margin: float = 0.01
    one_original: bool = True  # False: every crop-check pass links (the rule before it)
    mode: Mode = "both"

    @classmethod
    def from_settings(cls, settings: Settings, mode: Mode | None = None) -> DuplicateRules:
        """The rules the settings name (`mode` default: "both", or "whole" where
        `duplicate_crops` is off)."""
        if mode is None:
            mode = "both" if settings.duplicate_crops else "whole"
        return cls(
            hash_bits=settings.duplicate_hash_bits,
            loose_bits=settings.duplicate_loose_bits,
            hash_similarity=settings.duplicate_hash_similarity,
            similarity=settings.duplicate_similarity,
            neighbours=settings.duplicate_neighbours,
            crop_bits=settings.duplicate_crop_bits,
            crop_match=settings.duplicate_crop_match,
            crop_edges=settings.duplicate_crop_edges,
            crop_margin=settings.duplicate_crop_margin,
            mode=mode,
        )

    @property
    def crops(self) -> bool:
        """Whether crop candidates and the crop check are on."""
        return self.mode == "both"

    def crop_directions(self, a: HashRow, b: HashRow) -> list[tuple[HashRow, HashRow]]:
        """(crop, whole) orders in which one's hash is near a sub-crop hash of the other."""
        found = []
        for crop, whole in ((a, b), (b, a)):
            if any(hamming(crop.phash, h) <= self.crop_bits for h in whole.crops):
                found.append((crop, whole))
        return found

    def distances(self, a: HashRow, b: HashRow) -> tuple[int, int]:
        """(bits apart as they are, bits apart with a mirrored: a's mirror hash against b's)."""
        return hamming(a.phash, b.phash), hamming(a.phash_mirror, b.phash)

    def confirms(self, direct: int, mirrored: int, similarity: float) -> bool:
        distance = min(direct, mirrored)
        if self.mode == "hash":
            return distance <= self.hash_bits
        if self.mode == "embedding":
            return similarity >= self.similarity
        if mirrored <= MIRROR_BITS < direct:
            # A mirror image: the stored embeddings saw the two orientations, which a model
            # need not map alike; mirroring moves no pHash bit, so the hashes decide.
            return True
        return (distance <= self.hash_bits and similarity >= self.hash_similarity) or (
            similarity >= self.similarity and distance <= self.loose_bits
        )


@dataclass
class GroupReport:
    groups: dict[str, list[str]]  # group id -> member product ids
    items: int  # hashed items looked at
    unhashed: int = 0  # items without hashes (their image could not be read)

    @property
    def grouped(self) -> int:
        return sum(len(m) for m in self.groups.values())


class DuplicateFinder:
    """Finds and maintains near-duplicate groups over a catalog and its vector index."""

    def __init__(
        self, catalog: Catalog, index: VectorIndex, rules: DuplicateRules, *, progress=False
    ) -> None:
        self.catalog = catalog
        self.index = index
        self.rules = rules
        self.progress = progress
        self._hashes: HashIndex | None = None
        # Crop-check scores by (crop, whole) image: a stored crop is asked about again
        # whenever an image it matches is written. Cleared when full (a bound, not an LRU).
        self._crop_scores: dict[tuple[int, int, int, int], float | None] = BoundedScores(
            SCORES_KEPT
        )

    @property
    def hashes_crops(self) -> bool:
        """Whether writes must carry the sub-crop hashes and thumbnail (crops are on)."""
        return self.rules.crops

    @property
    def hashes(self) -> HashIndex:
        if self._hashes is None:
            self._hashes = HashIndex(self.rules.hash_bits, self.rules.crop_bits)
        self._hashes.refresh(self.catalog)
        return self._hashes

    # --- every item ----------------------------------------------------------------------
    def find_all(self, *, write: bool = True) -> GroupReport:
        """Groups over the whole catalog from scratch (stored where `write`)."""
        self._hashes = None
        hashes = self.hashes
        rows = list(hashes.rows)
        by_id = {r.product_id: r for r in rows}
        embeddings = self._embeddings(rows)
        originals = self._originals(embeddings, by_id)
        bar = tqdm(total=len(rows), desc="near-duplicates", unit="item", disable=not self.progress)
        pairs = self._pairs(rows, by_id, embeddings, originals, bar.update)
        bar.close()
        groups = components(by_id, pairs)
        if write:
            current = {r.product_id: r.group_id for r in rows}
            self._store(groups, current)
        return GroupReport(groups, len(rows))

    # --- incremental ---------------------------------------------------------------------
    def before_write(self, product_ids: Sequence[str]) -> set[str]:
        """The groups the products are in now (they leave them when their image changes or
        they go) and, with crops on, those of the stored crops of their current images
        (ungrouped ones by their own id): a crop's one original may change with them."""
        if not product_ids:
            return set()
        rows = self.catalog.image_hashes(product_ids=list(product_ids))
        left = {r.group_id for r in rows if r.group_id is not None}
        if self.rules.crops and rows:
            queries = np.array([h for r in rows for h in r.crops], np.uint64)
            found = {m.row.product_id for m in self.hashes.within(queries, self.rules.crop_bits)}
            crops = sorted(found - set(product_ids))
            if crops:
                left |= {
                    r.group_id or r.product_id for r in self.catalog.image_hashes(product_ids=crops)
                }
        return left

    def after_write(self, product_ids: Sequence[str], left: Iterable[str] = ()) -> None:
        """Group the written products with the candidates they are confirmed with.

        Written products that were in no group (`left` empty: new items, the bulk of an
        ingest) can only join or bridge groups: a union with the groups of their confirmed
        partners, with no pair confirmed before checked again, so a write costs its own
        candidates, not the size of the groups it joins. A product that was in a group had
        its image changed: the groups it left are checked again (they may fall apart), and
        so are those of stored crops whose one original the write changed."""
        rows = self.catalog.image_hashes(product_ids=list(product_ids)) if product_ids else []
        left = set(left)
        by_id = {r.product_id: r for r in rows}
        embeddings = self._embeddings(rows)
        candidates = [(a, b) for a, b in self._candidates(rows, embeddings) if a != b]
        others = sorted({b for _, b in candidates} - set(by_id))
        known = dict(by_id)
        known.update((r.product_id, r) for r in self.catalog.image_hashes(product_ids=others))
        originals = self._originals(embeddings, known)
        pairs: set[tuple[str, str]] = set()
        joined = UnionFind()  # over groups as they stand: partners in one need one crop check
        for a, b in candidates:
            if b not in known:
                continue
            ga, gb = known[a].group_id or a, known[b].group_id or b
            check = originals if joined.root(ga) != joined.root(gb) else None
            if self._confirmed(known[a], known[b], embeddings, check):
                pairs.add((min(a, b), max(a, b)))
                joined.union(ga, gb)
        changed = self._changed_crops(rows, originals)
        if left or changed:
            self._recheck(set(by_id) | changed, left, embeddings, originals)
            return
        # Only what the union touches: every other product keeps its group as it is.
        touched = {known[pid].group_id for pair in pairs for pid in pair} - {None}
        current = {pid: known[pid].group_id for pair in pairs for pid in pair}
        for group_id, group_members in self.catalog.group_members(sorted(touched)).items():
            first = min(group_members)
            for pid in group_members:  # linked as they stand: confirmed when they joined
                current[pid] = group_id
                pairs.add((first, pid))
        self._store(components(known, pairs), current)

    def after_delete(self, left: Iterable[str]) -> None:
        """Re-check the groups deleted products were in (the rest may have fallen apart) and
        the crops whose one original may have gone with them (`before_write`)."""
        left = set(left)
        if left:
            embeddings: dict[int, np.ndarray] = {}
            self._recheck(set(), left, embeddings, self._originals(embeddings))

    def _changed_crops(self, rows: Sequence[HashRow], originals: Originals) -> set[str]:
        """Stored crops (not among `rows`) whose one original the written rows change: one
        of them matches the crop, and the crop's other links are not what they were."""
        if not self.rules.crops or not rows:
            return set()
        written = {r.product_id for r in rows}
        queries = np.array([h for r in rows for h in r.crops], np.uint64)
        found = {m.row.product_id for m in self.hashes.within(queries, self.rules.crop_bits)}
        changed = set()
        for pid in sorted(found - written):
            crop = originals.row(pid)
            if crop is None or not any(
                originals.score(crop, whole) is not None
                for whole in rows
                if self.rules.crop_directions(crop, whole)
            ):
                continue  # no written image is a match of this crop: its links stand
            # Links to the written images are their own candidate pairs; any other change
            # (one lost, or one gained as the written image settled a tie) is a regroup.
            if originals.of(crop, without=written) != originals.of(crop) - written:
                changed.add(pid)
        return changed

    def _recheck(
        self,
        seeds: set[str],
        left: set[str],
        embeddings: dict[int, np.ndarray],
        originals: Originals,
    ) -> None:
        """Regroup the seeds (written products, crops whose links changed, the products
        named in `left` and the members of its groups), their confirmed partners and every
        group any of them is in."""
        for group_members in self.catalog.group_members(sorted(left)).values():
            seeds = seeds | set(group_members)
        rows = self.catalog.image_hashes(product_ids=sorted(seeds | left))
        by_id = {r.product_id: r for r in rows}
        self._load(rows, embeddings)
        partners: dict[str, HashRow] = {}
        for a, b in self._candidates(rows, embeddings):
            if a == b or b in by_id or b in partners:
                continue  # pairs among the seeds: found again by the regroup
            row = originals.row(b)
            if row is not None and self._confirmed(by_id[a], row, embeddings, originals):
                partners[b] = row
        groups = left | {r.group_id for r in (*rows, *partners.values()) if r.group_id}
        members = set(by_id) | set(partners)
        for group_members in self.catalog.group_members(sorted(groups)).values():
            members.update(group_members)
        self._regroup(members, embeddings, originals)

    def _regroup(
        self, members: set[str], embeddings: dict[int, np.ndarray], originals: Originals
    ) -> None:
        """Groups among `members` from scratch, pairs found the way `find_all` finds them
        (candidates, then confirmed): the cost grows with the members, not their square."""
        rows = self.catalog.image_hashes(product_ids=sorted(members))
        by_id = {r.product_id: r for r in rows}
        self._load(rows, embeddings)
        current = {r.product_id: r.group_id for r in rows}
        pairs = self._pairs(rows, by_id, embeddings, originals)
        self._store(components(by_id, pairs), current)

    # --- shared steps --------------------------------------------------------------------
    def _originals(
        self, embeddings: dict[int, np.ndarray], known: dict[str, HashRow] | None = None
    ) -> Originals:
        """One pass's judge of crop links (its crop checks cached)."""
        return Originals(
            self.rules,
            self.hashes,
            lambda ids: self.catalog.image_hashes(product_ids=ids),
            lambda a, b: self._similarity(a, b, embeddings),
            known,
            self._crop_scores,
        )

    def _pairs(
        self,
        rows: Sequence[HashRow],
        by_id: dict[str, HashRow],
        embeddings: dict[int, np.ndarray],
        originals: Originals,
        progress=lambda done: None,
    ) -> set[tuple[str, str]]:
        """Confirmed pairs among `by_id`, enough to join the same groups: the crop check
        (the dearest) is skipped for a pair already joined through others."""
        pairs: set[tuple[str, str]] = set()
        joined = UnionFind()
        for start in range(0, len(rows), BATCH):
            block = rows[start : start + BATCH]
            for a, b in self._candidates(block, embeddings):
                pair = (min(a, b), max(a, b))
                if a == b or b not in by_id or pair in pairs:
                    continue
                check = originals if joined.root(a) != joined.root(b) else None
                if self._confirmed(by_id[a], by_id[b], embeddings, check):
                    pairs.add(pair)
                    joined.union(a, b)
            progress(len(block))
        return pairs

    def _candidates(
        self, rows: Sequence[HashRow], embeddings: dict[int, np.ndarray]
    ) -> Iterable[tuple[str, str]]:
        """(item, candidate) product id pairs from both sources."""
        if not rows:
            return
        hashes = self.hashes
        if self.rules.mode != "embedding":
            queries = np.array([r.phash for r in rows] + [r.phash_mirror for r in rows], np.uint64)
            for match in hashes.within(queries):
                yield rows[match.query % len(rows)].product_id, match.row.product_id
        if self.rules.crops:
            queries = np.array([r.phash for r in rows], np.uint64)
            for match in hashes.crops_within(queries):
                yield rows[match.query].product_id, match.row.product_id
            owners = [i for i, r in enumerate(rows) for _ in r.crops]
            queries = np.array([h for r in rows for h in r.crops], np.uint64)
            for match in hashes.within(queries, self.rules.crop_bits):
                yield rows[owners[match.query]].product_id, match.row.product_id
        if self.rules.mode == "hash" or len(self.index) == 0:
            return
        present = [r for r in rows if r.vector_id in embeddings]
        if not present:
            return
        vectors = np.stack([embeddings[r.vector_id] for r in present])
        k = min(self.rules.neighbours + 1, len(self.index))
        _, found = self.index.search(np.ascontiguousarray(vectors, np.float32), k)
        for i, row in enumerate(present):
            for vector_id in found[i]:
                partner = hashes.by_vector.get(int(vector_id))
                if partner is not None:
                    yield row.product_id, partner.product_id

    def _confirmed(
        self,
        a: HashRow,
        b: HashRow,
        embeddings: dict[int, np.ndarray],
        originals: Originals | None,
    ) -> bool:
        """Whether the pair is linked; the crop rule only where `originals` is given (None:
        the pair is joined through others already, and the crop check is the dearest)."""
        if self.rules.confirms(*self.rules.distances(a, b), self._similarity(a, b, embeddings)):
            return True
        return originals is not None and self.rules.crops and originals.links(a, b)

    def _similarity(self, a: HashRow, b: HashRow, embeddings: dict[int, np.ndarray]) -> float:
        ea, eb = embeddings.get(a.vector_id), embeddings.get(b.vector_id)
        if ea is None or eb is None:
            self._load([a, b], embeddings)
            ea, eb = embeddings.get(a.vector_id), embeddings.get(b.vector_id)
        return float(ea @ eb) if ea is not None and eb is not None else -1.0

    def _embeddings(self, rows: Sequence[HashRow]) -> dict[int, np.ndarray]:
        embeddings: dict[int, np.ndarray] = {}
        self._load(rows, embeddings)
        return embeddings

    def _load(self, rows: Sequence[HashRow], into: dict[int, np.ndarray]) -> None:
        wanted = [r.vector_id for r in rows if r.vector_id not in into]
        model_id = self.index.meta.model_id
        for start in range(0, len(wanted), 10_000):
            into.update(
                self.catalog.embeddings_by_vector_ids(
                    wanted[start : start + 10_000], model_id=model_id
                )
            )

    def _store(self, groups: dict[str, list[str]], current: dict[str, str | None]) -> None:
        wanted: dict[str, str | None] = {pid: None for pid in current}
        for group_id, members in groups.items():
            for pid in members:
                wanted[pid] = group_id
        changed = {pid: g for pid, g in wanted.items() if current.get(pid) != g}
        if changed:
            self.catalog.set_duplicate_groups(changed)


def group_of(catalog: Catalog, product_id: str) -> list[Product]:
    """The other members of the product's near-duplicate group, by id (NotFound if the
    product is unknown; empty when it is in none)."""
    catalog.get(product_id)
    rows = catalog.image_hashes(product_ids=[product_id])
    group = rows[0].group_id if rows else None
    if group is None:
        return []
    members = catalog.group_members([group]).get(group, [])
    found = catalog.get_many([pid for pid in members if pid != product_id])
    return [found[pid] for pid in sorted(found)]


def components(by_id: dict[str, HashRow], pairs: Iterable[tuple[str, str]]) -> dict[str, list[str]]:
    """Connected components of the confirmed pairs with more than one member, keyed by
    their smallest product id."""
    joined = UnionFind()
    for a, b in pairs:
        joined.union(a, b)
    grouped: dict[str, list[str]] = {}
    for pid in list(joined.parent):
        grouped.setdefault(joined.root(pid), []).append(pid)
    return {min(m): sorted(m) for m in grouped.values() if len(m) > 1}


class BoundedScores(dict):
    """A dict that empties itself when it reaches `limit` entries."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit

    def __setitem__(self, key, value) -> None:
        if len(self) >= self.limit:
            self.clear()
        super().__setitem__(key, value)


class UnionFind:
    """Disjoint sets of product ids (path halving; the smaller root wins a union)."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def root(self, x: str) -> str:
        parent = self.parent
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    def union(self, a: str, b: str) -> None:
        ra, rb = self.root(a), self.root(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)
