"""Small JPEG copies of product images for result grids, made once and kept on disk.

The folder is bounded: when the thumbnails made pass `max_bytes`, the least recently used
are deleted until they fill at most LOW_WATER of it. "Used" is the file's mtime, moved
forward when a thumbnail is served (at most once per TOUCH_AFTER_S, so a busy grid does not
write an inode per request; atime is not trusted: most mounts are relatime or noatime).
Several processes may share the folder: each deletes by what it finds on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import mimetypes
import os
import threading
import time
from pathlib import Path

from PIL import Image

from lookalike.encode import ImageLimits, decode_image
from lookalike.errors import ImageTooLarge
from lookalike.files.atomic import atomic_write

# Sizes are rounded up to one of these so the cache holds a few files per image, not one
# per size anybody asked for.
SIZES = (64, 128, 256, 512, 1024)
LOW_WATER = 0.8  # a prune leaves the folder at most this full, so it does not run each time
TOUCH_AFTER_S = 60.0


class ThumbnailCache:
    def __init__(self, directory: Path, limits: ImageLimits, max_bytes: int) -> None:
        self.directory = directory
        self.limits = limits
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._size: int | None = None  # bytes on disk as last counted plus what we added

    def get(self, image: Path, size: int) -> Path:
        """Path of a JPEG no larger than `size` (rounded up to a bucket) on its longer side."""
        bucket = next((s for s in SIZES if s >= size), SIZES[-1])
        stat = image.stat()
        # The file's identity and version are part of the key: a replaced image gets a new
        # thumbnail, never the old one.
        key = hashlib.sha256(
            f"{image.resolve()}|{stat.st_mtime_ns}|{stat.st_size}|{bucket}".encode()
        ).hexdigest()
        path = self.directory / key[:2] / f"{key}.jpg"
        if _used(path):
            return path
        if stat.st_size > self.limits.max_bytes:
            raise ImageTooLarge(f"over the limit of {self.limits.max_bytes} bytes")
        picture = decode_image(image.read_bytes(), self.limits, source=image.name, shrink_to=bucket)
        picture.thumbnail((bucket, bucket), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=85, optimize=True)
        # Concurrent requests for the same thumbnail each write whole files; one replaces
        # the other atomically.
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
        self._added(len(buffer.getvalue()))
        return path

    def prune(self) -> int:
        """Delete the least recently used thumbnails until they fill at most LOW_WATER of
        `max_bytes`; returns how many were deleted."""
        with self._lock:
            files = []
            total = 0
            for path in self.directory.glob("*/*.jpg"):
                with contextlib.suppress(FileNotFoundError):
                    stat = path.stat()
                    files.append((stat.st_mtime, stat.st_size, path))
                    total += stat.st_size
            deleted = 0
            if total > self.max_bytes:
                for _mtime, size, path in sorted(files):
                    if total <= self.max_bytes * LOW_WATER:
                        break
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()
                        deleted += 1
                    total -= size
            self._size = total
            return deleted

    def _added(self, size: int) -> None:
        with self._lock:
            if self._size is not None:
                self._size += size
            over = self._size is None or self._size > self.max_bytes
        if over:  # the first write counts what is on disk; later ones only when over
            self.prune()


def _used(path: Path) -> bool:
    """Whether the thumbnail exists; marks it used (mtime) when it was not lately."""
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return False
    now = time.time()
    if now - mtime > TOUCH_AFTER_S:
        with contextlib.suppress(FileNotFoundError):
            os.utime(path, (now, now))
    return path.exists()


def media_type(path: Path) -> str:
    """Content type from the suffix, or sniffed from the header (uploads are stored by hash)."""
    guessed, _ = mimetypes.guess_type(path.name)
    if guessed and guessed.startswith("image/"):
        return guessed
    try:
        with Image.open(path) as image:
            return Image.MIME.get(image.format or "", "application/octet-stream")
    except (OSError, SyntaxError, ValueError):
        return "application/octet-stream"
