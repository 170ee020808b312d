"""Lookalike: image search by image, text or both, over your own catalog."""

import os

# OpenMP workers (FAISS, torch: two runtimes in one process) spin while they wait for work
# by default, stealing the cores the other one needs; on a small or shared machine passive
# waiting made queries several times faster (benchmarks/README.md). OpenMP reads this once,
# when it loads, so it is set before anything imports FAISS or torch. An explicit value wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from lookalike.config import Settings
from lookalike.engine import Engine, SearchRequest

__all__ = ["Engine", "SearchRequest", "Settings"]
__version__ = "0.1.0"
