"""Product events from a queue: `product_created`, `product_updated`, `product_deleted`.

An event is a JSON object (a Kafka message value, a Redis stream entry's `event` field), or
a Redis stream entry's own fields; `schemas/product_event.v1.json` is its contract:

    {"type": "product_updated", "version": 1764518400123,
     "occurred_at": "2026-11-30T16:00:00.123Z",
     "product": {"id": "sku-1", "image_url": "https://.../1.jpg", "title": "Red sneaker",
                 "category": "shoes", "brand": "Acme", "price": 59.9, "color": "red"}}

The product's fields may also sit beside `type` instead of under `product`, and its id may
be called `product_id`. They mean what a manifest row means (`image`/`image_url`/`path`,
any other key is an attribute). Created and updated events carry the whole product; an
update without an image keeps the stored one. A delete needs only the id.

`version` orders a product's events whatever order they arrive in (the catalog skips an
older one); without it, events apply in arrival order. `occurred_at` (or `timestamp`,
`ts`) starts the event-to-searchable clock.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from lookalike.catalog.fields import INT64, check_product_fields
from lookalike.errors import InvalidInput
from lookalike.ingest.event_schema import check_event
from lookalike.ingest.sources import ItemSpec, item_from_record
from lookalike.text import json_object

EVENT_TYPES: dict[str, Literal["upsert", "delete"]] = {
    "product_created": "upsert",
    "product_updated": "upsert",
    "product_deleted": "delete",
}
# Keys that describe the event rather than the product (never kept as attributes).
ENVELOPE_KEYS = {
    "type",
    "event_type",
    "event_id",
    "schema",
    "version",
    "timestamp",
    "ts",
    "occurred_at",
    "product",
}
TIME_KEYS = ("occurred_at", "timestamp", "ts")
# Unix times above this are in milliseconds (1e11 s is the year 5138).
MILLISECONDS_FROM = 1e11


@dataclass(frozen=True)
class ProductEvent:
    type: str
    product_id: str
    item: ItemSpec | None = None  # None for deletes
    version: int | None = None
    occurred_at: float | None = None  # Unix seconds, when the producer says it happened

    @property
    def kind(self) -> Literal["upsert", "delete"]:
        return EVENT_TYPES[self.type]


def parse_event(fields: Mapping[str, str]) -> ProductEvent:
    """A queue entry's fields -> ProductEvent, or InvalidInput saying what is wrong."""
    flat = "event" not in fields  # a stream entry's own fields
    data = _flat_fields(fields) if flat else json_object(fields["event"], "`event`")
    event_type = data.get("type") or data.get("event_type")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise InvalidInput(
            f"unknown event type {str(event_type)[:100]!r}; expected one of "
            f"{', '.join(EVENT_TYPES)}"
        )
    nested = data.get("product")
    if isinstance(nested, str):  # flat stream fields carry it as JSON text
        nested = data["product"] = json_object(nested, "`product`")
    if nested is not None and not isinstance(nested, dict):
        raise InvalidInput("`product` must be an object")
    if nested is not None:
        record = dict(nested)
    else:
        record = {key: value for key, value in data.items() if key not in ENVELOPE_KEYS}
    if isinstance(record.get("attributes"), str):
        record["attributes"] = json_object(record["attributes"], "`attributes`")
    if "product_id" in record:
        record.setdefault("id", record["product_id"])
        del record["product_id"]
    product_id = record.get("id")
    if isinstance(product_id, bool) or not isinstance(product_id, (str, int)):
        raise InvalidInput(f"{event_type} event without a product id")
    if isinstance(product_id, int) and not INT64[0] <= product_id <= INT64[1]:
        raise InvalidInput(f"{event_type} event: product id {product_id} is out of range")
    product_id = str(product_id)
    if not product_id.strip():
        raise InvalidInput(f"{event_type} event without a product id")
    check_product_fields(product_id=product_id)  # before the schema, whose error quotes it
    check_event(data)
    version = data.get("version")
    occurred_at = event_time(data)
    if EVENT_TYPES[event_type] == "delete":
        return ProductEvent(event_type, str(product_id), None, version, occurred_at)
    item = item_from_record(record)
    item.version = version
    return ProductEvent(event_type, str(product_id), item, version, occurred_at)


def event_time(data: Mapping[str, Any]) -> float | None:
    """When the event says the change happened (Unix seconds), or None."""
    for key in TIME_KEYS:
        value = data.get(key)
        if value is None or value == "":
            continue
        if isinstance(value, bool):
            raise InvalidInput(f"`{key}` must be a date-time or a Unix time")
        if isinstance(value, (int, float)):
            seconds = float(value)
            if not math.isfinite(seconds) or seconds < 0:
                raise InvalidInput(f"`{key}` {value!r} is not a Unix time")
            return seconds / 1000 if seconds > MILLISECONDS_FROM else seconds
        return _iso_time(str(value), key)
    return None


_OFFSET = re.compile(r"([+-]\d{2})(?::?(\d{2}))?$")
_FRACTION = re.compile(r"[.,](\d+)")


def _iso_time(text: str, key: str) -> float:
    """ISO 8601 (`Z` or an offset; none: UTC), whatever Python's fromisoformat version."""
    value = text.strip().replace("t", "T").replace(" ", "T", 1)
    if value.endswith(("Z", "z")):
        value = value[:-1] + "+00:00"
    elif "T" in value:
        offset = _OFFSET.search(value[value.index("T") :])
        if offset:
            value = value[: len(value) - len(offset.group(0))]
            value += f"{offset.group(1)}:{offset.group(2) or '00'}"
    # Python before 3.11 reads at most 6 fraction digits, and only after a dot.
    value = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], value, count=1)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InvalidInput(f"`{key}` {text!r} is not an ISO 8601 date-time") from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.timestamp()


def _flat_fields(fields: Mapping[str, str]) -> dict[str, Any]:
    """A stream entry's own fields (all text): numbers where the schema wants numbers."""
    data: dict[str, Any] = dict(fields)
    version = data.get("version")
    if isinstance(version, str) and version.strip().isdigit():
        data["version"] = int(version)
    for key in TIME_KEYS:
        value = data.get(key)
        if isinstance(value, str):
            with contextlib.suppress(ValueError):  # else a date-time
                data[key] = float(value)
    return data
