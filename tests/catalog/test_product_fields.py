"""The one check of what a product may hold (`catalog/fields.py`), which every entry calls:
text caps, finite numbers, JSON attributes of bounded size and depth."""

from __future__ import annotations

import math

import pytest

from lookalike.catalog.fields import (
    MAX_ATTRIBUTE_DEPTH,
    MAX_ATTRIBUTE_ITEMS,
    MAX_ATTRIBUTES,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_TITLE_CHARS,
    check_product_fields,
)
from lookalike.errors import InvalidInput


def test_a_normal_product_passes() -> None:
    check_product_fields(
        product_id="SKU-1",
        title="Red sneaker",
        category="shoes",
        brand="Acme",
        price=59.9,
        attributes={"color": "red", "sizes": [40, 41.5], "meta": {"new": True, "x": None}},
        image="https://img.example/1.jpg",
    )


def nested(depth: int) -> object:
    value: object = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"product_id": "x" * (MAX_ID_CHARS + 1)}, "product id is"),
        ({"product_id": "   "}, "must not be empty"),
        ({"product_id": "a\x00b"}, "NUL"),
        ({"product_id": "\ud800"}, "surrogate"),
        ({"title": "t" * (MAX_TITLE_CHARS + 1)}, "title is"),
        ({"category": "c" * (MAX_NAME_CHARS + 1)}, "category is"),
        ({"brand": "b\x00"}, "brand contains a NUL"),
        ({"price": math.nan}, "finite"),
        ({"price": math.inf}, "finite"),
        ({"price": -1.0}, "non-negative"),
        ({"attributes": {"a": math.nan}}, r"attributes\.a: nan is not a finite"),
        ({"attributes": {"a": [1, {"b": -math.inf}]}}, r"attributes\.a\[1\]\.b"),
        ({"attributes": {"n": 2**70}}, "64-bit"),
        ({"attributes": {f"k{i}": i for i in range(MAX_ATTRIBUTES + 1)}}, "attributes; at most"),
        ({"attributes": {"k" * 101: 1}}, "attribute name"),
        ({"attributes": {"a": "v" * 2001}}, r"attributes\.a is 2001"),
        ({"attributes": {"a": nested(MAX_ATTRIBUTE_DEPTH + 1)}}, "nested deeper"),
        ({"attributes": {"a": list(range(MAX_ATTRIBUTE_ITEMS))}}, "more than"),
        ({"attributes": {"a": b"bytes"}}, "not a JSON value"),
        ({"attributes": ["not", "a", "dict"]}, "must be an object"),
    ],
)
def test_what_a_product_may_not_hold(fields: dict, message: str) -> None:
    fields.setdefault("product_id", "p1")
    with pytest.raises(InvalidInput, match=message):
        check_product_fields(**fields)


def test_the_limits_themselves_pass() -> None:
    check_product_fields(
        product_id="i" * MAX_ID_CHARS,
        title="t" * MAX_TITLE_CHARS,
        category="c" * MAX_NAME_CHARS,
        attributes={
            **{f"k{i}": i for i in range(MAX_ATTRIBUTES - 1)},
            "deep": nested(MAX_ATTRIBUTE_DEPTH),
        },
    )
