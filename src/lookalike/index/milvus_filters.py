"""Product fields as Milvus stores them, and ProductFilters as Milvus filter expressions.

Filters must select exactly what `ProductFilter.matches` selects. Milvus compares JSON
values by their JSON type, so stored attributes are put in a canonical form where the
simplest comparisons are enough: numbers and booleans become doubles (Python: True == 1 ==
1.0), strings stay strings, a None value is left out (so `not exists` means "missing or
None", as `.get(name) is None` does), and lists and objects are kept as they are (they
equal no scalar, and exist).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

from lookalike.catalog.base import Product, ProductFilter
from lookalike.catalog.filters import CheckedFilter, ValueSet, check_filter

ATTRIBUTES_FIELD = "attrs"


def canonical_value(value: Any) -> Any:
    """An attribute value as stored in Milvus (None: leave the key out)."""
    if value is None:
        return None
    if isinstance(value, (bool, int, float)):
        number = float(value)
        # NaN and infinities are not JSON and equal nothing; a list also equals no scalar.
        return number if math.isfinite(number) else [repr(number)]
    return value


def product_fields(product: Product, filterable: Iterable[str]) -> dict[str, Any]:
    """The scalar fields of a product's Milvus row (the vector and id are added by the caller)."""
    price = product.price
    if price is not None and (not isinstance(price, (int, float)) or math.isnan(price)):
        price = None  # as the SQL catalogs store it
    attributes = {}
    for name in filterable:
        value = canonical_value(product.attributes.get(name))
        if value is not None:
            attributes[name] = value
    return {
        "category": None if product.category is None else str(product.category),
        "brand": None if product.brand is None else str(product.brand),
        "price": None if price is None else float(price),
        ATTRIBUTES_FIELD: attributes,
    }


def can_push_down(product_filter: ProductFilter, filterable: Iterable[str]) -> bool:
    """Whether every attribute the filter names is stored in the collection."""
    stored = set(filterable)
    return all(name in stored for name, values in product_filter.attributes.items() if values)


def filter_expression(product_filter: ProductFilter) -> str:
    """The Milvus boolean expression for a filter ('' when it has no condition)."""
    checked: CheckedFilter = check_filter(product_filter)
    clauses: list[str] = []
    for field_name, values in (("category", checked.categories), ("brand", checked.brands)):
        if values:
            parts = []
            if values.strings:
                parts.append(f"{field_name} in [{', '.join(map(_string, values.strings))}]")
            if values.null:
                parts.append(f"{field_name} is null")
            clauses.append(_any(parts))
    if checked.price_min is not None:
        clauses.append(f"price >= {_number(checked.price_min)}")
    if checked.price_max is not None:
        clauses.append(f"price <= {_number(checked.price_max)}")
    for name, values in checked.attributes:
        clauses.append(_attribute(name, values))
    return " and ".join(clauses)


def _attribute(name: str, values: ValueSet) -> str:
    path = f"{ATTRIBUTES_FIELD}[{_string(name)}]"
    # Equalities joined by `or`: Milvus Lite does not take `in` on a JSON path.
    parts = [f"{path} == {_string(s)}" for s in values.strings]
    parts.extend(f"{path} == {_number(float(n))}" for n in values.numbers)
    if values.null:
        parts.append(f"not exists {path}")
    return _any(parts)


def _any(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else "(" + " or ".join(parts) + ")"


def _string(value: str) -> str:
    # JSON's escapes (\" \\ \n \uXXXX) are the ones Milvus's expression parser reads.
    return json.dumps(value, ensure_ascii=False)


def _number(value: float) -> str:
    text = repr(float(value))
    return text if ("." in text or "e" in text) else text + ".0"


def id_expression(ids: Iterable[int]) -> str:
    """`id in [...]`: the allowed-ids search, for filters Milvus cannot evaluate."""
    return f"id in [{', '.join(str(int(i)) for i in ids)}]"
