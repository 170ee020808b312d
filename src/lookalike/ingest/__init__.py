"""Batch ingest (folders, CSV/JSONL manifests, URLs) and real-time updates."""

from lookalike.ingest.pipeline import IngestPipeline, IngestReport
from lookalike.ingest.sources import BadRow, ItemSpec, item_from_record, open_source

__all__ = [
    "BadRow",
    "IngestPipeline",
    "IngestReport",
    "ItemSpec",
    "item_from_record",
    "open_source",
]
