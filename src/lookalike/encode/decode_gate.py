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
