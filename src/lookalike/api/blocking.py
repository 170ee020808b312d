"""Blocking work (encoding, FAISS, SQLite, file reads) runs on a thread pool owned by the
app's lifespan, so one slow request never stalls the event loop for the others.

The pool's queue is bounded: when `threads` calls are running and `queue_max` more are
waiting, the next call is refused at once with `Overloaded` (503, `Retry-After`) instead of
joining a queue whose wait only grows. A call whose caller gave up (a request past its
deadline, a client gone) before a thread picked it up is dropped, never run.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ParamSpec, TypeVar

from lookalike.errors import Overloaded

P = ParamSpec("P")
T = TypeVar("T")


class BlockingRunner:
    def __init__(self, threads: int, queue_max: int | None = None) -> None:
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="lookalike-api")
        self.threads = threads
        self.queue_max = queue_max
        self._busy = 0  # calls running or waiting
        self._lock = threading.Lock()

    @property
    def busy(self) -> int:
        """Requests' calls running or waiting for a thread."""
        return self._busy

    async def __call__(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run `fn(*args, **kwargs)` on the pool and await its result (Overloaded when the
        queue is full)."""
        with self._lock:
            if self.queue_max is not None and self._busy >= self.threads + self.queue_max:
                raise Overloaded(
                    f"the server is busy ({self.threads} threads at work, {self.queue_max} "
                    "calls waiting): try again shortly",
                    retry_after=1,
                )
            self._busy += 1
        try:
            future = self.pool.submit(functools.partial(fn, *args, **kwargs))
        except BaseException:
            self._done(None)
            raise
        # Counted until the work itself ends (or is dropped unstarted), not until the
        # caller stops waiting: an abandoned call still holds its thread.
        future.add_done_callback(self._done)
        # Cancelling the await cancels the pool's future too: unstarted work never runs.
        return await asyncio.wrap_future(future)

    async def background(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """The same for the server's own work (start-up, the index sync, one call at a
        time): neither shed nor counted, or a busy server would stop picking up catalog
        changes."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))

    def _done(self, _future: Future[Any] | None) -> None:
        with self._lock:
            self._busy -= 1

    def shutdown(self) -> None:
        self.pool.shutdown(wait=True, cancel_futures=True)
