"""Product events from a queue: `product_created`, `product_updated`, `product_deleted`.

An event is a JSON object (in a stream entry's `event` field, or a Kafka message value),
or a stream entry's own fields:

    {"type": "product_created",
     "product": {"id": "sku-1", "image_url": "https://.../1.jpg", "title": "Red sneaker",
                 "category": "shoes", "brand": "Acme", "price": 59.9, "color": "red"}}

The product's fields may also sit beside `type` instead of under `product`, and its id may
be called `product_id`. They mean what a manifest row means (`image`/`image_url`/`path`,
any other key is an attribute). Created and updated events carry the whole product; an
update without an image keeps the stored one. A delete needs only the id.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from lookalike.catalog.fields import INT64, check_product_fields
from lookalike.errors import InvalidInput
from lookalike.ingest.sources import ItemSpec, item_from_record

EVENT_TYPES: dict[str, Literal["upsert", "delete"]] = {
    "product_created": "upsert",
    "product_updated": "upsert",
    "product_deleted": "delete",
}
# Keys that describe the event rather than the product (never kept as attributes).
ENVELOPE_KEYS = {"type", "event_type", "event_id", "timestamp", "ts", "occurred_at", "product"}


@dataclass(frozen=True)
class ProductEvent:
    type: str
    product_id: str
    item: ItemSpec | None = None  # None for deletes

    @property
    def kind(self) -> Literal["upsert", "delete"]:
        return EVENT_TYPES[self.type]


def parse_event(fields: Mapping[str, str]) -> ProductEvent:
    """A stream entry's fields -> ProductEvent, or InvalidInput saying what is wrong."""
    data = _json_object(fields["event"], "`event`") if "event" in fields else dict(fields)
    event_type = data.get("type") or data.get("event_type")
    if not isinstance(event_type, str) or event_type not in EVENT_TYPES:
        raise InvalidInput(
            f"unknown event type {str(event_type)[:100]!r}; expected one of "
            f"{', '.join(EVENT_TYPES)}"
        )
    nested = data.get("product")
    if isinstance(nested, str):  # flat stream fields carry it as JSON text
        nested = _json_object(nested, "`product`")
    if nested is not None and not isinstance(nested, dict):
        raise InvalidInput("`product` must be an object")
    if nested is not None:
        record = dict(nested)
    else:
        record = {key: value for key, value in data.items() if key not in ENVELOPE_KEYS}
    if isinstance(record.get("attributes"), str):
        record["attributes"] = _json_object(record["attributes"], "`attributes`")
    if record.get("attributes") is not None and not isinstance(record["attributes"], dict):
        raise InvalidInput("`attributes` must be an object")
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
    if EVENT_TYPES[event_type] == "delete":
        check_product_fields(product_id=product_id)
        return ProductEvent(event_type, product_id)
    return ProductEvent(event_type, product_id, item_from_record(record))


def _json_object(text: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:  # bad JSON, 5000-digit numbers, nesting
        raise InvalidInput(f"{what} is not valid JSON: {getattr(exc, 'msg', exc)}") from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value
