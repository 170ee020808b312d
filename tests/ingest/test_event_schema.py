"""The product event's contract: the JSON Schema file (valid draft 2020-12, shipped with
the package), what `parse_event` accepts and refuses (with a reason), versions and event
times."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from lookalike.errors import InvalidInput
from lookalike.ingest.event_schema import SCHEMA_NAME, check_event, event_schema
from lookalike.ingest.events import parse_event

jsonschema = pytest.importorskip("jsonschema")


def test_the_schema_is_valid_json_schema_and_names_itself() -> None:
    schema = event_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema"]["const"] == SCHEMA_NAME
    assert set(schema["$defs"]["eventType"]["enum"]) == {
        "product_created",
        "product_updated",
        "product_deleted",
    }


def test_the_schema_ships_as_package_data() -> None:
    from pathlib import Path

    import tomllib

    pyproject = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert "ingest/schemas/*.json" in pyproject["tool"]["setuptools"]["package-data"]["lookalike"]


FULL = {
    "schema": "product_event.v1",
    "type": "product_updated",
    "version": 1_796_054_400_123,
    "occurred_at": "2026-11-30T16:00:00.123Z",
    "event_id": "e-1",
    "product": {
        "id": "sku-1",
        "image_url": "https://shop.example/1.jpg",
        "title": "Red sneaker",
        "category": "shoes",
        "brand": "Acme",
        "price": 59.9,
        "color": "red",
        "attributes": {"size": 42},
    },
}


def test_a_full_event_parses() -> None:
    event = parse_event({"event": json.dumps(FULL)})
    assert (event.kind, event.product_id, event.version) == ("upsert", "sku-1", 1_796_054_400_123)
    assert event.occurred_at == datetime(2026, 11, 30, 16, 0, 0, 123000, timezone.utc).timestamp()
    item = event.item
    assert (item.image, item.price, item.version) == (
        "https://shop.example/1.jpg",
        59.9,
        1_796_054_400_123,
    )
    assert item.attributes == {"size": 42, "color": "red"}  # envelope keys are not attributes


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"event": "{not json"}, "not valid JSON"),
        ({"event": "[1, 2]"}, "must be a JSON object"),
        ({"event": json.dumps({"type": "product_deleted"})}, "without a product id"),
        ({"event": json.dumps({"type": "product_renamed", "id": "x"})}, "unknown event type"),
        ({"type": "product_created", "id": "a", "price": "cheap"}, "'cheap' is not a number"),
        ({"type": "product_created", "id": "a", "attributes": "[]"}, "must be a JSON object"),
        ({"type": "product_created", "product": "3"}, "must be a JSON object"),
        ({"event": json.dumps({**FULL, "version": 0})}, "at version: 0 is less than"),
        ({"event": json.dumps({**FULL, "version": 1.5})}, "at version: 1.5 is not of type"),
        ({"event": json.dumps({**FULL, "version": "7"})}, "at version: '7' is not of type"),
        ({"event": json.dumps({**FULL, "occurred_at": "yesterday"})}, "is not an ISO 8601"),
        ({"event": json.dumps({**FULL, "occurred_at": True})}, "is not an ISO 8601"),
        ({"event": json.dumps({**FULL, "schema": "product_event.v9"})}, "at schema"),
        (
            {"event": json.dumps({**FULL, "product": {**FULL["product"], "image": 5}})},
            "at product.image: 5 is not of type",
        ),
        (
            {"event": json.dumps({**FULL, "product": {**FULL["product"], "id": " "}})},
            "without a product id",
        ),
    ],
)
def test_bad_events_are_refused_with_a_reason(fields: dict, reason: str) -> None:
    with pytest.raises(InvalidInput, match=reason):
        parse_event(fields)


def test_flat_stream_fields_are_an_event_too() -> None:
    event = parse_event(
        {"type": "product_created", "product_id": "sku-1", "image_url": "https://x/1.jpg",
         "price": "12.5", "size": "42", "ts": "2024-01-01", "version": "3"}
    )  # fmt: skip
    assert event.kind == "upsert" and event.product_id == "sku-1" and event.version == 3
    assert (event.item.image, event.item.price) == ("https://x/1.jpg", 12.5)
    assert event.item.attributes == {"size": 42}  # the envelope's ts is not an attribute
    assert event.occurred_at == datetime(2024, 1, 1, tzinfo=timezone.utc).timestamp()


FOUR_PM = datetime(2026, 11, 30, 16, tzinfo=timezone.utc).timestamp()


@pytest.mark.parametrize(
    ("value", "after_four_pm"),
    [
        (int(FOUR_PM), 0.0),
        (int(FOUR_PM * 1000) + 500, 0.5),  # milliseconds
        ("2026-11-30T16:00:00Z", 0.0),
        ("2026-11-30T17:00:00+01:00", 0.0),
        ("2026-11-30T17:00:00+0100", 0.0),
        ("2026-11-30T11:00-05", 0.0),
        ("2026-11-30t16:00:00.5z", 0.5),
        ("2026-11-30 16:00:00,123456789", 0.123456),  # no offset: UTC
    ],
)
def test_event_times_in_every_accepted_spelling(value, after_four_pm: float) -> None:
    event = parse_event({"event": json.dumps({**FULL, "occurred_at": value})})
    assert event.occurred_at == pytest.approx(FOUR_PM + after_four_pm, abs=1e-6)


def test_the_schema_and_the_parser_agree_on_the_documented_examples() -> None:
    """The examples of docs/live-catalog.md pass the schema and parse."""
    from pathlib import Path

    page = (Path(__file__).parents[2] / "docs" / "live-catalog.md").read_text()
    examples = [
        json.loads(line) for line in page.splitlines() if line.startswith('{"type": "product_')
    ]
    assert len(examples) >= 3
    for example in examples:
        check_event(example)
        parse_event({"event": json.dumps(example)})
