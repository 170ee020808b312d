"""Atomic files: write to a temp file in the same folder, fsync, then os.replace.

A crash never leaves a half-written file: readers see the old content or the new, whole.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


def write_text_atomic(path: Path, text: str) -> None:
    """`path` holds `text`, whole, or keeps what it held."""
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """`path` holds `data`, whole, or keeps what it held."""
    atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def write_json_atomic(path: Path, value: Any) -> None:
    """`value` as indented JSON with sorted keys, written atomically."""
    write_text_atomic(path, json.dumps(value, indent=2, sort_keys=True))
