"""A cropped copy has one original: which of the images a crop matches it is linked to.

The crop check (`crop_match.py`) asks only whether one image lines up with a region of
another. Mirror-image siblings (a left and a right arrow) and siblings of one silhouette
pass it too: a crop of one arrow is, pixel for pixel at 64x64, a crop of the other's
mirrored copy. But a cropped copy is a crop of exactly one image's copies, and where that
image is in the catalog the crop lines up with it better than with a sibling. So a crop is
linked only to the image it matches best (colour plus edge correlation) and to that image's
own copies (those the whole-image rule or their hashes pair with it, and those matching within
`crop_margin` of the best that line up with it by the crop check: a watermarked copy), and
to none when an image that is neither matches within the margin: evidence that cannot tell
two originals apart joins neither.

The decision for a crop depends on every image it matches, not only on the pair at hand,
so the detector re-checks a crop's group when a write or delete changes what it matches
(`DuplicateFinder.after_write`, `before_write`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable
from typing import TYPE_CHECKING

import numpy as np

from lookalike.catalog.base import HashRow
from lookalike.duplicates.crop_match import crop_match, thumbnail_image
from lookalike.duplicates.hash_index import HashIndex

if TYPE_CHECKING:
    from lookalike.duplicates.detector import DuplicateRules


class Originals:
    """The images each crop is linked to, for one pass: crop checks and rows are cached, so
    a pair is scored once however many of its neighbours ask."""

    def __init__(
        self,
        rules: DuplicateRules,
        hashes: HashIndex,
        rows: Callable[[list[str]], Iterable[HashRow]],
        similarity: Callable[[HashRow, HashRow], float],
        known: dict[str, HashRow] | None = None,
        scores: dict[tuple[int, int, int, int], float | None] | None = None,
    ) -> None:
        self.rules = rules
        self.hashes = hashes
        self._read_rows = rows
        self._similarity = similarity
        self._rows: dict[str, HashRow | None] = dict(known or {})
        # Keyed by the images (vector ids and thumbnails): safe to share between passes.
        self._scores = {} if scores is None else scores

    def score(self, crop: HashRow, whole: HashRow) -> float | None:
        """Colour plus edge correlation where `crop` passes the crop check against `whole`
        (None where it does not)."""
        # Vector ids change with the image; a backfill adds a thumbnail to a kept one.
        key = (crop.vector_id, whole.vector_id, hash(crop.thumbnail), hash(whole.thumbnail))
        if key not in self._scores:
            small, large = thumbnail_image(crop.thumbnail), thumbnail_image(whole.thumbnail)
            found = None
            if small is not None and large is not None and small.size == large.size:
                match = crop_match(small, crop.aspect, large, whole.aspect)
                if match.colour >= self.rules.crop_match and match.edges >= self.rules.crop_edges:
                    found = match.colour + match.edges
            self._scores[key] = found
        return self._scores[key]

    def wholes(self, crop: HashRow, without: Collection[str] = ()) -> list[tuple[float, HashRow]]:
        """(score, image) for every image `crop` passes the crop check against: those with a
        sub-crop hash near its hash (their current rows), less the ids in `without`."""
        queries = np.array([crop.phash], np.uint64)
        ids = {m.row.product_id for m in self.hashes.crops_within(queries)}
        ids -= {crop.product_id, *without}
        self._fetch(ids)
        found = []
        for pid in sorted(ids):
            whole = self._rows.get(pid)
            if whole is None or not self.rules.crop_directions(crop, whole):
                continue  # gone, or its image changed since it was indexed
            if (score := self.score(crop, whole)) is not None:
                found.append((score, whole))
        return found

    def of(self, crop: HashRow, without: Collection[str] = ()) -> frozenset[str]:
        """The images `crop` is linked to as a crop (ids in `without` left out, as if they
        were not in the catalog): its best match and that one's copies among the others,
        or none when another image matches within the margin of the best."""
        found = self.wholes(crop, without)
        if not found:
            return frozenset()
        if not self.rules.one_original:
            return frozenset(w.product_id for _, w in found)
        top, best = max(found, key=lambda f: (f[0], f[1].product_id))
        kin = self._kin(best, [w for _, w in found])
        for score, whole in found:
            if whole.product_id in kin or top - score >= self.rules.crop_margin:
                continue
            # As close as the best: one of its copies (a watermarked copy lines up with it
            # whole), or a second original, which leaves the crop with none.
            if not any(
                self.score(small, large) is not None
                for small, large in self.rules.crop_directions(best, whole)
            ):
                return frozenset()
            kin.add(whole.product_id)
        return frozenset(kin)

    def _kin(self, best: HashRow, wholes: list[HashRow]) -> set[str]:
        """`best` and the images among `wholes` linked to it, or to one linked to it, by
        the whole-image rule or by hashes within `hash_bits` (or mirrored): its copies. The
        hashes alone are enough here, as both already line up with the crop (a
        re-compressed or watermarked copy the embeddings put below the rule's similarity)."""
        kin = {best.product_id: best}
        rest = [w for w in wholes if w.product_id != best.product_id]
        grown = True
        while grown:
            grown = False
            for whole in rest:
                if whole.product_id not in kin and any(
                    self._copies(k, whole) for k in kin.values()
                ):
                    kin[whole.product_id] = whole
                    grown = True
        return set(kin)

    def _copies(self, a: HashRow, b: HashRow) -> bool:
        direct, mirrored = self.rules.distances(a, b)
        return min(direct, mirrored) <= self.rules.hash_bits or self.rules.confirms(
            direct, mirrored, self._similarity(a, b)
        )

    def links(self, a: HashRow, b: HashRow) -> bool:
        """Whether the crop rule links the two (either may be the crop)."""
        return any(
            whole.product_id in self.of(crop) for crop, whole in self.rules.crop_directions(a, b)
        )

    def row(self, product_id: str) -> HashRow | None:
        """The product's current row (None where it has none)."""
        self._fetch([product_id])
        return self._rows.get(product_id)

    def _fetch(self, ids: Iterable[str]) -> None:
        wanted = sorted(pid for pid in ids if pid not in self._rows)
        if not wanted:
            return
        for pid in wanted:
            self._rows[pid] = None
        for row in self._read_rows(wanted):
            self._rows[row.product_id] = row
