"""Images uploaded through the API, kept by content hash under the data dir's `media/`,
shared by every product with the same image and deleted with the last of them.

A file's references are the products whose image source is that file: the catalog answers
"which image sources do products with this content hash have" from an index (migration
0006), so references are never counted apart from the products themselves and cannot
drift from them. Crash safety: a file is written before the product that points at it
commits, and deleted only after the last such product is gone, so a crash leaves at worst
a file nobody points at (the next `sweep` removes it), never a product whose file is
missing. One lock file serialises "write the file + commit its product" against "count its
references + delete it" across threads and processes on this data dir, so an upload of the
same image at the same moment can never lose its file to a delete.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path

from lookalike.catalog.base import Catalog
from lookalike.files.atomic import write_bytes_atomic

DIGEST = re.compile(r"^[0-9a-f]{64}$")
SWEEP_BATCH = 500  # files whose references one catalog query checks


class MediaStore:
    """Content-addressed files `directory/ab/abcd...`, reference-counted by `catalog`."""

    def __init__(self, directory: Path, catalog: Catalog) -> None:
        self.directory = directory
        self.catalog = catalog

    def path_of(self, digest: str) -> Path:
        return self.directory / digest[:2] / digest

    @contextlib.contextmanager
    def storing(self, digest: str, data: bytes) -> Iterator[Path]:
        """The stored copy of `data` (whose SHA-256 is `digest`), written once; the block
        commits the product that points at it while the file cannot be deleted."""
        with self._locked():
            path = self.path_of(digest)
            if not path.exists():
                write_bytes_atomic(path, data)
            yield path.resolve()

    @contextlib.contextmanager
    def holding(self, source: str) -> Iterator[None]:
        """While the block runs, `source` (when it is a stored file) cannot be deleted: for
        a write that keeps pointing at a stored file it read."""
        if self._stored_file(source) is None:
            yield
            return
        with self._locked():
            yield

    def release(self, sources: Iterable[str | None]) -> int:
        """Delete the stored files among `sources` that no product points at any more
        (call after the products that pointed at them were deleted or changed their
        image); returns how many were deleted."""
        files = {}
        for source in sources:
            path = self._stored_file(source)
            if path is not None:
                files[path.name] = path
        if not files:
            return 0
        with self._locked():
            return self._delete_unreferenced(files)

    def sweep(self) -> int:
        """Delete every stored file no product points at: left by a crash between a delete
        and its release, or by writes that replaced an image outside the API (a manifest,
        an event). Returns how many were deleted."""
        removed = 0
        files = self._all_files()
        while batch := dict(islice(files, SWEEP_BATCH)):
            with self._locked():
                removed += self._delete_unreferenced(batch)
        return removed

    # --- internals -----------------------------------------------------------------------
    def _delete_unreferenced(self, files: dict[str, Path]) -> int:
        """Under the lock: delete the files (digest -> path) no product references."""
        sources = self.catalog.image_sources(list(files))
        # A reference is a product with this content whose image is a stored media file of
        # it, wherever the data dir was then (a moved data dir keeps its files).
        referenced = {Path(source).name for source in sources}
        removed = 0
        for digest, path in files.items():
            if digest not in referenced:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed += 1
        return removed

    def _stored_file(self, source: str | None) -> Path | None:
        """`source` as a file of this store, or None when it is anything else."""
        if not source:
            return None
        path = Path(source)
        if not DIGEST.match(path.name):
            return None
        root = self.directory.resolve()
        return path if path.parent == root / path.name[:2] else None

    def _all_files(self) -> Iterator[tuple[str, Path]]:
        root = self.directory.resolve()
        if not root.is_dir():
            return
        for folder in sorted(root.iterdir()):
            if not folder.is_dir():
                continue
            for path in sorted(folder.iterdir()):
                if DIGEST.match(path.name) and path.name[:2] == folder.name:
                    yield path.name, path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        # flock: released by the kernel if the holder dies; each open() is its own lock
        # owner, so threads of one process exclude each other as processes do.
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)
