"""A real HTTP server on 127.0.0.1 serving a folder's files, for tests that name images by
URL. Image fetches refuse loopback unless host:port is allow-listed: `allow_entry` is the
`fetch_allow_hosts` entry that admits this server (and nothing else on the machine)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class FolderServer:
    """The server's base URL. A request under /slow/ sets `arrived`, then waits until
    `gate` is set before it is answered."""

    url: str
    port: int
    gate: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)

    @property
    def allow_entry(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url_of(self, path: Path, root: Path) -> str:
        """The URL of a file under the served folder."""
        return f"{self.url}/{path.relative_to(root).as_posix()}"


@contextmanager
def serve_folder(folder: Path) -> Iterator[FolderServer]:
    gate, arrived = threading.Event(), threading.Event()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, directory=str(folder), **kwargs)

        def do_GET(self) -> None:
            if self.path.startswith("/slow/"):
                arrived.set()
                gate.wait(timeout=60)
                self.path = self.path[len("/slow") :]
            super().do_GET()

        def log_message(self, *args: Any) -> None:  # keep test output quiet
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    try:
        yield FolderServer(f"http://127.0.0.1:{port}", port, gate, arrived)
    finally:
        gate.set()
        server.shutdown()
        server.server_close()
