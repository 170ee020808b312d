"""Images uploaded through the API, kept by content hash under the data dir's `media/`."""

from __future__ import annotations

from pathlib import Path

from lookalike.files.atomic import write_bytes_atomic


def store_media(media_dir: Path, digest: str, data: bytes) -> Path:
    """The stored copy of `data` (whose SHA-256 is `digest`), written once."""
    path = media_dir / digest[:2] / digest
    if not path.exists():
        write_bytes_atomic(path, data)
    return path.resolve()
