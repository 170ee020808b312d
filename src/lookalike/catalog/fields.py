"""What a product may hold, checked once at the edge of every entry: the API's PUT, manifest
rows (CSV/JSONL, `lookalike index`) and queue events all call `check_product_fields`.

Text is capped (nothing unbounded reaches the catalog or a filter), numbers must be finite
(a NaN attribute is stored as JSON that SQLite before 3.42 cannot read back: every filtered
search would fail) and attributes are JSON of bounded size and depth.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from lookalike.errors import InvalidInput
from lookalike.text import check_text

MAX_ID_CHARS = 1000
MAX_TITLE_CHARS = 1000
MAX_NAME_CHARS = 200  # category, brand
MAX_SOURCE_CHARS = 4000  # an image path or URL
MAX_ATTRIBUTES = 100  # keys of a product's attributes
MAX_ATTRIBUTE_NAME_CHARS = 100
MAX_ATTRIBUTE_TEXT_CHARS = 2000  # one string value
MAX_ATTRIBUTE_DEPTH = 4  # lists / objects nested in a value
MAX_ATTRIBUTE_ITEMS = 1000  # values in all of a product's attributes, nested ones included
INT64 = (-(2**63), 2**63 - 1)


def check_product_fields(
    *,
    product_id: str,
    title: str = "",
    category: str | None = None,
    brand: str | None = None,
    price: float | None = None,
    attributes: Mapping[str, Any] | None = None,
    image: str | None = None,
) -> None:
    """InvalidInput naming the first field a product may not hold."""
    check_text(product_id, "product id", MAX_ID_CHARS)
    if not product_id.strip():
        raise InvalidInput("the product id must not be empty")
    check_text(title, "title", MAX_TITLE_CHARS)
    for what, value in (("category", category), ("brand", brand)):
        if value is not None:
            check_text(value, what, MAX_NAME_CHARS)
    if image is not None:
        check_text(image, "image source", MAX_SOURCE_CHARS)
    check_price(price)
    check_attributes(attributes or {})


def check_price(price: float | None) -> None:
    if price is None:
        return
    if isinstance(price, bool) or not isinstance(price, (int, float)):
        raise InvalidInput(f"price must be a number, not {price!r}")
    if not math.isfinite(price) or price < 0:
        raise InvalidInput(f"price {price!r} must be a finite, non-negative number")


def check_attributes(attributes: Mapping[str, Any]) -> None:
    """Attributes are a JSON object of at most MAX_ATTRIBUTES keys whose values are JSON
    (text, finite numbers, booleans, null, lists and objects of them) within the caps."""
    if not isinstance(attributes, Mapping):
        raise InvalidInput("attributes must be an object")
    if len(attributes) > MAX_ATTRIBUTES:
        raise InvalidInput(
            f"{len(attributes)} attributes; at most {MAX_ATTRIBUTES} are allowed per product"
        )
    budget = [MAX_ATTRIBUTE_ITEMS]
    for name, value in attributes.items():
        check_text(name, "an attribute name", MAX_ATTRIBUTE_NAME_CHARS)
        _check_value(value, f"attributes.{name}", 0, budget)


def _check_value(value: Any, where: str, depth: int, budget: list[int]) -> None:
    budget[0] -= 1
    if budget[0] < 0:
        raise InvalidInput(f"attributes hold more than {MAX_ATTRIBUTE_ITEMS} values")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        check_text(value, where, MAX_ATTRIBUTE_TEXT_CHARS)
    elif isinstance(value, int):
        if not INT64[0] <= value <= INT64[1]:
            raise InvalidInput(f"{where}: {value} is out of the 64-bit integer range")
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidInput(f"{where}: {value} is not a finite number")
    elif isinstance(value, (list, tuple, Mapping)):
        if depth >= MAX_ATTRIBUTE_DEPTH:
            raise InvalidInput(f"{where}: nested deeper than {MAX_ATTRIBUTE_DEPTH} levels")
        if isinstance(value, Mapping):
            for key, item in value.items():
                check_text(key, f"a key in {where}", MAX_ATTRIBUTE_NAME_CHARS)
                _check_value(item, f"{where}.{key}", depth + 1, budget)
        else:
            for index, item in enumerate(value):
                _check_value(item, f"{where}[{index}]", depth + 1, budget)
    else:
        raise InvalidInput(f"{where}: {type(value).__name__} is not a JSON value")
