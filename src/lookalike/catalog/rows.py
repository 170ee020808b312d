"""The products table's columns and their mapping to `Product`, shared by the SQL backends."""

from __future__ import annotations

import json
from typing import Any

from lookalike.catalog.base import Product

PRODUCT_COLUMNS = (
    "id, title, category, brand, price, image_source, attributes, content_hash, model_id, "
    "vector_id, created_at, updated_at, version"
)
# What a write without an embedding changes (plus updated_at): the stored vector, and the
# content hash and model it was made from, stay.
METADATA_COLUMNS = ("title", "category", "brand", "price", "image_source", "attributes")


def dump_attributes(attributes: dict[str, Any]) -> str:
    """Attributes as stored: JSON text with sorted keys (unknown types as strings)."""
    return json.dumps(attributes, sort_keys=True, default=str)


def product_from_row(row: tuple) -> Product:
    """A row of PRODUCT_COLUMNS (attributes as JSON text, or already decoded)."""
    attributes = row[6]
    if isinstance(attributes, (str, bytes)):
        attributes = json.loads(attributes) if attributes else {}
    return Product(
        id=row[0],
        title=row[1] or "",
        category=row[2],
        brand=row[3],
        price=row[4],
        image_source=row[5],
        attributes=attributes or {},
        content_hash=row[7],
        model_id=row[8],
        vector_id=row[9],
        created_at=row[10],
        updated_at=row[11],
        version=int(row[12] or 0),
    )
