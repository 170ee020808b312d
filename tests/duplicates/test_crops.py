"""Cropped copies on a real catalog (tiny model, SQLite, FAISS binary indexes): a crop of
a real clip-art image joins its group whichever is written first, a look-alike sibling
whose hash makes it a crop candidate does not, and writes and deletes keep groups right.

The embedding rules are switched off (the tiny random-init model puts every image close to
every other), and so is the whole-image hash rule: what groups a crop here is the sub-crop
hashes and the thumbnail check alone."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from lookalike import Engine
from lookalike.duplicates.crop_match import NO_MATCH, CropScore, crop_match, thumbnail_image
from lookalike.encode.phash import hamming, perceptual_hashes
from lookalike.ingest.sources import ItemSpec
from tests.support.images import pattern_image

DATA = Path(__file__).parent / "data"


def image(name: str) -> Image.Image:
    with Image.open(DATA / f"{name}.png") as raw:
        return raw.convert("RGB")


def cropped(source: Image.Image, keep=(0.82, 0.88), at=(0.7, 0.2)) -> Image.Image:
    """Keep `keep` of each side, the cut shared out as `at` (0: all on the right/bottom)."""
    w, h = source.size
    kw, kh = round(w * keep[0]), round(h * keep[1])
    x, y = round((w - kw) * at[0]), round((h - kh) * at[1])
    return source.crop((x, y, x + kw, y + kh))


def png(picture: Image.Image) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return buffer.getvalue()


def match(a: Image.Image, b: Image.Image) -> CropScore:
    ha, hb = perceptual_hashes(a), perceptual_hashes(b)
    return crop_match(
        thumbnail_image(ha.thumbnail), ha.aspect, thumbnail_image(hb.thumbnail), hb.aspect
    )


def test_a_crop_lines_up_with_its_original_and_a_sibling_does_not() -> None:
    piece, sibling = image("chess-piece"), image("chess-sibling")
    crop = cropped(piece)
    # Its whole-image hash moved away, but lands near one of the original's sub-crops.
    stored = perceptual_hashes(piece)
    assert hamming(perceptual_hashes(crop).phash, stored.phash) > 8
    assert min(hamming(perceptual_hashes(crop).phash, h) for h in stored.crops) <= 12
    # The sibling is as near by sub-crop hash: only the pixels tell them apart.
    assert min(hamming(perceptual_hashes(sibling).phash, h) for h in stored.crops) <= 12
    score = match(crop, piece)
    assert score.colour >= 0.92 and score.edges >= 0.86
    for score in (match(sibling, piece), match(piece, sibling)):
        assert score.colour < 0.9 and score.edges < 0.86
    # A tall crop of a wide image cannot be one: no region keeps 76-100% of each side.
    assert match(crop.resize((crop.width, crop.height * 2)), piece) == NO_MATCH


@pytest.fixture
def crop_engine(settings):
    tuned = settings.model_copy(
        update={
            "duplicate_hash_similarity": 1.01,
            "duplicate_similarity": 1.01,
            "duplicate_crops": True,
        }
    )
    with Engine(tuned) as engine:
        yield engine


def upsert(engine: Engine, pid: str, picture: Image.Image) -> None:
    engine.upsert(ItemSpec(id=pid, image=None, title=pid), png(picture))


def groups_of(engine: Engine) -> list[list[str]]:
    groups: dict[str, list[str]] = {}
    for row in engine.catalog.image_hashes():
        if row.group_id is not None:
            groups.setdefault(row.group_id, []).append(row.product_id)
    return sorted(sorted(m) for m in groups.values())


def test_writes_group_a_crop_whichever_comes_first(crop_engine) -> None:
    engine = crop_engine
    piece, sibling = image("chess-piece"), image("chess-sibling")
    upsert(engine, "piece", piece)
    upsert(engine, "sibling", sibling)
    upsert(engine, "crop", cropped(piece))
    assert groups_of(engine) == [["crop", "piece"]]
    # The full pass agrees.
    report, _ = engine.near_duplicates()
    assert sorted(report.groups.values()) == [["crop", "piece"]]

    # The original goes: the crop is alone. It comes back after its crop: found again
    # (its sub-crop hashes meet the stored crop's whole-image hash).
    engine.delete("piece")
    assert groups_of(engine) == []
    upsert(engine, "piece", piece)
    assert groups_of(engine) == [["crop", "piece"]]

    # A second crop from the other corner joins the group; replacing its image with an
    # unrelated one takes it out again.
    upsert(engine, "crop-2", cropped(piece, keep=(0.9, 0.8), at=(0.0, 1.0)))
    assert groups_of(engine) == [["crop", "crop-2", "piece"]]
    upsert(engine, "crop-2", pattern_image(7, size=128))
    assert groups_of(engine) == [["crop", "piece"]]
    assert [p.id for p in engine.duplicates_of("piece")] == ["crop"]


def test_the_rule_before_crops_misses_them(crop_engine) -> None:
    from lookalike.duplicates import DuplicateFinder, DuplicateRules

    engine = crop_engine
    piece = image("chess-piece")
    upsert(engine, "piece", piece)
    upsert(engine, "crop", cropped(piece))
    index = engine.live_index.index
    whole = DuplicateRules.from_settings(engine.settings, mode="whole")
    assert DuplicateFinder(engine.catalog, index, whole).find_all(write=False).groups == {}
    both = DuplicateRules.from_settings(engine.settings)
    assert DuplicateFinder(engine.catalog, index, both).find_all(write=False).groups == {
        "crop": ["crop", "piece"]
    }


def test_images_hashed_before_crop_hashes_are_hashed_again(crop_engine) -> None:
    import sqlite3

    engine = crop_engine
    piece = image("chess-piece")
    upsert(engine, "piece", piece)
    upsert(engine, "crop", cropped(piece))
    # As a catalog written before migration 0010 would be: whole-image hashes only.
    with sqlite3.connect(engine.settings.data_dir / "catalog.db") as conn:
        conn.execute(
            "UPDATE image_hashes SET crop_hashes = NULL, thumbnail = NULL, group_id = NULL"
        )
    assert len(engine.catalog.unhashed_products(crops=True)) == 2
    assert engine.catalog.unhashed_products() == []  # crops off: whole-image hashes suffice
    report, backfill = engine.near_duplicates()
    assert backfill.hashed == 2 and not backfill.failed
    assert sorted(report.groups.values()) == [["crop", "piece"]]


def test_crops_off_by_default_store_no_crop_hashes_until_turned_on(settings) -> None:
    import sqlite3

    tuned = settings.model_copy(
        update={"duplicate_hash_similarity": 1.01, "duplicate_similarity": 1.01}
    )
    assert tuned.duplicate_crops is False
    piece = image("chess-piece")
    with Engine(tuned) as engine:
        upsert(engine, "piece", piece)
        upsert(engine, "crop", cropped(piece))
        assert groups_of(engine) == []  # the rule before crops misses a crop
    with sqlite3.connect(tuned.data_dir / "catalog.db") as conn:
        stored = conn.execute(
            "SELECT COUNT(*), COUNT(crop_hashes), COUNT(thumbnail) FROM image_hashes"
        ).fetchone()
    assert stored == (2, 0, 0)  # whole-image hashes only: no thumbnails kept
    with Engine(tuned.model_copy(update={"duplicate_crops": True})) as engine:
        report, backfill = engine.near_duplicates()  # hashes the sub-crops it now needs
        assert backfill.hashed == 2 and not backfill.failed
        assert sorted(report.groups.values()) == [["crop", "piece"]]


def test_a_crop_joins_its_own_original_not_a_mirror_image_siblings_copy(crop_engine) -> None:
    """A play button, its rewind sibling and the rewind button's mirrored copy (grouped
    with it as a mirror image): a crop of the play button lines up with the mirrored
    rewind button too, but better with its own original, and a crop has one original."""
    from lookalike.duplicates import DuplicateFinder, DuplicateRules

    engine = crop_engine
    play, rewind = image("button-next"), image("button-back")
    crop = cropped(play, keep=(0.84, 0.86), at=(0.3, 0.6))
    upsert(engine, "play", play)
    upsert(engine, "rewind", rewind)
    upsert(engine, "play-crop", crop)  # before the sibling's mirrored copy ...
    upsert(engine, "rewind-mirror", rewind.transpose(Image.FLIP_LEFT_RIGHT))  # ... and after
    right = [["play", "play-crop"], ["rewind", "rewind-mirror"]]
    assert groups_of(engine) == right
    index = engine.live_index.index
    rules = DuplicateRules.from_settings(engine.settings)
    assert sorted(DuplicateFinder(engine.catalog, index, rules).find_all().groups.values()) == right
    # Linking every crop-check pass (the rule before one original) bridges the two groups.
    every = DuplicateFinder(engine.catalog, index, replace(rules, one_original=False))
    assert sorted(every.find_all(write=False).groups.values()) == [
        ["play", "play-crop", "rewind", "rewind-mirror"]
    ]

    # Written in the other order, the crop after the mirrored copy: the same groups.
    for pid in ("play-crop", "rewind-mirror"):
        engine.delete(pid)
    upsert(engine, "rewind-mirror", rewind.transpose(Image.FLIP_LEFT_RIGHT))
    upsert(engine, "play-crop", crop)
    assert groups_of(engine) == right

    # Its original gone, the crop's best match is the mirrored sibling; the original back,
    # the crop leaves that group again. The writes keep what a full pass finds.
    engine.delete("play")
    assert groups_of(engine) == [["play-crop", "rewind", "rewind-mirror"]]
    upsert(engine, "play", play)
    assert groups_of(engine) == right
    # Its original's image replaced by an unrelated one: as good as gone.
    upsert(engine, "play", pattern_image(7, size=128))
    assert groups_of(engine) == [["play-crop", "rewind", "rewind-mirror"]]
    upsert(engine, "play", play)
    assert groups_of(engine) == right
    assert sorted(DuplicateFinder(engine.catalog, index, rules).find_all().groups.values()) == right


def test_a_crop_two_images_match_alike_joins_neither_until_one_goes(crop_engine) -> None:
    """The play button and a copy framed in black where the crop cut: a crop lines up with
    both exactly, and their hashes and pixels do not pair them, so the crop has two
    candidate originals and joins neither. Deleting one leaves it one original; writing it
    back takes that away again. The writes keep what a full pass finds."""
    from lookalike.duplicates import DuplicateFinder, DuplicateRules

    engine = crop_engine
    play = image("button-next")
    keep, at = (0.84, 0.86), (0.3, 0.6)
    crop = cropped(play, keep=keep, at=at)
    framed = play.copy()
    w, h = play.size
    right = round((w - round(w * keep[0])) * at[0]) + round(w * keep[0])
    bottom = round((h - round(h * keep[1])) * at[1]) + round(h * keep[1])
    draw = ImageDraw.Draw(framed)
    # Only where the crop cut, a few pixels clear of it (thumbnails blend across the cut).
    draw.rectangle((right + 4, 0, w, h), fill=(0, 0, 0))
    draw.rectangle((0, bottom + 4, w, h), fill=(0, 0, 0))
    assert match(crop, play) == match(crop, framed)

    def full_pass() -> list[list[str]]:
        rules = DuplicateRules.from_settings(engine.settings)
        finder = DuplicateFinder(engine.catalog, engine.live_index.index, rules)
        return sorted(finder.find_all(write=False).groups.values())

    upsert(engine, "play", play)
    upsert(engine, "framed", framed)
    upsert(engine, "play-crop", crop)
    assert groups_of(engine) == full_pass() == []
    engine.delete("framed")
    assert groups_of(engine) == full_pass() == [["play", "play-crop"]]
    upsert(engine, "framed", framed)
    assert groups_of(engine) == full_pass() == []
