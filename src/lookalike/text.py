"""Text as Lookalike encodes, caches, compares and stores it."""

from __future__ import annotations

import unicodedata

from lookalike.errors import InvalidInput


def normalise_text(text: str) -> str:
    """The text as it is encoded and cached: NFC, whitespace runs collapsed, trimmed."""
    return " ".join(unicodedata.normalize("NFC", text).split())


def check_text(text: object, what: str, max_chars: int) -> str:
    """`text` when it is a string of at most `max_chars` characters that every backend can
    store (no NUL: PostgreSQL refuses it; no lone surrogate: it has no UTF-8 form); else
    InvalidInput naming `what`."""
    if not isinstance(text, str):
        raise InvalidInput(f"{what} must be text, not {type(text).__name__}")
    if len(text) > max_chars:
        raise InvalidInput(f"{what} is {len(text)} characters long; at most {max_chars} allowed")
    if "\x00" in text:
        raise InvalidInput(f"{what} contains a NUL character")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} is not valid Unicode (a lone surrogate)") from exc
    return text
