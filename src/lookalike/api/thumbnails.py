"""Small JPEG copies of product images for result grids, made once and kept on disk."""

from __future__ import annotations

import hashlib
import io
import mimetypes
from pathlib import Path

from PIL import Image

from lookalike.encode import ImageLimits, decode_image
from lookalike.errors import ImageTooLarge
from lookalike.files.atomic import atomic_write

# Sizes are rounded up to one of these so the cache holds a few files per image, not one
# per size anybody asked for.
SIZES = (64, 128, 256, 512, 1024)


class ThumbnailCache:
    def __init__(self, directory: Path, limits: ImageLimits) -> None:
        self.directory = directory
        self.limits = limits

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
        if path.exists():
            return path
        if stat.st_size > self.limits.max_bytes:
            raise ImageTooLarge(f"over the limit of {self.limits.max_bytes} bytes")
        picture = decode_image(image.read_bytes(), self.limits, source=image.name)
        picture.thumbnail((bucket, bucket), Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        picture.save(buffer, "JPEG", quality=85, optimize=True)
        # Concurrent requests for the same thumbnail each write whole files; one replaces
        # the other atomically.
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))
        return path


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
