"""How a FAISS index is saved: one file per save, and one small pointer that names it.

    index/
      index.json            the pointer: the index's metadata (family, watermark, catalog
                            id, ...) and the snapshot number of the file holding it
      index-00000007.faiss  the index as of that watermark (written once, never changed)
      index-00000006.faiss  the previous one, kept for processes still opening it
      .lock                 held (flock) for the moment a save makes its file current

A save writes its file under a temporary name first (this may take long, and holds no
lock), then holds the lock while it reads the pointer: when the saved index is further
along the catalog log than this one, the save is dropped (making it current would lose
other processes' progress); otherwise the file is renamed to the next snapshot number and
the pointer replaced in one `os.replace`. Whoever reads the pointer finds an index and the
watermark that belongs to it; a process killed at any point leaves the previous pair in
place (and perhaps a temporary file, which a later save removes).

The first layout, `index.faiss` + `index.json` (format 1, written as two separate steps),
still loads: its pointer names snapshot 0.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TypeVar

from lookalike.errors import IndexMismatch
from lookalike.files.atomic import atomic_write
from lookalike.files.lock import exclusive_lock
from lookalike.index.base import IndexMeta

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
READABLE_FORMATS = (1, 2)
META_FILE = "index.json"
LEGACY_INDEX_FILE = "index.faiss"
LOCK_FILE = ".lock"
# A temporary file untouched this long belongs to a save that died (a live one writes it
# continuously, then renames it within moments).
STALE_TEMP_S = 15 * 60
# Times to read the pointer again when the file it named was removed before it was opened
# (two saves landed in between).
OPEN_ATTEMPTS = 5

_SNAPSHOT = re.compile(r"index-(\d+)\.faiss")

T = TypeVar("T")


def write_meta(path: Path, meta: IndexMeta) -> None:
    text = json.dumps(asdict(meta), indent=2, sort_keys=True)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def read_meta(path: Path) -> IndexMeta:
    try:
        raw = json.loads(path.read_text())
        meta = IndexMeta(**raw)
    except (OSError, ValueError, TypeError) as exc:
        raise IndexMismatch(f"unreadable index metadata {path}: {exc}") from exc
    if meta.format_version not in READABLE_FORMATS:
        raise IndexMismatch(f"index format {meta.format_version} is not one of {READABLE_FORMATS}")
    return meta


def snapshot_path(directory: Path, snapshot: int) -> Path:
    """The file that holds snapshot `snapshot` (0: the first layout's `index.faiss`)."""
    return directory / (f"index-{snapshot:08d}.faiss" if snapshot else LEGACY_INDEX_FILE)


def saved_meta(directory: Path) -> IndexMeta | None:
    """The metadata of the index saved in `directory`, or None when there is none."""
    path = directory / META_FILE
    if not path.exists():
        return None
    return read_meta(path)


def save_snapshot(directory: Path, meta: IndexMeta, write: Callable[[str], None]) -> int | None:
    """Save an index: `write(tmp_path)` writes it, then it becomes the saved index unless the
    one saved is further along this catalog's log. Returns its snapshot number, or None
    when it was dropped."""
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".index-", suffix=".tmp", dir=directory)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        with exclusive_lock(directory / LOCK_FILE):
            current = _current(directory)
            if current is not None and _ahead(current, meta):
                log.info(
                    "index save dropped: the saved index is at log entry %d, this one at %d",
                    current.watermark,
                    meta.watermark,
                )
                return None
            previous = current.snapshot if current is not None else None
            snapshot = _next_snapshot(directory, previous)
            os.replace(tmp, snapshot_path(directory, snapshot))
            saved = replace(meta, format_version=FORMAT_VERSION, snapshot=snapshot)
            write_meta(directory / META_FILE, saved)
            _prune(directory, keep={snapshot, previous})
            return snapshot
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def open_snapshot(directory: Path, read: Callable[[Path, IndexMeta], T]) -> T:
    """`read(file, meta)` on the saved index and its metadata, read as one pair."""
    for _ in range(OPEN_ATTEMPTS):
        meta = read_meta(directory / META_FILE)
        path = snapshot_path(directory, meta.snapshot)
        try:
            return read(path, meta)
        except IndexMismatch:
            if path.exists():
                raise
        # Removed after the pointer was read: a newer pointer is in place by now.
    raise IndexMismatch(f"the index saved in {directory} changed under every attempt to open it")


def _current(directory: Path) -> IndexMeta | None:
    """The saved index's metadata; None when there is none or it cannot be read (a save
    then replaces it: an index nobody can load protects nothing)."""
    try:
        return saved_meta(directory)
    except IndexMismatch as exc:
        log.warning("replacing the saved index: %s", exc)
        return None


def _ahead(current: IndexMeta, new: IndexMeta) -> bool:
    """Whether the saved index is further along the log than `new`."""
    if current.catalog_id and new.catalog_id and current.catalog_id != new.catalog_id:
        return False  # another catalog's index: its watermark counts another log
    return current.watermark > new.watermark


def _next_snapshot(directory: Path, previous: int | None) -> int:
    # Past every number on disk too: a file left by an unreadable pointer is never reused.
    numbers = [int(m.group(1)) for p in directory.iterdir() if (m := _SNAPSHOT.fullmatch(p.name))]
    return max([previous or 0, *numbers]) + 1


def _prune(directory: Path, keep: set[int | None]) -> None:
    """Remove snapshots other than `keep` and temporary files of saves that died."""
    now = time.time()
    for path in directory.iterdir():
        match = _SNAPSHOT.fullmatch(path.name)
        number = int(match.group(1)) if match else (0 if path.name == LEGACY_INDEX_FILE else None)
        temporary = path.name.startswith(".index") and path.name.endswith(".tmp")
        try:
            if (number is not None and number not in keep) or (
                temporary and now - path.stat().st_mtime > STALE_TEMP_S
            ):
                path.unlink()
        except FileNotFoundError:
            pass  # another process removed it first
