"""A real redis-server (Debian's `redis-server` package) for tests: started on a free local
port in a temp dir, without persistence, and stopped afterwards.

Test modules import the fixtures they use: `from tests.support.redis_server import redis_url`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import stop_process


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.root = Path(tempfile.mkdtemp(prefix="lookalike-redis-"))
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        import redis

        for _attempt in range(3):  # the port may be taken between choosing and binding it
            self.port = _free_port()
            self.process = subprocess.Popen(
                [
                    self.executable,
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.root),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=open(self.root / "redis.log", "wb"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
            )
            client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    client.ping()
                    client.close()
                    return self
                except redis.ConnectionError:
                    time.sleep(0.05)
            client.close()
            self.stop_process()
        raise RuntimeError(f"redis-server did not start; see {self.root / 'redis.log'}")

    def stop_process(self) -> None:
        stop_process(self.process, grace_s=10)

    def stop(self) -> None:
        self.stop_process()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the session (skipped when it is not installed)."""
    pytest.importorskip("redis", reason="needs lookalike[redis]")
    executable = shutil.which("redis-server")
    if executable is None:
        pytest.skip("redis-server not installed: apt-get install redis-server")
    server = RedisServer(executable).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The server's URL, emptied for this test."""
    import redis

    with redis.Redis.from_url(redis_server.url) as client:
        client.flushall()
    return redis_server.url
