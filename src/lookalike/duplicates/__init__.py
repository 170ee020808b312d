"""Near-duplicate detection: perceptual hashes (FAISS binary range search) and embedding
neighbours as candidates, confirmed pair by pair, joined into groups kept current by every
write (`detector.py`); hashing images that have none (`backfill.py`); groups as JSON, CSV
and an HTML contact sheet (`report.py`)."""

from lookalike.duplicates.detector import DuplicateFinder, DuplicateRules, GroupReport

__all__ = ["DuplicateFinder", "DuplicateRules", "GroupReport"]
