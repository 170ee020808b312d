"""Text as Lookalike encodes, caches, compares and stores it."""

from __future__ import annotations

import json
import unicodedata
from typing import Any

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


def json_object(text: str, what: str) -> dict[str, Any]:
    """`text` parsed as a JSON object; else InvalidInput naming `what` (bad JSON, a
    5000-digit number, deep nesting, or JSON that is not an object)."""
    try:
        value = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidInput(f"{what} is not valid JSON: {getattr(exc, 'msg', exc)}") from exc
    if not isinstance(value, dict):
        raise InvalidInput(f"{what} must be a JSON object")
    return value
