"""Where items come from: folders, CSV and JSONL manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lookalike.errors import ManifestError
from lookalike.ingest.sources import BadRow, ItemSpec, open_source


def test_folder_is_walked_recursively_with_ids_and_categories(tmp_path: Path):
    (tmp_path / "shoes" / "sub").mkdir(parents=True)
    for name in ("shoes/red_runner.jpg", "shoes/sub/x.PNG", "top.webp", "notes.txt", ".hidden.jpg"):
        (tmp_path / name).write_bytes(b"x")
    items = list(open_source(tmp_path))
    assert [i.id for i in items] == ["top.webp", "shoes/red_runner.jpg", "shoes/sub/x.PNG"]
    runner = items[1]
    assert runner.category == "shoes" and runner.title == "red runner"
    assert Path(runner.image).is_absolute() and items[0].category is None


def test_csv_manifest_with_extras_and_relative_paths(tmp_path: Path):
    (tmp_path / "catalog.csv").write_text(
        "id,image,title,category,brand,price,rating,colour\n"
        "A1,img/a.jpg,Red shoe,shoes,acme,19.99,4.5,red\n"
        "A2,https://example.com/b.jpg,Bag,bags,,,3,\n"
        "A3,img/c.jpg,Bad price,bags,,cheap,,\n"
    )
    rows = list(open_source(tmp_path / "catalog.csv"))
    a1, a2, bad = rows
    assert isinstance(a1, ItemSpec) and a1.image == str((tmp_path / "img/a.jpg").resolve())
    assert (a1.price, a1.attributes) == (19.99, {"rating": 4.5, "colour": "red"})
    assert a2.image == "https://example.com/b.jpg" and a2.brand is None
    assert a2.attributes == {"rating": 3}
    assert isinstance(bad, BadRow) and bad.id == "A3" and "price" in bad.reason


def test_jsonl_manifest_reports_bad_lines_and_keeps_going(tmp_path: Path):
    lines = [
        json.dumps({"id": "x", "image_url": "http://h/x.png", "attributes": {"popularity": 7}}),
        "{not json",
        json.dumps(["a list"]),
        "",
        json.dumps({"image": "y.png", "title": "no id: the image is the id"}),
    ]
    (tmp_path / "c.jsonl").write_text("\n".join(lines))
    rows = list(open_source(tmp_path / "c.jsonl"))
    assert [type(r).__name__ for r in rows] == ["ItemSpec", "BadRow", "BadRow", "ItemSpec"]
    assert rows[0].attributes == {"popularity": 7}
    assert rows[3].id == str((tmp_path / "y.png").resolve())


def test_unreadable_manifests_are_errors(tmp_path: Path):
    (tmp_path / "a.csv").write_text("id,title\n1,x\n")
    with pytest.raises(ManifestError, match="no image column"):
        list(open_source(tmp_path / "a.csv"))
    (tmp_path / "b.xml").write_text("<x/>")
    with pytest.raises(ManifestError, match=r"csv or \.jsonl"):
        open_source(tmp_path / "b.xml")
    with pytest.raises(ManifestError, match="no such"):
        open_source(tmp_path / "missing")
