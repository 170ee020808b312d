"""The filter bitmaps against the catalog's SQL, on every catalog backend: the same ids for
every operator on random catalogs, the same after upserts, field changes and deletes replayed
from the change log, and a declared fallback for what they do not answer."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lookalike.catalog import Catalog, Product, ProductFilter, ProductWrite
from lookalike.catalog.filter_bitmaps import MAX_BITMAP_ID, FilterBitmaps
from lookalike.errors import InvalidInput
from lookalike.index import FlatIndex, IndexMeta, LiveIndex

DIM = 8
MODEL = "m1"
RELAXED = settings(
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
SCALAR_VALUES = ["1", "a", "A", "", "[1]", 0, 1, 5, 1.0, 5.0, 0.5, True, False, None]
SCALARS = st.sampled_from(SCALAR_VALUES)
VALUES = st.one_of(SCALARS, st.just([1]), st.just({"x": 1}))
FIELDS = st.fixed_dictionaries(
    {
        "category": st.sampled_from(["shoes", "hats", "Shoes", None]),
        "brand": st.sampled_from(["acme", "zed", None]),
        "price": st.one_of(st.none(), st.sampled_from([0.0, 1.0, 9.99, 10.0, 50.0])),
        "attributes": st.dictionaries(st.sampled_from(["color", "size"]), VALUES, max_size=2),
    }
)
PRODUCTS = st.lists(FIELDS, min_size=1, max_size=12)
FILTERS = st.builds(
    ProductFilter,
    categories=st.lists(st.sampled_from(["shoes", "hats", "bags", None]), max_size=2).map(tuple),
    brands=st.lists(st.sampled_from(["acme", "zed", None]), max_size=2).map(tuple),
    price_min=st.one_of(st.none(), st.sampled_from([0.0, 5.0, 10.0])),
    price_max=st.one_of(st.none(), st.sampled_from([9.99, 10.0, 100.0])),
    attributes=st.dictionaries(
        st.sampled_from(["color", "size", "absent"]),
        st.lists(SCALARS, max_size=3).map(tuple),
        max_size=2,
    ),
)
# One write to the catalog: ("embed", index, fields) a new vector, ("fields", index,
# fields) metadata only, ("delete", index, None).
OPERATIONS = st.lists(
    st.tuples(st.sampled_from(["embed", "fields", "delete"]), st.integers(0, 7), FIELDS),
    min_size=1,
    max_size=10,
)


def vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=DIM).astype(np.float32)
    return v / np.linalg.norm(v)


def _write(pid: str, fields: dict, seed: int | None) -> ProductWrite:
    return ProductWrite(
        Product(id=pid, model_id=MODEL, **fields), None if seed is None else vec(seed)
    )


def _replace_all(catalog: Catalog, writes: list[ProductWrite]) -> None:
    catalog.delete([p.id for p in catalog.iter_products()])
    catalog.upsert(writes)


def assert_same_answers(bitmaps: FilterBitmaps, catalog: Catalog, product_filter: ProductFilter):
    assert bitmaps.supports(product_filter)
    expected = catalog.filter_vector_ids(product_filter)
    got = bitmaps.vector_ids(product_filter)
    assert got.dtype == np.int64
    assert got.tolist() == expected.tolist(), product_filter
    assert bitmaps.count(product_filter) == catalog.count_matching(product_filter)


@settings(RELAXED, max_examples=60)
@given(products=PRODUCTS, filters=st.lists(FILTERS, min_size=1, max_size=4))
def test_bitmaps_answer_every_operator_as_the_catalog(catalog: Catalog, products, filters):
    _replace_all(catalog, [_write(f"p{i}", f, i) for i, f in enumerate(products)])
    bitmaps = FilterBitmaps.from_catalog(catalog, MODEL)
    assert len(bitmaps) == len(products)
    for product_filter in [*filters, ProductFilter()]:
        assert_same_answers(bitmaps, catalog, product_filter)


def test_every_attribute_value_against_every_filter_value(catalog: Catalog):
    """Exhaustive over the tricky pairs: "1" vs 1, 1 vs 1.0 vs True, None vs missing, lists."""
    values = [*SCALAR_VALUES, [1], {"x": 1}, "missing"]
    catalog.upsert(
        [
            _write(f"p{i}", {"attributes": {} if v == "missing" else {"color": v}}, i)
            for i, v in enumerate(values)
        ]
    )
    bitmaps = FilterBitmaps.from_catalog(catalog, MODEL)
    allowed_sets = [(v,) for v in SCALAR_VALUES] + list(itertools.combinations(SCALAR_VALUES, 2))
    for allowed in allowed_sets:
        assert_same_answers(bitmaps, catalog, ProductFilter(attributes={"color": allowed}))


@settings(RELAXED, max_examples=40)
@given(start=PRODUCTS, operations=OPERATIONS, filters=st.lists(FILTERS, min_size=2, max_size=4))
def test_bitmaps_stay_in_step_through_the_change_log(catalog: Catalog, start, operations, filters):
    """Upserts with a new vector, field changes and deletes reach the bitmaps the way they
    reach the index: by a LiveIndex replaying the log."""
    _replace_all(catalog, [_write(f"p{i}", f, i) for i, f in enumerate(start)])
    live = LiveIndex(
        FlatIndex(IndexMeta("flat", DIM, MODEL), None),
        catalog,
        filters=FilterBitmaps.from_catalog(catalog, MODEL),
    )
    live.catch_up()
    for step, (kind, i, fields) in enumerate(operations):
        pid = f"p{i}"
        if kind == "delete":
            catalog.delete([pid])
        else:
            catalog.upsert([_write(pid, fields, 100 + step if kind == "embed" else None)])
        live.apply_writes()
        assert live.filters.watermark == live.index.meta.watermark == catalog.log_head()
        for product_filter in [*filters, ProductFilter()]:
            assert_same_answers(live.filters, catalog, product_filter)


def test_a_price_array_rebuilt_after_many_changes_keeps_the_answers(catalog: Catalog):
    """Enough price changes to rebuild the sorted array (and its runs) several times."""
    catalog.upsert([_write(f"p{i}", {"price": float(i)}, i) for i in range(300)])
    bitmaps = FilterBitmaps.from_catalog(catalog, MODEL)
    rng = np.random.default_rng(3)
    ranges = [(None, 40.0), (10.0, 200.0), (150.0, None), (5.5, 5.5), (299.0, 1000.0)]
    for _ in range(4):
        picked = rng.choice(300, 90, replace=False)
        fields = [{"price": None if j % 13 == 0 else float(rng.integers(0, 400))} for j in picked]
        catalog.upsert(
            [_write(f"p{j}", f, None) for j, f in zip(picked.tolist(), fields, strict=True)]
        )
        catalog.delete([f"p{j}" for j in picked[:5].tolist()])
        bitmaps.catch_up(catalog)
        for low, high in ranges:
            assert_same_answers(bitmaps, catalog, ProductFilter(price_min=low, price_max=high))


def test_an_attribute_with_too_many_values_is_left_to_the_catalog(catalog: Catalog):
    catalog.upsert(
        [_write(f"p{i}", {"attributes": {"sku": f"s{i}", "size": i % 3}}, i) for i in range(10)]
    )
    bitmaps = FilterBitmaps.from_catalog(catalog, MODEL, max_values=4)
    assert bitmaps.describe()["unindexed_attributes"] == ["sku"]
    assert not bitmaps.supports(ProductFilter(attributes={"sku": ("s1",)}))
    assert not bitmaps.supports(ProductFilter(attributes={"sku": ("s1",), "size": (1,)}))
    assert_same_answers(bitmaps, catalog, ProductFilter(attributes={"size": (1, 2)}))
    # An attribute that passes the cap later, by writes, leaves too.
    catalog.upsert([_write(f"q{i}", {"attributes": {"size": 10 + i}}, 50 + i) for i in range(5)])
    bitmaps.catch_up(catalog)
    assert not bitmaps.supports(ProductFilter(attributes={"size": (1,)}))
    assert_same_answers(bitmaps, catalog, ProductFilter(categories=(None,)))


def test_vector_ids_past_the_bitmap_range_hand_every_filter_to_the_catalog():
    bitmaps = FilterBitmaps(MODEL)
    assert bitmaps.supports(ProductFilter(categories=("shoes",)))
    bitmaps.load([Product(id="big", category="shoes", vector_id=MAX_BITMAP_ID + 1, model_id=MODEL)])
    assert not bitmaps.supports(ProductFilter(categories=("shoes",)))


def test_products_of_another_model_are_not_in_the_bitmaps(catalog: Catalog):
    catalog.upsert([_write("a", {"category": "shoes"}, 1)])
    catalog.upsert([ProductWrite(Product(id="b", category="shoes", model_id="m2"), vec(2))])
    bitmaps = FilterBitmaps.from_catalog(catalog, MODEL)
    only_a = catalog.get("a").vector_id
    assert bitmaps.vector_ids(ProductFilter(categories=("shoes",))).tolist() == [only_a]


@pytest.mark.parametrize(
    "bad",
    [
        ProductFilter(categories=(5,)),  # type: ignore[arg-type]
        ProductFilter(attributes={"size": (float("nan"),)}),
        ProductFilter(attributes={"size": "red"}),
        ProductFilter(price_min=float("nan")),
        ProductFilter(attributes={"x'; drop table products; --": ("1",)}),
    ],
)
def test_filters_the_catalog_refuses_the_bitmaps_refuse(catalog: Catalog, bad):
    bitmaps = FilterBitmaps.from_catalog(catalog, MODEL)
    with pytest.raises(InvalidInput):
        catalog.filter_vector_ids(bad)
    with pytest.raises(InvalidInput):
        bitmaps.supports(bad)
    with pytest.raises(InvalidInput):
        bitmaps.matching(bad)
