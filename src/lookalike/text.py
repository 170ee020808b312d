"""Text as Lookalike encodes, caches and compares it."""

from __future__ import annotations

import unicodedata


def normalise_text(text: str) -> str:
    """The text as it is encoded and cached: NFC, whitespace runs collapsed, trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())
