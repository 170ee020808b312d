"""What the in-process encoder benchmarks share: the machine's load and the results file."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any


def uptime() -> str:
    """`uptime`'s line: load averages go beside every figure (the machine is shared)."""
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def append_result(path: Path, result: dict[str, Any]) -> None:
    """One JSON line per run, appended to the benchmark's results file."""
    path.parent.mkdir(exist_ok=True)
    with path.open("a") as handle:
        handle.write(json.dumps(result) + "\n")
