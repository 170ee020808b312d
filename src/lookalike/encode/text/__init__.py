"""Text towers: frozen text encoders, loaded through one registry (see `registry`)."""

from lookalike.encode.text.base import (
    DEFAULT_TEXT_MODEL,
    TextSource,
    TextTower,
    TextTowerOptions,
    same_weights,
)
from lookalike.encode.text.registry import (
    load_text_tower,
    parse_text_source,
    register_packaged_text_model,
    register_text_tower,
    text_tower_kinds,
)

__all__ = [
    "DEFAULT_TEXT_MODEL",
    "TextSource",
    "TextTower",
    "TextTowerOptions",
    "load_text_tower",
    "parse_text_source",
    "register_packaged_text_model",
    "register_text_tower",
    "same_weights",
    "text_tower_kinds",
]
