"""A process-wide bound on the pixels being decoded at once, whatever the number of threads
or requests: a decode waits until the pixels it needs are free. With it, the memory that
decoding holds is at most the gate's capacity x 4 bytes (RGBA), however many API threads,
requests or ingest workers decode together."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from typing import Any


class DecodeGate:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._in_flight = 0
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def admit(self, pixels: int) -> Iterator[None]:
        """Hold `pixels` of the capacity while the block decodes (an image larger than the
        whole capacity waits until it can decode alone)."""
        wanted = min(pixels, self.capacity)
        with self._changed:
            self._changed.wait_for(lambda: self._in_flight + wanted <= self.capacity)
            self._in_flight += wanted
        try:
            yield
        finally:
            with self._changed:
                self._in_flight -= wanted
                self._changed.notify_all()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    # A gate travels (to a Ray worker, say) as a fresh one of the same capacity.
    def __getstate__(self) -> dict[str, Any]:
        return {"capacity": self.capacity}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["capacity"])  # type: ignore[misc]


M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter


def return_freed_memory_promptly(threshold: int = 4 * 1024 * 1024) -> bool:
    """Make every allocation of `threshold` bytes or more its own mapping, given back to
    the OS when freed (glibc; elsewhere nothing changes and this returns False).

    glibc raises that threshold on its own after large frees, so decoded image buffers
    (Pillow allocates them in 16 MB blocks) then come from per-thread heaps that keep them
    after they are freed: measured on a server, 4 requests of two 40 MP RGBA images raised
    the peak RSS by 370 MiB the first time instead of the 315 MiB the gate admits."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False
