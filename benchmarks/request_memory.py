"""How much one burst of huge-image search requests raises a real server's peak memory.

The attack of the security issue: 4 parallel `POST /v1/search`, each with 16 blank PNGs at
the per-image pixel limit (6324 x 6324 = 40 MP each, ~40 KB of file: about 0.7 MB a
request, 640 MP decoded). A `lookalike serve` (tiny model, empty catalog) gets it with the
default limits, then with the pixel budget switched off (LOOKALIKE_MAX_REQUEST_PIXELS
huge): the unguarded baseline. Off, every image is decoded, so the baseline is sent a
smaller attack (4 requests of --baseline-images each) that cannot exhaust a shared
machine; the table says what each row sent. `--before PATH` adds rows for another
checkout's `src/` (e.g. the code before the budget), with that smaller attack too.

Peak memory is the server's VmHWM after the burst minus its VmRSS before it (the
high-water mark is reset first through /proc/<pid>/clear_refs).

    PYTHONPATH=src python benchmarks/request_memory.py            # about 2 minutes
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.support.api_catalog import start_server, stop_server  # noqa: E402
from tests.support.request_memory import AttackResult, MiB, send_attack  # noqa: E402
from tests.support.tiny_models import build_tiny_openclip  # noqa: E402

MAX_IMAGE_PIXELS = 40_000_000  # the default per-image limit
SIDE = math.isqrt(MAX_IMAGE_PIXELS)
DEFAULTS = {  # the settings' defaults (the test fixtures' small limits replaced)
    "LOOKALIKE_MAX_IMAGE_PIXELS": str(MAX_IMAGE_PIXELS),
    "LOOKALIKE_MAX_IMAGE_BYTES": str(20 * MiB),
    "LOOKALIKE_MAX_UPLOAD_BYTES": str(32 * MiB),
}
BUDGET_OFF = {"LOOKALIKE_MAX_REQUEST_PIXELS": str(10**12)}


def measure(
    label: str,
    model: Path,
    work: Path,
    env: dict[str, str],
    attack: dict[str, object],
) -> tuple[str, dict[str, object], AttackResult]:
    data_dir = work / str(len(list(work.iterdir())))
    server = start_server(data_dir, model, extra_env=env)
    try:
        send_attack(server.url, server.process.pid, requests=1, images=1, side=64)  # warm up
        result = send_attack(server.url, server.process.pid, side=SIDE, **attack)  # type: ignore[arg-type]
        alive = server.process.poll() is None
    finally:
        stop_server(server.process)
    return label + ("" if alive else " (server died)"), attack, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=4)
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument(
        "--baseline-images",
        type=int,
        default=4,
        help="images per request sent where they are all decoded (budget off, --before)",
    )
    parser.add_argument("--before", type=Path, help="another checkout's src/ to compare")
    args = parser.parse_args()
    n = args.requests
    full = {"requests": n, "images": args.images, "mode": "L"}
    small = {"requests": n, "images": args.baseline_images, "mode": "L"}
    # The most a request within the default budget (100 MP) can make the server decode:
    # two maximal images that decode to 4 bytes a pixel.
    within = {"requests": n, "images": 2, "mode": "RGBA"}
    runs: list[tuple[str, dict[str, str], dict[str, object]]] = [
        ("budget on (default), multipart", DEFAULTS, full),
        ("budget on (default), JSON base64", DEFAULTS, {**full, "as_json": True}),
        ("budget on (default), within it", DEFAULTS, within),
        ("budget off", {**DEFAULTS, **BUDGET_OFF}, small),
    ]
    if args.before is not None:
        runs.append(("before this change", {**DEFAULTS, "PYTHONPATH": str(args.before)}, small))

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        model = build_tiny_openclip(work / "model")
        for label, env, attack in runs:
            rows.append(measure(label, model, work, env, attack))

    print(
        f"Parallel POST /v1/search with blank {SIDE}x{SIDE} PNGs (40 MP each, the default "
        "per-image limit); grey decodes to 1 byte a pixel, RGBA to 4"
    )
    print()
    print("| server | requests x images | MP sent | body/request | answers | peak RSS rise | s |")
    print("|---|---|---|---|---|---|---|")
    for label, attack, result in rows:
        statuses = sorted(set(result.statuses))
        answers = ", ".join(f"{s} x{result.statuses.count(s)}" for s in statuses)
        requests, images = attack["requests"], attack["images"]
        shape = f"{requests} x {images} {attack['mode']}"
        mp = int(requests) * int(images) * SIDE * SIDE / 1e6  # type: ignore[call-overload]
        print(
            f"| {label} | {shape} | {mp:,.0f} | {result.request_bytes / MiB:.2f} MiB | "
            f"{answers} | {result.rise / MiB:,.0f} MiB | {result.seconds:.1f} |"
        )


if __name__ == "__main__":
    main()
