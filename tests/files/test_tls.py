"""TLS through the pinned connection: the socket goes to the checked IP (127.0.0.1 here),
while SNI and certificate verification use the URL's host name. The certificate names
only `images.example.test` (no IP), so a fetch that verified against the IP would fail."""

from __future__ import annotations

import http.server
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lookalike.errors import FetchError
from lookalike.files.fetch import Fetcher
from tests.support.hostile_http import PNG

NAME = "images.example.test"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway CA and a server certificate for NAME signed by it (openssl CLI)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    where = tmp_path_factory.mktemp("tls")
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
            "/CN=lookalike test CA", "-keyout", "ca.key", "-out", "ca.pem", cwd=where)  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={NAME}",
            "-keyout", "server.key", "-out", "server.csr", cwd=where)  # fmt: skip
    (where / "san.cnf").write_text(f"subjectAltName=DNS:{NAME}\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.cnf", "-out", "server.pem",
            cwd=where)  # fmt: skip
    return where


@pytest.fixture
def tls_server(certificates: Path) -> Iterator[tuple[int, list[str | None]]]:
    """An https server on 127.0.0.1 serving PNG; yields (port, SNI names it was sent)."""
    server_names: list[str | None] = []
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates / "server.pem", certificates / "server.key")
    context.sni_callback = lambda _sock, name, _ctx: server_names.append(name)

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(PNG)))
            self.end_headers()
            self.wfile.write(PNG)

    class TLSServer(http.server.ThreadingHTTPServer):
        daemon_threads = True

        def get_request(self):  # handshake per connection, in the accepting thread
            sock, address = super().get_request()
            try:
                return context.wrap_socket(sock, server_side=True), address
            except (ssl.SSLError, OSError):
                sock.close()
                raise

        def handle_error(self, request: Any, client_address: Any) -> None:
            pass  # a refused handshake is the expected outcome of some tests

    server = TLSServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_address[1], server_names
    finally:
        server.shutdown()
        server.server_close()


def trusting(certificates: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(certificates / "ca.pem"))
    return context


def to_loopback(names: set[str]):
    def resolver(host: str) -> list[str]:
        assert host in names, f"only {names} may be resolved here, not {host}"
        return ["127.0.0.1"]

    return resolver


def test_tls_verifies_the_url_host_name_on_the_pinned_address(
    tls_server: tuple[int, list[str | None]], certificates: Path
) -> None:
    port, server_names = tls_server
    fetch = Fetcher(
        max_bytes=1 << 20,
        resolver=to_loopback({NAME}),
        allow_hosts=[f"{NAME}:{port}"],
        ssl_context=trusting(certificates),
    )
    try:
        assert fetch.fetch(f"https://{NAME}:{port}/a.png") == PNG
    finally:
        fetch.close()
    assert server_names == [NAME]  # SNI: the URL's name, not 127.0.0.1


def test_a_certificate_for_another_name_is_refused(
    tls_server: tuple[int, list[str | None]], certificates: Path
) -> None:
    port, _ = tls_server
    other = "cdn.example.test"
    fetch = Fetcher(
        max_bytes=1 << 20,
        retries=0,
        resolver=to_loopback({other}),
        allow_hosts=[f"{other}:{port}"],
        ssl_context=trusting(certificates),
    )
    try:
        with pytest.raises(FetchError, match="Hostname mismatch"):
            fetch.fetch(f"https://{other}:{port}/a.png")
    finally:
        fetch.close()


def test_an_untrusted_certificate_is_refused_by_default(
    tls_server: tuple[int, list[str | None]],
) -> None:
    port, _ = tls_server
    fetch = Fetcher(
        max_bytes=1 << 20, retries=0, resolver=to_loopback({NAME}), allow_hosts=[f"{NAME}:{port}"]
    )
    try:
        with pytest.raises(FetchError, match="unable to get local issuer certificate"):
            fetch.fetch(f"https://{NAME}:{port}/a.png")
    finally:
        fetch.close()
