"""Lookalike: image search by image, text or both, over your own catalog.

`from lookalike import Engine, Settings, SearchRequest` works as always, but the names
load on first use (module `__getattr__`): `import lookalike` itself stays cheap, so the
CLI's `--help` and a text search do not pay for FAISS, torch or PIL before they need them.
"""

import os
from importlib import import_module
from typing import TYPE_CHECKING, Any

# OpenMP workers (FAISS, torch: two runtimes in one process) spin while they wait for work
# by default, stealing the cores the other one needs; on a small or shared machine passive
# waiting made queries several times faster (benchmarks/README.md). OpenMP reads this once,
# when it loads, so it is set before anything imports FAISS or torch. An explicit value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

if TYPE_CHECKING:
    from lookalike.config import Settings
    from lookalike.engine import Engine, SearchRequest

# name -> module that defines it; imported when the name is first asked for.
_LAZY = {
    "Engine": "lookalike.engine",
    "SearchRequest": "lookalike.engine",
    "Settings": "lookalike.config",
}

__all__ = ["Engine", "SearchRequest", "Settings"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lookalike' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
