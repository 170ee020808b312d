"""Atomic files: write to a temp file in the same folder, fsync, then os.replace."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from lookalike.errors import IndexMismatch
from lookalike.index.base import IndexMeta

FORMAT_VERSION = 1


def atomic_write(path: Path, write: Callable[[str], None]) -> None:
    """`write(tmp_path)` fills a temp file that then replaces `path` in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


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
