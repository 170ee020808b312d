"""Image hashes and near-duplicate groups (migrations 0009-0010) on every catalog backend."""

from __future__ import annotations

import numpy as np

from lookalike.catalog import Product, ProductWrite

BIG = 2**64 - 3  # above 2**63: stored as a negative BIGINT, read back unsigned
THUMB = bytes(range(256)) * 16


def hashes(phash: int, mirror: int, crops=(), thumbnail=THUMB, aspect=1.0):
    return (phash, mirror, crops, thumbnail, aspect)


def _write(catalog, pid: str, hashes=None, seed: int = 0) -> None:
    vector = np.random.default_rng(seed).random(4).astype(np.float32)
    catalog.upsert([ProductWrite(Product(pid, model_id="m"), vector, hashes=hashes)])


def test_hashes_follow_the_embedding_they_were_made_with(catalog) -> None:
    _write(catalog, "a", hashes(BIG, 5, (BIG, 0, 2**63), THUMB, 0.75))
    _write(catalog, "b")
    (row,) = catalog.image_hashes()
    assert (row.product_id, row.phash, row.phash_mirror, row.group_id) == ("a", BIG, 5, None)
    assert (row.crops, row.thumbnail, row.aspect) == ((BIG, 0, 2**63), THUMB, 0.75)
    assert [p.id for p in catalog.unhashed_products()] == ["b"]

    # A backfill stores hashes only for the vector it read (b's current one, not a stale id).
    b = catalog.get("b")
    assert (
        catalog.set_image_hashes([("b", b.vector_id, hashes(7, 8)), ("a", 10**6, hashes(1, 1))])
        == 1
    )
    assert {r.product_id: r.phash for r in catalog.image_hashes()} == {"a": BIG, "b": 7}
    assert catalog.unhashed_products() == []

    # Groups: stored, listed by member, and they move the catalog version (caches key on it).
    version = catalog.version()
    catalog.set_duplicate_groups({"a": "a", "b": "a"})
    assert catalog.version() > version
    assert catalog.group_members(["a", "nope"]) == {"a": ["a", "b"]}

    # A new image without hashes drops the old ones; a metadata-only write keeps them.
    catalog.upsert([ProductWrite(Product("b", title="renamed", model_id="m"))])
    assert catalog.image_hashes(product_ids=["b"])[0].group_id == "a"
    _write(catalog, "a", seed=1)
    assert [r.product_id for r in catalog.image_hashes()] == ["b"]
    # New hashes reset the group (the detector finds it again).
    _write(catalog, "b", hashes(3, 4), seed=2)
    assert catalog.image_hashes(product_ids=["b"])[0].group_id is None

    catalog.delete(["b"])
    assert catalog.image_hashes() == []
    assert catalog.image_hashes(after_vector_id=-1, product_ids=["b"]) == []
