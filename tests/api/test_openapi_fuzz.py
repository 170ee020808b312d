"""Property-based fuzzing of the real app over its own OpenAPI schema (schemathesis): no
request gets a 500, and no response breaks the schema the API documents for it.

The app serves from this process on a loopback port (a real uvicorn server in a thread,
over a copy of the small indexed catalog), and this process can neither resolve a name nor
connect anywhere but loopback while it runs (`tests/support/loopback_only.py`): a fuzzed
`image_url` never leaves the machine. Bounded to a few minutes: examples per operation are
capped below.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.specs.openapi.checks import response_schema_conformance

from lookalike.api import create_app
from lookalike.config import Settings
from tests.support.api_catalog import WRITE_HEADERS, api_settings, copy_data, free_port
from tests.support.loopback_only import Refusals, loopback_only

pytestmark = pytest.mark.fuzz

EXAMPLES_PER_OPERATION = 150
STATEFUL_SEQUENCES = 120


class FuzzedServer:
    def __init__(self, url: str, refused: Refusals) -> None:
        self.url = url
        self.refused = refused


@pytest.fixture(scope="module")
def fuzzed_server(
    tmp_path_factory: pytest.TempPathFactory, indexed_data: Path, tiny_model: Path
) -> Iterator[FuzzedServer]:
    data_dir = copy_data(indexed_data, tmp_path_factory.mktemp("fuzz"))
    app = create_app(api_settings(data_dir, tiny_model))
    port = free_port()
    # The asyncio loop (not uvloop): its sockets are Python's, which the guard covers.
    config = uvicorn.Config(app, host="127.0.0.1", port=port, loop="asyncio", log_level="error")
    server = uvicorn.Server(config)
    with loopback_only() as refused:
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the fuzzed server did not become ready")
        try:
            yield FuzzedServer(url, refused)
        finally:
            server.should_exit = True
            thread.join(timeout=30)


# The schema the app serves at /openapi.json, built without starting it (nothing is opened
# until the lifespan runs), so pytest can list one test per operation.
# Both modes: requests the schema allows, and requests it forbids (which must get a 4xx).
schema = schemathesis.openapi.from_dict(
    create_app(Settings(_env_file=None, data_dir=Path("unused"))).openapi(),
    config=SchemathesisConfig.from_dict({"generation": {"mode": "all"}}),
)


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_server_error_and_every_response_matches_its_schema(
    case: schemathesis.Case, fuzzed_server: FuzzedServer
) -> None:
    case.call_and_validate(
        base_url=fuzzed_server.url,
        headers=WRITE_HEADERS,  # writes are fuzzed too, not just refused
        checks=[not_a_server_error, response_schema_conformance],
    )


def test_the_guard_refuses_before_anything_is_sent() -> None:
    """The guard the fuzzing runs under, with the real resolver and connect replaced by
    recorders: refused names and addresses never reach them, loopback ones do."""
    import socket

    reached: list[object] = []
    with loopback_only(
        resolve=lambda host, *a, **k: reached.append(host) or [],
        connect_to=lambda sock, address: reached.append(address) or 0,
    ) as refused:
        for name in ("example.com", "metadata.google.internal", "10.0.0.1", "169.254.169.254"):
            with pytest.raises(socket.gaierror):
                socket.getaddrinfo(name, 80)
        socket.getaddrinfo("localhost", 80)
        with socket.socket() as sock:
            for address in ("192.0.2.1", "10.0.0.1", "192.168.1.1"):
                with pytest.raises(ConnectionRefusedError):
                    sock.connect((address, 80))
            sock.connect(("127.0.0.1", 9))
        with socket.socket(socket.AF_INET6) as sock:
            with pytest.raises(ConnectionRefusedError):
                sock.connect_ex(("2001:db8::1", 80, 0, 0))
            sock.connect_ex(("::1", 9, 0, 0))
    assert reached == ["localhost", ("127.0.0.1", 9), ("::1", 9, 0, 0)]
    assert refused.names == [
        "example.com",
        "metadata.google.internal",
        "10.0.0.1",
        "169.254.169.254",
    ]
    assert refused.addresses == ["192.0.2.1", "10.0.0.1", "192.168.1.1", "2001:db8::1"]


def test_stateful_sequences_follow_the_links(fuzzed_server: FuzzedServer) -> None:
    """Chains of calls along the schema's links: a search's id and first result into a
    click, a written product into reads of it and its deletion."""
    checks = [not_a_server_error, response_schema_conformance]

    class Sequences(schema.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: schemathesis.Case) -> dict[str, object]:
            return {"base_url": fuzzed_server.url, "headers": WRITE_HEADERS}

        def validate_response(self, response, case, additional_checks=None, **kwargs) -> None:  # type: ignore[no-untyped-def]
            case.validate_response(response, checks=checks)

    Sequences.run(
        settings=settings(
            max_examples=STATEFUL_SEQUENCES,
            stateful_step_count=6,
            deadline=None,
            suppress_health_check=list(HealthCheck),
        )
    )
