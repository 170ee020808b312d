"""The background search logger writes through the catalog (every backend), in batches,
and survives a write the catalog refuses; the report reads the logs back."""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from lookalike.catalog import Catalog, ClickRecord, Product, ProductWrite, SearchRecord
from lookalike.quality import SearchLogger, quality_report
from tests.support.catalog_backends import Backend

DAY = 86_400.0


def search(search_id: str, ts: float, categories=("a", "b")) -> SearchRecord:
    ids = tuple(f"p{i}" for i in range(len(categories)))
    return SearchRecord(search_id, ts, "image", ids, tuple(categories), 10, 3.0)


def test_records_reach_the_catalog_in_batches_and_the_catalog_stays_open(catalog: Catalog):
    logger = SearchLogger(catalog, flush_interval_s=60)  # only flush() writes
    now = time.time()
    for i in range(50):
        logger.record(search(f"s{i}", now))
        logger.record(ClickRecord(f"s{i}", "p1", 2, now))
    assert catalog.daily_search_totals(now - 60) == []  # queued, not yet written
    logger.flush()
    (today,) = catalog.daily_search_totals(now - 60)
    assert (today.searches, today.clicks, today.reciprocal_rank_sum) == (50, 50, 25.0)
    logger.record(search("last", now))
    logger.close()  # writes what is queued
    assert catalog.daily_search_totals(now - 60)[0].searches == 51
    assert catalog.version() == 0  # logs are not product writes


def test_a_refused_batch_is_dropped_with_a_warning_and_logging_goes_on(
    catalog: Catalog, backend: Backend, caplog: pytest.LogCaptureFixture
):
    logger = SearchLogger(catalog, flush_interval_s=60)
    now = time.time()
    backend.run("DROP TABLE click_log")
    logger.record(search("lost", now))
    logger.record(ClickRecord("lost", "p0", 1, now))
    with caplog.at_level(logging.WARNING, logger="lookalike.quality.logger"):
        logger.flush()
    assert "dropped 1 search and 1 click records" in caplog.text
    logger.record(search("kept", now))
    logger.close()
    # The refused batch was one transaction: nothing of it stays.
    assert backend.run("SELECT search_id FROM search_log") == [("kept",)]


def test_report_reads_days_and_category_baseline_from_the_catalog(catalog: Catalog):
    catalog.upsert(
        [
            ProductWrite(Product(f"p{i}", category="ab"[i % 2]), np.ones(4, np.float32))
            for i in range(4)
        ]
    )
    today = time.time() - time.time() % DAY
    catalog.write_search_logs(
        [search("old", today - 8 * DAY), search("y", today - DAY + 5), search("t", today + 5)],
        [ClickRecord("t", "p0", 1, today + 6)],
    )
    report = quality_report(catalog, days=2, now=today + 10)
    assert [(d.day, d.searches, d.clicks) for d in report.days][-1] == ("all", 2, 1)
    assert [d.searches for d in report.days[:-1]] == [1, 1]
    assert report.days[-2].ctr == 1.0 and report.days[-2].mrr == 1.0
    assert report.page_size == 2
    # Two equal categories, pages of two: 1.5 distinct categories expected, / 2.
    assert report.baseline.diversity == pytest.approx(0.75)
