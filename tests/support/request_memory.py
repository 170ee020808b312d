"""The "many huge blank images" attack on a real `lookalike serve`, and the server's peak
memory around it: shared by the memory test and `benchmarks/request_memory.py`.

Peak RSS is read from /proc: writing 5 to /proc/<pid>/clear_refs resets the process's
high-water mark (VmHWM) to its current RSS, so VmHWM after the attack minus VmRSS before
it is how much the attack raised the peak, whatever the process did earlier.
"""

from __future__ import annotations

import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import httpx
from PIL import Image

MiB = 1024 * 1024


@cache
def blank_png(side: int, mode: str = "L") -> bytes:
    """A blank side x side PNG: side^2 pixels in a few dozen KB (grey: 1 byte a pixel
    decoded; RGBA: 4, the most any allowed format decodes to)."""
    buffer = io.BytesIO()
    Image.new(mode, (side, side), 0).save(buffer, "PNG")
    return buffer.getvalue()


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, VmHWM, ... of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if rest.strip().endswith("kB"):
            values[name] = int(rest.split()[0]) * 1024
    return values


def reset_peak(pid: int) -> int:
    """Reset the process's peak RSS to its current RSS; returns that RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")
    return proc_status(pid)["VmRSS"]


@dataclass(frozen=True)
class AttackResult:
    statuses: list[int]
    rss_before: int
    peak_after: int
    seconds: float
    request_bytes: int  # one request's body

    @property
    def rise(self) -> int:
        return max(self.peak_after - self.rss_before, 0)


def send_attack(
    url: str,
    pid: int,
    *,
    requests: int = 4,
    images: int = 16,
    side: int = 6000,
    mode: str = "L",
    as_json: bool = False,
    timeout_s: float = 300.0,
) -> AttackResult:
    """`requests` parallel POST /v1/search, each with `images` blank side x side PNGs of
    `mode` (multipart, or JSON with base64 images); the peak RSS the server reached
    meanwhile."""
    data = blank_png(side, mode)
    if as_json:
        body = {"images": [base64.b64encode(data).decode()] * images}
        size = len(httpx.Request("POST", url, json=body).read())
    else:
        files = [("image", (f"{i}.png", data, "image/png")) for i in range(images)]
        size = len(httpx.Request("POST", url, files=files, data={"query": "{}"}).read())

    def one(_: int) -> int:
        with httpx.Client(timeout=timeout_s) as client:
            if as_json:
                return client.post(f"{url}/v1/search", json=body).status_code
            return client.post(f"{url}/v1/search", files=files, data={"query": "{}"}).status_code

    before = reset_peak(pid)
    started = time.monotonic()
    with ThreadPoolExecutor(requests) as pool:
        statuses = list(pool.map(one, range(requests)))
    seconds = time.monotonic() - started
    return AttackResult(statuses, before, proc_status(pid)["VmHWM"], seconds, size)
