"""The Open Clip Art catalog builder, on a generated stand-in with the Debian packages'
layout (and on the packages themselves when they are installed)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from lookalike.demo.openclipart import (
    DEBIAN_ROOT,
    IMAGE_SIDE,
    build_catalog,
    find_source,
    read_metadata,
)
from lookalike.errors import InvalidInput
from lookalike.ingest.sources import open_source
from lookalike.train.captions import caption_variants
from tests.support.openclipart_tree import SECRET, write_tree


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tree(tmp_path_factory.mktemp("oca") / "openclipart")


@pytest.fixture(scope="module")
def built(tree: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("built") / "catalog"
    return build_catalog(out, tree, progress=False, test_fraction=0.3)


def rows(summary) -> list[dict]:
    return [json.loads(line) for line in summary.manifest.read_text().splitlines()]


def test_one_item_per_drawing_with_title_keywords_and_folder_category(built):
    items = rows(built)
    # 18 drawings + the tiny icon; the link, the shared PNG and the bad files are not items.
    assert len(items) == 19 and len({row["id"] for row in items}) == 19
    assert built.categories == {"animals": 6, "food": 6, "transportation": 7}
    cat = next(row for row in items if row["title"] == "Red Cat")
    assert cat["category"] == "animals"
    # Keywords (empty ones dropped) then the SVG's own description.
    assert cat["description"] == "cat, animals, clipart; A drawing of a red cat."
    assert cat["source"] == "svg/animals/mammals/red_cat_01.svg"
    bike = next(row for row in items if row["title"] == "Tiny Bike")
    assert bike["description"] == "bike"  # a description that only repeats the title is dropped
    assert sum(built.items.values()) == 19 and set(built.items) <= {"train", "test"}


def test_bad_files_are_reported_and_skipped(built):
    assert built.skipped == {
        "no PNG rendering": 1,
        "the same PNG as another file": 1,
        "metadata not readable XML": 1,
        "metadata refused (declares XML entities)": 2,
    }


def test_entities_are_never_expanded_and_local_files_never_read(tree: Path, built):
    assert SECRET not in built.manifest.read_text()
    for name in ("bomb", "leak"):
        with pytest.raises(InvalidInput, match="refused"):
            read_metadata(tree / "svg" / "food" / f"{name}.svg")


def test_images_are_squares_on_white_and_pass_default_validation(built):
    for item in open_source(built.manifest):
        with Image.open(item.image) as image:
            assert image.size == (IMAGE_SIDE, IMAGE_SIDE) and image.mode == "RGB"
            assert image.getpixel((0, 0)) == (255, 255, 255)  # transparency became white
    bike = next(i for i in open_source(built.manifest) if i.title == "Tiny Bike")
    with Image.open(bike.image) as image:  # a 16x12 icon grew to fill the side
        assert image.getbbox() is not None
        assert image.getpixel((IMAGE_SIDE // 2, IMAGE_SIDE // 2)) == (40, 40, 200)


def test_the_split_is_seeded_and_a_rebuild_keeps_images(tree: Path, built, tmp_path: Path):
    again = build_catalog(built.manifest.parent, tree, progress=False, test_fraction=0.3)
    assert again.written == 0 and rows(again) == rows(built)
    other = build_catalog(tmp_path / "seed1", tree, progress=False, test_fraction=0.3, seed=1)
    assert [r["split"] for r in rows(other)] != [r["split"] for r in rows(built)]


def test_captions_use_the_title_the_category_and_the_keywords(built):
    item = next(i for i in open_source(built.manifest) if i.title == "Sleepy Dog")
    captions = caption_variants(item)
    assert captions[0] == "Sleepy Dog"
    assert "a photo of a animals" in captions
    assert "dog, animals, clipart; A drawing of a sleepy dog." in captions


def test_the_eval_queries_ask_for_titles_and_the_train_gallery(built):
    queries = json.loads((built.manifest.parent / "eval_queries.json").read_text())
    assert queries == {"split": "test", "gallery_split": "train", "titles": True}


def test_a_folder_without_the_packages_says_how_to_install_them(tmp_path: Path):
    with pytest.raises(InvalidInput, match="openclipart-svg and openclipart-png"):
        build_catalog(tmp_path / "out", tmp_path / "nothing", progress=False)


@pytest.mark.skipif(find_source() is None, reason="Debian openclipart-svg/-png not installed")
def test_the_debian_packages_metadata_reads_as_written():
    armadillo = read_metadata(DEBIAN_ROOT / "svg" / "animals" / "armadillo_architetto_fra_01.svg")
    assert armadillo.title == "Armadillo"
    assert "animal" in armadillo.keywords
