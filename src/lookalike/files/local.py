"""The local side of the fetch policy: image files are read only under granted roots.

A root is granted by whoever runs Lookalike on the machine: the folder or manifest named
on the `lookalike index` command line, and the `media_roots` setting. API requests and
event streams are granted none. Inside a root a file is read only if its real path (every
symlink and `..` resolved) stays in the root and it is a regular file; the size is checked
on the opened descriptor and no more than the cap (plus one byte) is ever read, so
/dev/zero, FIFOs and /proc files cannot stall or flood a reader.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from lookalike.errors import FetchError, FetchRefused, ImageTooLarge

# O_NONBLOCK: opening a FIFO must not wait for a writer (it is refused right after).
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def local_path(location: str) -> Path:
    """The path a local source names: a plain path, or a file:// URL (no remote host)."""
    if not location.startswith("file:"):
        return Path(location)
    parts = urlsplit(location)
    if parts.netloc not in ("", "localhost"):
        raise FetchRefused(f"file URLs name no host, not {parts.netloc!r}", source=location)
    return Path(unquote(parts.path))


def real_roots(roots: Iterable[str | os.PathLike[str]]) -> tuple[Path, ...]:
    """Roots with every symlink resolved, duplicates dropped, in the order given."""
    return tuple(dict.fromkeys(Path(os.path.realpath(root)) for root in roots))


def resolve_under(location: str, roots: tuple[Path, ...]) -> Path:
    """The real path of a source inside one of the (real) `roots`, else `FetchRefused`.
    Does not open the file (the API's image route checks with this before serving)."""
    if not roots:
        raise FetchRefused(
            "local files are not accepted here: send an http(s) URL or upload the image",
            source=location,
        )
    try:
        real = Path(os.path.realpath(local_path(location)))
    except (ValueError, OSError) as exc:  # a NUL byte, a symlink loop
        raise FetchRefused(f"not a usable path: {exc}", source=location) from exc
    if not any(real.is_relative_to(root) for root in roots):
        raise FetchRefused(
            "outside the folders local images may come from (the folder or manifest being "
            "indexed, and media_roots)",
            source=location,
        )
    return real


class LocalFiles:
    """Reads image files under a set of roots (an empty set reads nothing)."""

    def __init__(self, roots: Iterable[str | os.PathLike[str]], *, max_bytes: int) -> None:
        self.roots = real_roots(roots)
        self.max_bytes = max_bytes

    def resolve(self, location: str) -> Path:
        """The real path of a source inside one of the roots (see `resolve_under`)."""
        return resolve_under(location, self.roots)

    def read(self, location: str) -> bytes:
        """The bytes of a regular file under a root, at most `max_bytes` of them."""
        real = self.resolve(location)
        try:
            fd = os.open(real, _OPEN_FLAGS)
        except FileNotFoundError as exc:
            raise FetchError("file not found", source=location) from exc
        except PermissionError as exc:
            raise FetchError("permission denied", source=location) from exc
        except OSError as exc:  # ELOOP: the path became a symlink after it was resolved
            raise FetchError(f"cannot open: {exc.strerror}", source=location) from exc
        try:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                kind = "a directory" if stat.S_ISDIR(info.st_mode) else "not a regular file"
                raise FetchRefused(f"{kind}: only regular image files are read", source=location)
            if info.st_size > self.max_bytes:  # checked before reading: never load a huge file
                raise ImageTooLarge(
                    f"{info.st_size} bytes is over the limit of {self.max_bytes} bytes",
                    source=location,
                )
            os.set_blocking(fd, True)
            data = _read_at_most(fd, self.max_bytes + 1)
        except OSError as exc:
            raise FetchError(f"cannot read: {exc.strerror}", source=location) from exc
        finally:
            os.close(fd)
        if len(data) > self.max_bytes:  # the file grew after fstat
            raise ImageTooLarge(f"over the limit of {self.max_bytes} bytes", source=location)
        return data


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, total = [], 0
    while total < limit:
        chunk = os.read(fd, min(limit - total, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        total += len(chunk)
    return b"".join(chunks)


# The roots `lookalike index` runs were granted, kept in the catalog's meta table under
# this key (a JSON list), so the API can serve those images and reindex can read them.
RECORDED_ROOTS_KEY = "media_roots"


def recorded_roots(text: str | None) -> list[Path]:
    """The roots stored under RECORDED_ROOTS_KEY (None or unreadable: none)."""
    try:
        value = json.loads(text) if text else []
    except json.JSONDecodeError:
        return []
    return (
        [Path(entry) for entry in value if isinstance(entry, str)]
        if isinstance(value, list)
        else []
    )


def with_recorded(text: str | None, roots: Iterable[str | os.PathLike[str]]) -> str | None:
    """The stored list with `roots` added; None when nothing changes (no write needed)."""
    known = [str(root) for root in recorded_roots(text)]
    added = [str(root) for root in real_roots(roots) if str(root) not in known]
    return json.dumps(known + added) if added else None
