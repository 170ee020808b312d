"""Cross-process locks on a lock file (`fcntl.flock`): held by an open file, so the kernel
releases them when their process dies, even by SIGKILL; nothing stale is ever left to
clean up. They coordinate processes on one machine (flock over NFS is not reliable)."""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive_lock(path: Path) -> Iterator[None]:
    """Hold the lock on `path` (created when missing), waiting for it as long as it takes.

    Keep the section short: every other process that wants the lock waits for it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def try_exclusive_lock(path: Path) -> Iterator[bool]:
    """Take the lock on `path` if it is free; yields whether this process got it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
