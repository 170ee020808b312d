"""Index metadata files (`index.json`), written atomically."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from lookalike.errors import IndexMismatch
from lookalike.files.atomic import atomic_write
from lookalike.index.base import IndexMeta

FORMAT_VERSION = 1


def write_meta(path: Path, meta: IndexMeta) -> None:
    text = json.dumps(asdict(meta), indent=2, sort_keys=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_meta(path: Path) -> IndexMeta:
    try:
        raw = json.loads(path.read_text())
        meta = IndexMeta(**raw)
    except (OSError, ValueError, TypeError) as exc:
        raise IndexMismatch(f"unreadable index metadata {path}: {exc}") from exc
    if meta.format_version != FORMAT_VERSION:
        raise IndexMismatch(f"index format {meta.format_version} is not {FORMAT_VERSION}")
    return meta
