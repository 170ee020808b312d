"""Search quality from real use: search and click logs, and daily CTR / MRR / diversity."""

from lookalike.quality.logger import SearchLogger
from lookalike.quality.report import DayQuality, QualityReport, format_report, quality_report
from lookalike.quality.store import (
    ClickRecord,
    SearchRecord,
    SQLiteQualityStore,
    open_quality_store,
)

__all__ = [
    "ClickRecord",
    "DayQuality",
    "QualityReport",
    "SQLiteQualityStore",
    "SearchLogger",
    "SearchRecord",
    "format_report",
    "open_quality_store",
    "quality_report",
]
