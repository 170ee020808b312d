"""Products whose fields probe every corner of filter semantics, and filters over them, for
the backends that evaluate filters themselves (held to `ProductFilter.matches`).

Categories include None and text that needs escaping; attribute values compare across
types the way Python's `in` does (True == 1 == 1.0, "1" != 1) or never (lists, objects).
"""

from __future__ import annotations

from lookalike.catalog import Product, ProductFilter

ATTRIBUTE_VALUES = ["1", "a", "", "[1]", 0, 1, 5, 1.0, 0.5, True, False, None, [1], {"x": 1}]
TRICKY_TEXT = ['quote"d', "back\\slash", "Äpfel", "new\nline", "it's"]
CATEGORIES = [None, "shoes", "hats", *TRICKY_TEXT]


def tricky_products(n: int, model_id: str) -> list[Product]:
    """`n` products `p0`, `p1`, ... cycling through the values above."""
    out = []
    choices = [*ATTRIBUTE_VALUES, "missing"]
    for i in range(n):
        attributes = {"size": i % 7}
        value = choices[i % len(choices)]
        if value != "missing":
            attributes["color"] = value
        out.append(
            Product(
                id=f"p{i}",
                title=f"item {i}",
                category=CATEGORIES[i % len(CATEGORIES)],
                brand=["acme", "zed", None][i % 3],
                price=None if i % 11 == 0 else float(i % 50),
                attributes=attributes,
                model_id=model_id,
            )
        )
    return out


# Every one names only category, brand, price and the attributes `color` and `size`.
FILTERS = [
    ProductFilter(categories=("shoes",)),
    ProductFilter(categories=("hats", None)),  # type: ignore[arg-type]
    ProductFilter(categories=tuple(TRICKY_TEXT)),
    ProductFilter(brands=(None,)),  # type: ignore[arg-type]
    ProductFilter(price_min=10, price_max=20),
    ProductFilter(price_max=0),
    ProductFilter(categories=("shoes",), brands=("acme",), price_min=5),
    ProductFilter(attributes={"size": (3, 4.0)}),
    ProductFilter(attributes={"size": (3,), "color": ("a", True)}),
    *[ProductFilter(attributes={"color": (v,)}) for v in ATTRIBUTE_VALUES[:12]],
    ProductFilter(attributes={"color": ("1", 0, None)}),
]
