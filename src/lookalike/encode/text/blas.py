"""The size of numpy's BLAS thread pool, which the numpy text tower's products run on.

The pool is numpy's, one per process. Measured on 2 busy cores, two OpenBLAS threads made
a one-text query 15x slower than one thread (their workers spin while they wait, fighting
FAISS and the server's threads for the cores), so the tower asks for one thread unless
configured otherwise: a server gets its parallelism from concurrent requests instead.
"""

from __future__ import annotations

import threading
from pathlib import Path

_lock = threading.Lock()
_applied: int | None = None


def limit_numpy_blas(threads: int) -> None:
    """Cap numpy's BLAS pool at `threads` workers (process-wide; FAISS's own BLAS is left
    alone). A no-op when numpy's BLAS cannot be found."""
    global _applied
    with _lock:
        if _applied == threads:
            return
        from threadpoolctl import ThreadpoolController

        for lib in ThreadpoolController().lib_controllers:
            if lib.user_api == "blas" and _is_numpys(Path(lib.filepath)):
                lib.set_num_threads(threads)
        _applied = threads


def _is_numpys(path: Path) -> bool:
    # Wheels keep numpy's OpenBLAS in numpy.libs (Linux), numpy/.dylibs (macOS) or
    # numpy.libs beside it (Windows); its name says scipy_openblas since numpy 2.
    return "scipy_openblas" in path.name or any(part.startswith("numpy") for part in path.parts)
