"""Search quality from real use: a background logger that writes search and click records
to the catalog, and the daily CTR / MRR / diversity report read back from it."""

from lookalike.catalog.logs import ClickRecord, SearchRecord
from lookalike.quality.logger import SearchLogger
from lookalike.quality.report import DayQuality, QualityReport, format_report, quality_report
from lookalike.quality.retention import Pruned, prune_logs
from lookalike.quality.sessions import SessionHasher

__all__ = [
    "ClickRecord",
    "DayQuality",
    "Pruned",
    "QualityReport",
    "SearchLogger",
    "SearchRecord",
    "SessionHasher",
    "format_report",
    "prune_logs",
    "quality_report",
]
