"""The result-quality commands end to end on a real catalog: `index` calibrates the floor,
`calibrate`, `search --min-score/--no-floor/--collapse-duplicates`, `eval-floor`,
`near-duplicates` (groups as JSON, CSV and a contact sheet)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import ImageOps
from typer.testing import CliRunner

from lookalike.cli import app
from tests.support.images import pattern_image


@pytest.fixture
def shop(tmp_path: Path, tiny_model_dir: Path, monkeypatch) -> Path:
    monkeypatch.setenv("LOOKALIKE_MODEL_CHECKPOINT", str(tiny_model_dir))
    monkeypatch.setenv("LOOKALIKE_DEVICE", "cpu")
    monkeypatch.setenv("LOOKALIKE_DATA_DIR", str(tmp_path / "data"))
    # The tiny random model's embeddings do not tell these images apart: hashes decide.
    monkeypatch.setenv("LOOKALIKE_DUPLICATE_HASH_SIMILARITY", "-1")
    folder = tmp_path / "shop"
    for i in range(10):
        (folder / f"cat{i % 2}").mkdir(parents=True, exist_ok=True)
        pattern_image(200 + i, size=96).save(folder / f"cat{i % 2}" / f"item-{i}.png")
    ImageOps.mirror(pattern_image(200, size=96)).save(folder / "cat0" / "mirrored.png")
    return folder


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_index_calibrates_and_search_honours_the_floor(shop: Path) -> None:
    out = run("index", str(shop), "-q")
    assert "11 added" in out and "relevance floor for model" in out
    assert "| text |" in out and "| image |" in out and "| hybrid |" in out
    assert "| text |" in run("calibrate")
    strict = run("search", "--text", "anything", "--min-score", "1.0")
    assert "no close matches" in strict and "11 weaker hits under the relevance floor" in strict
    loose = json.loads(run("search", "--text", "anything", "--no-floor", "--json"))
    assert len(loose["results"]) == 11 and loose["below_floor"] == 0
    assert loose["min_score"] is None
    table = run("eval-floor", "--limit", "5")
    assert "| in-catalog text: class prompts |" in table and "off-catalog text: all" in table


def test_near_duplicates_writes_groups_and_search_collapses_them(shop: Path, tmp_path) -> None:
    run("index", str(shop), "-q", "--no-calibrate")
    out = run("near-duplicates", "-q", "--out", str(tmp_path / "report"))
    assert "1 groups with 2 of 11 images" in out
    groups = json.loads((tmp_path / "report" / "groups.json").read_text())["groups"]
    assert groups == [
        {"group": "cat0/item-0.png", "members": ["cat0/item-0.png", "cat0/mirrored.png"]}
    ]
    assert (tmp_path / "report" / "groups.csv").read_text().count("\n") == 3
    sheet = (tmp_path / "report" / "contact-sheet.html").read_text()
    assert sheet.count("data:image/jpeg;base64,") == 2
    image = str(shop / "cat0" / "item-0.png")
    found = run("search", "--image", image, "--no-floor", "--collapse-duplicates")
    assert "near-duplicates: cat0/mirrored.png" in found
    assert "10 results" in found


def test_both_floor_options_at_once_are_refused(shop: Path) -> None:
    result = CliRunner().invoke(app, ["search", "--text", "x", "--min-score", "0.5", "--no-floor"])
    assert result.exit_code == 2 and "not both" in result.output
