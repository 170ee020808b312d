"""`plan_upsert`, the pure function every backend executes: which change-log entries a
batch of writes appends, in which order, and which product rows it writes."""

from __future__ import annotations

import numpy as np

from lookalike.catalog import Product, ProductWrite
from lookalike.catalog.changes import (
    OP_ADD,
    OP_METADATA,
    OP_REMOVE,
    PlannedEntry,
    plan_upsert,
)

STAMP = 1000.0


def embedded(pid: str, title: str = "") -> ProductWrite:
    return ProductWrite(Product(pid, title=title), np.ones(4, dtype=np.float32))


def metadata(pid: str, title: str = "") -> ProductWrite:
    return ProductWrite(Product(pid, title=title))


def test_new_products_get_an_add_each_and_metadata_only_ones_nothing():
    plan = plan_upsert({}, [embedded("a"), metadata("b"), embedded("c")], STAMP)
    assert plan.entries == (
        PlannedEntry(OP_ADD, added_by=0),
        PlannedEntry(OP_ADD, added_by=1),
    )
    assert [(r.write.product.id, r.created_at, r.vector_entry) for r in plan.rows] == [
        ("a", STAMP, 0),
        ("b", STAMP, None),
        ("c", STAMP, 1),
    ]


def test_a_new_embedding_removes_the_stored_vector_first():
    plan = plan_upsert({"a": (7, 5.0)}, [embedded("a")], STAMP)
    assert plan.entries == (PlannedEntry(OP_REMOVE, vector_id=7), PlannedEntry(OP_ADD, added_by=1))
    (row,) = plan.rows
    assert (row.created_at, row.vector_entry) == (5.0, 1)  # created_at stays


def test_metadata_of_an_embedded_product_is_logged_against_its_vector():
    plan = plan_upsert({"a": (7, 5.0), "b": (None, 6.0)}, [metadata("a"), metadata("b")], STAMP)
    assert plan.entries == (PlannedEntry(OP_METADATA, vector_id=7),)
    assert [(r.created_at, r.vector_entry) for r in plan.rows] == [(5.0, None), (6.0, None)]


def test_writes_of_one_product_in_one_batch_see_each_other():
    writes = [embedded("a", "1"), embedded("a", "2"), metadata("a", "3"), embedded("a", "4")]
    plan = plan_upsert({"a": (7, 5.0)}, writes, STAMP)
    assert plan.entries == (
        PlannedEntry(OP_REMOVE, vector_id=7),
        PlannedEntry(OP_ADD, added_by=1),
        PlannedEntry(OP_REMOVE, added_by=1),  # the vector the first write added
        PlannedEntry(OP_ADD, added_by=3),
        PlannedEntry(OP_METADATA, added_by=3),
        PlannedEntry(OP_REMOVE, added_by=3),
        PlannedEntry(OP_ADD, added_by=6),
    )
    assert [(r.write.product.title, r.vector_entry) for r in plan.rows] == [
        ("1", 1),
        ("2", 3),
        ("3", None),
        ("4", 6),
    ]
    assert {r.created_at for r in plan.rows} == {5.0}


def test_a_product_new_in_the_batch_keeps_the_batch_stamp_as_created_at():
    plan = plan_upsert({}, [metadata("a"), embedded("a")], STAMP)
    assert plan.entries == (PlannedEntry(OP_ADD, added_by=0),)
    assert [r.created_at for r in plan.rows] == [STAMP, STAMP]


def test_entries_resolve_to_vector_ids_once_numbered():
    plan = plan_upsert({"a": (7, 5.0)}, [embedded("a"), metadata("a"), embedded("b")], STAMP)
    seqs = [40, 41, 42, 43]  # however the backend numbers them, ascending
    resolved = [(seq, e.resolve(seqs), e.op) for seq, e in zip(seqs, plan.entries, strict=True)]
    assert resolved == [
        (40, 7, OP_REMOVE),
        (41, 41, OP_ADD),
        (42, 41, OP_METADATA),
        (43, 43, OP_ADD),
    ]


def test_no_writes_plan_nothing():
    plan = plan_upsert({"a": (7, 5.0)}, [], STAMP)
    assert plan.entries == () and plan.rows == ()
