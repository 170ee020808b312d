"""Near-duplicate groups on a real catalog (tiny model, SQLite, FAISS): found by the full
pass, kept current by writes and deletes, hashed back from stored sources, collapsed in
search, and written out as JSON, CSV and a contact sheet."""

from __future__ import annotations

import io
import json
import sqlite3
from pathlib import Path

import pytest
from PIL import Image, ImageOps

from lookalike import Engine
from lookalike.duplicates.report import write_contact_sheet, write_csv, write_json
from lookalike.encode.phash import hamming, perceptual_hashes
from lookalike.ingest.sources import ItemSpec
from lookalike.search import SearchRequest
from tests.support.images import pattern_image


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_hashes_survive_resizing_and_see_the_mirror() -> None:
    image = pattern_image(1, size=128)
    h, mirror, *_ = perceptual_hashes(image)
    assert hamming(h, perceptual_hashes(image.resize((64, 64)))[0]) <= 4
    # A mirrored copy's hash is the original's mirror hash.
    assert hamming(perceptual_hashes(ImageOps.mirror(image))[0], mirror) <= 2
    assert hamming(h, perceptual_hashes(pattern_image(2, size=128))[0]) > 12


@pytest.fixture
def dup_engine(settings, tmp_path: Path):
    """Eight distinct images, and copies of two of them (resized; mirrored) in one folder.
    The tiny random-init model's embeddings put every image close to every other, so the
    hash decides here: the embedding check is set to what any two images reach."""
    folder = tmp_path / "shop"
    (folder / "things").mkdir(parents=True)
    for i in range(8):
        pattern_image(100 + i, size=128).save(folder / "things" / f"item-{i}.png")
    pattern_image(100, size=128).resize((90, 90)).save(folder / "things" / "copy-resized.png")
    ImageOps.mirror(pattern_image(101, size=128)).save(folder / "things" / "copy-mirror.png")
    tuned = settings.model_copy(
        update={"duplicate_hash_similarity": -1.0, "duplicate_similarity": 1.01}
    )
    with Engine(tuned) as engine:
        report = engine.index_path(folder)
        assert report.added == 10 and not report.failed
        yield engine, folder


def groups_of(engine: Engine) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for row in engine.catalog.image_hashes():
        if row.group_id is not None:
            groups.setdefault(row.group_id, []).append(row.product_id)
    return {g: sorted(m) for g, m in groups.items()}


EXPECTED = {
    "things/copy-resized.png": ["things/copy-resized.png", "things/item-0.png"],
    "things/copy-mirror.png": ["things/copy-mirror.png", "things/item-1.png"],
}


def test_the_ingest_groups_copies_as_they_are_written(dup_engine) -> None:
    engine, _ = dup_engine
    assert sorted(groups_of(engine).values()) == sorted(EXPECTED.values())
    # The full pass agrees with what the writes left.
    report, backfill = engine.near_duplicates()
    assert sorted(report.groups.values()) == sorted(EXPECTED.values())
    assert backfill.hashed == 0 and report.items == 10


def test_writes_and_deletes_keep_groups_current(dup_engine) -> None:
    engine, _ = dup_engine
    # A new upload of a smaller item-2 forms a group with it.
    smaller = png(pattern_image(102, 128).resize((80, 80)))
    engine.upsert(ItemSpec(id="upload-2", image=None, title="item 2 again"), smaller)
    assert ["things/item-2.png", "upload-2"] in groups_of(engine).values()
    # Replacing its image with an unrelated one takes it out; item-2 is alone again.
    engine.upsert(ItemSpec(id="upload-2", image=None), png(pattern_image(555, 128)))
    assert not any({"upload-2", "things/item-2.png"} & set(m) for m in groups_of(engine).values())
    # Deleting a copy dissolves a pair; the other group stays.
    engine.delete("things/copy-mirror.png")
    assert list(groups_of(engine).values()) == [EXPECTED["things/copy-resized.png"]]
    assert [p.id for p in engine.duplicates_of("things/item-0.png")] == ["things/copy-resized.png"]
    assert engine.duplicates_of("things/item-3.png") == []


def test_images_without_hashes_are_read_back_from_their_sources(dup_engine) -> None:
    engine, _ = dup_engine
    # As a catalog written before hashes existed (or by the Ray engine) would be.
    with sqlite3.connect(engine.settings.data_dir / "catalog.db") as conn:
        conn.execute("DELETE FROM image_hashes")
    assert len(engine.catalog.unhashed_products()) == 10
    report, backfill = engine.near_duplicates()
    assert backfill.hashed == 10 and not backfill.failed
    assert sorted(report.groups.values()) == sorted(EXPECTED.values())


def test_collapse_keeps_one_hit_per_group_and_lists_the_rest(dup_engine) -> None:
    engine, folder = dup_engine
    query = folder / "things" / "item-0.png"
    plain = engine.search(SearchRequest(images=[str(query)], limit=10, min_score=-1))
    ids = [h.product.id for h in plain.hits]
    assert {"things/item-0.png", "things/copy-resized.png"} <= set(ids)
    collapsed = engine.search(
        SearchRequest(images=[str(query)], limit=10, min_score=-1, collapse="duplicates")
    )
    kept = [h.product.id for h in collapsed.hits]
    assert len(kept) == 8  # ten items, two groups of two
    for group in EXPECTED.values():
        shown = [pid for pid in kept if pid in group]
        assert len(shown) == 1
        hit = next(h for h in collapsed.hits if h.product.id == shown[0])
        assert hit.duplicates == [pid for pid in group if pid != shown[0]]
    # The best-ranked member of a group is the one shown.
    first = ids.index("things/item-0.png") < ids.index("things/copy-resized.png")
    assert ("things/item-0.png" if first else "things/copy-resized.png") in kept


def test_groups_are_written_as_json_csv_and_a_contact_sheet(dup_engine, tmp_path) -> None:
    engine, folder = dup_engine
    groups = groups_of(engine)
    data = json.loads(write_json(tmp_path / "g.json", groups).read_text())
    assert sorted(g["members"] for g in data["groups"]) == sorted(EXPECTED.values())
    rows = (write_csv(tmp_path / "g.csv", groups, engine.catalog)).read_text().splitlines()
    assert rows[0].startswith("group,product_id") and len(rows) == 5
    sheet = write_contact_sheet(
        tmp_path / "sheet.html",
        groups,
        engine.catalog,
        lambda p: Image.open(folder / p.id),
    ).read_text()
    assert sheet.count("<section") == 2 and sheet.count("data:image/jpeg;base64,") == 4


def test_the_confirmation_rule() -> None:
    from lookalike.duplicates import DuplicateRules

    rules = DuplicateRules(hash_bits=8, loose_bits=16, hash_similarity=0.99, similarity=0.999)
    assert rules.confirms(3, 30, 0.995)  # close hashes, embeddings agree
    assert not rules.confirms(3, 30, 0.95)  # close hashes, unlike images: a collision
    assert rules.confirms(30, 0, 0.5)  # a mirror image: the hashes decide
    assert not rules.confirms(30, 5, 0.5)  # near the mirror hash only loosely: not enough
    assert rules.confirms(14, 30, 0.9995)  # a crop: embeddings agree, hashes loosely
    assert not rules.confirms(20, 30, 0.9995)  # ... but not an unrelated image's hash
    assert DuplicateRules(mode="hash").confirms(8, 40, -1.0)
    assert DuplicateRules(mode="embedding").confirms(40, 40, 0.9995)
    assert not DuplicateRules(mode="embedding").confirms(0, 0, 0.99)
