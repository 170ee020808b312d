"""A ProductFilter as a WHERE clause, with the exact semantics of `ProductFilter.matches`.

`matches` is Python's `in`: a string equals only the same string; numbers compare by value
and a boolean counts as the number 1 or 0 (`True == 1 == 1.0`); `None` matches a missing
attribute or a JSON null; a list or object value never equals a scalar. Each SQL dialect
renders the same checked conditions; the congruence tests hold them to `matches`.

A filter's size is capped (values per field, attributes, values in all), so its SQL stays
within what every database takes: SQLite refuses an expression nested 1000 deep ("Expression
tree is too large") and, built with older defaults, more than 999 bound parameters.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any, Protocol

from lookalike.catalog.base import ProductFilter
from lookalike.catalog.fields import MAX_ATTRIBUTE_TEXT_CHARS
from lookalike.errors import InvalidInput
from lookalike.text import check_text

ATTRIBUTE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-.]{0,63}$")
MAX_FILTER_VALUES = 100  # allowed values of one field (categories, brands, an attribute)
MAX_FILTER_ATTRIBUTES = 16  # attributes one filter may name
MAX_FILTER_TOTAL_VALUES = 500  # values of all fields together (bound SQL parameters)


@dataclass(frozen=True)
class ValueSet:
    """The allowed values of one field, split by how they compare."""

    strings: tuple[str, ...] = ()
    numbers: tuple[int | float, ...] = ()  # booleans become 1 / 0
    null: bool = False  # None allowed: a missing value matches

    def __bool__(self) -> bool:
        return bool(self.strings or self.numbers or self.null)


@dataclass(frozen=True)
class CheckedFilter:
    """A validated ProductFilter, ready for any backend to render."""

    categories: ValueSet
    brands: ValueSet
    price_min: float | None
    price_max: float | None
    attributes: tuple[tuple[str, ValueSet], ...]


def check_filter(product_filter: ProductFilter) -> CheckedFilter:
    """Validate names, values and sizes (InvalidInput on anything a backend could not match
    exactly, or a filter over the caps)."""
    if len(product_filter.attributes) > MAX_FILTER_ATTRIBUTES:
        raise InvalidInput(
            f"a filter on {len(product_filter.attributes)} attributes; at most "
            f"{MAX_FILTER_ATTRIBUTES} are allowed"
        )
    attributes = []
    for name, values in product_filter.attributes.items():
        if not isinstance(name, str) or not ATTRIBUTE_NAME.match(name):
            raise InvalidInput(f"bad attribute name {str(name)[:100]!r}")
        if values:
            attributes.append((name, _value_set(f"attribute {name!r}", values, numbers=True)))
    checked = CheckedFilter(
        categories=_value_set("category", product_filter.categories, numbers=False),
        brands=_value_set("brand", product_filter.brands, numbers=False),
        price_min=_bound("price_min", product_filter.price_min),
        price_max=_bound("price_max", product_filter.price_max),
        attributes=tuple(attributes),
    )
    sets = [checked.categories, checked.brands, *(values for _, values in checked.attributes)]
    total = sum(len(s.strings) + len(s.numbers) + s.null for s in sets)
    if total > MAX_FILTER_TOTAL_VALUES:
        raise InvalidInput(
            f"a filter with {total} values; at most {MAX_FILTER_TOTAL_VALUES} are allowed"
        )
    return checked


def _value_set(what: str, values: Any, *, numbers: bool) -> ValueSet:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise InvalidInput(f"{what}: give a list of values, not {str(values)[:100]!r}")
    if len(values) > MAX_FILTER_VALUES:
        raise InvalidInput(
            f"{what}: {len(values)} values; at most {MAX_FILTER_VALUES} are allowed per field"
        )
    strings: list[str] = []
    nums: list[int | float] = []
    null = False
    for value in values:
        if value is None:
            null = True
        elif isinstance(value, str):
            strings.append(check_text(value, f"{what} value", MAX_ATTRIBUTE_TEXT_CHARS))
        elif numbers and isinstance(value, (bool, int, float)):
            if isinstance(value, float) and not math.isfinite(value):
                raise InvalidInput(f"{what}: {value!r} is not a finite number")
            if isinstance(value, int) and not -(2**63) <= value < 2**63:
                raise InvalidInput(f"{what}: {value!r} is out of the 64-bit range")
            nums.append(int(value) if isinstance(value, bool) else value)
        else:
            kinds = "strings, numbers, booleans or null" if numbers else "strings"
            raise InvalidInput(f"{what}: filter values must be {kinds}, not {value!r}")
    return ValueSet(tuple(dict.fromkeys(strings)), tuple(dict.fromkeys(nums)), null)


def _bound(what: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{what} must be a finite number, not {value!r}")
    return float(value)


class SqlDialect(Protocol):
    """How one database spells the conditions a CheckedFilter needs (`catalog/sql/dialects.py`
    has one per database)."""

    param: str

    def column_in(self, column: str, values: tuple[str, ...]) -> tuple[str, list[Any]]: ...

    def attribute(self, name: str, values: ValueSet) -> tuple[str, list[Any]]: ...


def filter_sql(product_filter: ProductFilter, dialect: SqlDialect) -> tuple[str, list[Any]]:
    """(WHERE clause, parameters) for the products table; `1=1` when there is no condition."""
    checked = check_filter(product_filter)
    clauses: list[str] = []
    params: list[Any] = []
    for column, values in (("category", checked.categories), ("brand", checked.brands)):
        if not values:
            continue
        parts = []
        if values.strings:
            sql, column_params = dialect.column_in(column, values.strings)
            parts.append(sql)
            params.extend(column_params)
        if values.null:
            parts.append(f"{column} IS NULL")
        clauses.append("(" + " OR ".join(parts) + ")")
    for op, bound in ((">=", checked.price_min), ("<=", checked.price_max)):
        if bound is not None:
            clauses.append(f"price {op} {dialect.param}")
            params.append(bound)
    for name, values in checked.attributes:
        sql, attribute_params = dialect.attribute(name, values)
        clauses.append(sql)
        params.extend(attribute_params)
    return (" AND ".join(clauses) or "1=1"), params
