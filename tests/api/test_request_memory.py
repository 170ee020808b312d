"""The memory attack of the security issue on a real `lookalike serve` with the default
image limits: 4 parallel requests of 16 maximal images (blank PNGs at the per-image pixel
limit, well under a MB a request) raise the server's peak RSS by at most 512 MiB and get
413 (503 where a concurrency cap sheds them), never a 500 or a crash; so does the most a
request within the budget can cost. `benchmarks/request_memory.py` reports the figures
beside the budget switched off."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.api_catalog import LiveServer, copy_data, start_server, stop_server
from tests.support.request_memory import MiB, send_attack

pytestmark = pytest.mark.slow

MAX_IMAGE_PIXELS = 40_000_000  # the default
SIDE = math.isqrt(MAX_IMAGE_PIXELS)  # a maximal image: 6324 x 6324
LIMIT = 512 * MiB


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, indexed_data: Path, tiny_model: Path
) -> Iterator[LiveServer]:
    env = {  # the defaults, not the small limits of the other API tests
        "LOOKALIKE_MAX_IMAGE_PIXELS": str(MAX_IMAGE_PIXELS),
        "LOOKALIKE_MAX_IMAGE_BYTES": str(20 * MiB),
        "LOOKALIKE_MAX_UPLOAD_BYTES": str(32 * MiB),
    }
    live = start_server(
        copy_data(indexed_data, tmp_path_factory.mktemp("memory")), tiny_model, extra_env=env
    )
    try:
        yield live
    finally:
        stop_server(live.process)


def still_answers(server: LiveServer) -> None:
    assert server.process.poll() is None
    found = httpx.get(f"{server.url}/v1/search/text", params={"q": "red"}, timeout=60)
    assert found.status_code == 200 and found.json()["results"]


@pytest.mark.parametrize("as_json", [False, True], ids=["multipart", "json-base64"])
def test_sixteen_maximal_images_in_four_parallel_requests(
    server: LiveServer, as_json: bool
) -> None:
    result = send_attack(
        server.url, server.process.pid, requests=4, images=16, side=SIDE, as_json=as_json
    )
    assert result.request_bytes < 1 * MiB
    assert set(result.statuses) <= {413, 503} and 413 in result.statuses, result.statuses
    assert result.rise <= LIMIT, f"peak RSS rose by {result.rise / MiB:.0f} MiB"
    still_answers(server)


def test_the_most_a_request_within_the_budget_costs(server: LiveServer) -> None:
    """Two maximal RGBA images (4 bytes a pixel decoded) fit the default budget of 100 MP:
    all four requests are decoded and answered, the process-wide decode gate keeping the
    pixels being decoded at once within the budget."""
    result = send_attack(
        server.url, server.process.pid, requests=4, images=2, side=SIDE, mode="RGBA"
    )
    assert set(result.statuses) <= {200, 503} and 200 in result.statuses, result.statuses
    assert result.rise <= LIMIT, f"peak RSS rose by {result.rise / MiB:.0f} MiB"
    still_answers(server)
