"""Caps and finite numbers at the batch and queue entries: manifest rows (CSV, JSONL) and
events that a product may not hold become reported skips or typed errors, never a row in
the catalog; the CLI reports them and indexes the rest."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lookalike.catalog import ProductFilter
from lookalike.cli import app as cli_app
from lookalike.config import Settings
from lookalike.engine import Engine
from lookalike.errors import InvalidInput
from lookalike.ingest.events import parse_event
from lookalike.ingest.sources import BadRow, ItemSpec, open_source

HOSTILE_JSONL = [
    '{"id": "nan-attr", "image": "a.png", "attributes": {"popularity": NaN}}',
    '{"id": "inf-extra", "image": "a.png", "rating": Infinity}',
    '{"id": "neg-inf-price", "image": "a.png", "price": -Infinity}',
    json.dumps({"id": "long-title", "image": "a.png", "title": "t" * 1001}),
    json.dumps({"id": "x" * 1001, "image": "a.png"}),
    json.dumps({"id": "deep", "image": "a.png", "attributes": {"a": [[[[[1]]]]]}}),
    json.dumps({"id": "many", "image": "a.png", "attributes": {f"k{i}": i for i in range(101)}}),
    json.dumps({"id": "nul", "image": "a.png", "brand": "a\u0000b"}),
    '{"id": "huge-int", "image": "a.png", "n": ' + "9" * 5000 + "}",
    "[" * 100_000 + "]" * 100_000,
    json.dumps({"id": "list-attributes", "image": "a.png", "attributes": ["a", "b"]}),
    json.dumps({"id": "fine", "image": "a.png", "attributes": {"popularity": 3.5}}),
]


def test_jsonl_rows_a_product_may_not_hold_are_reported_skips(tmp_path: Path) -> None:
    (tmp_path / "c.jsonl").write_text("\n".join(HOSTILE_JSONL))
    rows = list(open_source(tmp_path / "c.jsonl"))
    assert len(rows) == len(HOSTILE_JSONL)
    *bad, fine = rows
    assert all(isinstance(row, BadRow) for row in bad), [
        r for r in bad if not isinstance(r, BadRow)
    ]
    assert isinstance(fine, ItemSpec) and fine.attributes == {"popularity": 3.5}
    reasons = [row.reason for row in bad]
    assert "not a finite number" in reasons[0] and "not a finite number" in reasons[1]
    assert "finite, non-negative" in reasons[2]
    assert "title is 1001" in reasons[3] and "product id is 1001" in reasons[4]
    assert "nested deeper" in reasons[5] and "at most 100" in reasons[6]
    assert "NUL" in reasons[7] and "invalid JSON" in reasons[8] and "invalid JSON" in reasons[9]
    assert "must be an object" in reasons[10]
    assert all(len(row.id) <= 200 for row in bad)


def test_csv_cells_stay_text_unless_they_are_finite_numbers(tmp_path: Path) -> None:
    (tmp_path / "c.csv").write_text(
        "id,image,title,rating,note\n"
        "a,a.png,ok,nan,inf\n"
        f"b,b.png,{'t' * 1001},1,x\n"
        "c,c.png,ok,1e999,-Infinity\n"
    )
    a, b, c = open_source(tmp_path / "c.csv")
    assert isinstance(a, ItemSpec) and a.attributes == {"rating": "nan", "note": "inf"}
    assert isinstance(b, BadRow) and "title is 1001" in b.reason
    assert isinstance(c, ItemSpec) and c.attributes == {"rating": "1e999", "note": "-Infinity"}


@pytest.mark.parametrize(
    ("event", "message"),
    [
        (
            '{"type": "product_created", "id": "a", "image_url": "http://h/a.png", "x": NaN}',
            "finite",
        ),
        ('{"type": "product_updated", "product": {"id": "a", "price": Infinity}}', "finite"),
        (json.dumps({"type": "product_created", "id": "a", "title": "t" * 1001}), "title is"),
        (json.dumps({"type": "product_deleted", "id": "x" * 1001}), "product id is"),
        (json.dumps({"type": "product_deleted", "id": 2**70}), "out of range"),
        (json.dumps({"type": {"not": "hashable"}, "id": "a"}), "unknown event type"),
        (json.dumps({"type": "product_deleted", "id": "  "}), "without a product id"),
        ('{"type": "product_created", "id": "a", "n": ' + "9" * 5000 + "}", "not valid JSON"),
        ("[" * 100_000, "not valid JSON"),
    ],
)
def test_events_a_product_may_not_hold_are_typed_errors(event: str, message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        parse_event({"event": event})


def test_the_cli_reports_the_skips_and_indexes_the_rest(
    tmp_path: Path, tiny_model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from PIL import Image

    Image.new("RGB", (64, 64), "red").save(tmp_path / "a.png")
    (tmp_path / "c.jsonl").write_text("\n".join(HOSTILE_JSONL))
    monkeypatch.setenv("LOOKALIKE_MODEL_CHECKPOINT", str(tiny_model_dir))
    data_dir = tmp_path / "data"
    result = CliRunner().invoke(
        cli_app, ["index", str(tmp_path / "c.jsonl"), "--data-dir", str(data_dir), "-q"]
    )
    assert result.exit_code == 0, result.output
    assert "skipped nan-attr" in result.output and "not a finite number" in result.output
    assert (
        f"1 added, 0 re-encoded, 0 metadata updated, 0 unchanged, {len(HOSTILE_JSONL) - 1} failed"
        in result.output
    )

    found = CliRunner().invoke(
        cli_app, ["search", "--text", "red", "--data-dir", str(data_dir), "--json"]
    )
    assert found.exit_code == 0, found.output
    assert [hit["id"] for hit in json.loads(found.output)["results"]] == ["fine"]
    # A search filtered on an attribute still answers: no NaN got in (stored, it made
    # SQLite before 3.42 fail every such search).
    settings = Settings(_env_file=None, data_dir=data_dir, model_checkpoint=str(tiny_model_dir))
    with Engine(settings) as engine:
        hits = engine.search_text("red", filters=ProductFilter(attributes={"popularity": (3.5,)}))
    assert [hit.product.id for hit in hits.hits] == ["fine"]

    too_long = CliRunner().invoke(
        cli_app, ["search", "--text", "x" * 2001, "--data-dir", str(data_dir)]
    )
    assert too_long.exit_code == 2 and "at most 2000" in too_long.output
