"""Hostile image hosts end to end on 127.0.0.1: redirects to another loopback port, to
file://, in a loop; a server that drips; one that sends 1 GB; a gzip bomb; garbage. Each
gets a typed refusal within the deadline, and a loopback canary records no request.

Only 127.0.0.1 is ever connected to. The loopback spellings go through the system
resolver - every one of them is numeric or `localhost` (answered from /etc/hosts), which a
guard in the resolver below makes sure of - so no DNS query leaves the machine."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from lookalike.errors import FetchError, FetchRefused, ImageTooLarge
from lookalike.files.fetch import Fetcher
from lookalike.files.guard import system_resolver
from tests.support.hostile_http import PNG, GiB, LoopbackServer

DEADLINE_S = 1.5
SLACK_S = 3.0  # scheduling on a busy 2-core machine (other test processes, CI neighbours)


_made: list[Fetcher] = []


@pytest.fixture(autouse=True)
def _close_fetchers() -> Iterator[None]:
    yield
    while _made:
        _made.pop().close()


def made(fetcher: Fetcher) -> Fetcher:
    _made.append(fetcher)  # closed after the test (its pooled connections with it)
    return fetcher


def fetcher_for(*servers: LoopbackServer, **options) -> Fetcher:
    """A fetcher that admits only the given servers (by exact 127.0.0.1:port)."""
    settings = {"max_bytes": 1 << 20, "timeout_s": 5.0, "retries": 0, "deadline_s": DEADLINE_S}
    settings.update(options)
    return made(Fetcher(allow_hosts=[s.allow_entry for s in servers], **settings))


def timed(fetch: Fetcher, url: str, error: type[Exception], match: str | None = None) -> float:
    started = time.monotonic()
    with pytest.raises(error, match=match):
        fetch.fetch(url)
    return time.monotonic() - started


def test_an_allow_listed_server_is_fetched(hostile: LoopbackServer) -> None:
    assert fetcher_for(hostile).fetch(f"{hostile.url}/png") == PNG


def test_a_redirect_to_another_loopback_port_is_refused(
    hostile: LoopbackServer, canary: LoopbackServer
) -> None:
    fetch = fetcher_for(hostile)
    for target in (canary.url, f"http://localhost:{canary.port}", f"http://[::1]:{canary.port}"):
        url = f"{hostile.url}/redirect?to={target}/png"
        elapsed = timed(fetch, url, FetchRefused, "loopback")
        assert elapsed < DEADLINE_S + SLACK_S
    # canary: no request (checked by the fixture)


def test_a_redirect_to_an_allowed_host_is_followed(hostile: LoopbackServer) -> None:
    with_chain = fetcher_for(hostile, max_redirects=3)
    assert with_chain.fetch(f"{hostile.url}/chain/3") == PNG
    assert with_chain.fetch(f"{hostile.url}/redirect?to={hostile.url}/png") == PNG


def test_a_redirect_to_a_file_url_is_refused(hostile: LoopbackServer) -> None:
    fetch = fetcher_for(hostile)
    for target in ("file:///etc/passwd", "file://localhost/etc/passwd", "/etc/passwd"):
        url = f"{hostile.url}/redirect?to={target}"
        if target.startswith("/"):  # a relative redirect stays on the same (allowed) host
            with pytest.raises(FetchError, match="HTTP 404"):
                fetch.fetch(url)
        else:
            timed(fetch, url, FetchRefused, "only http and https")


@pytest.mark.parametrize("target", ["gopher://127.0.0.1:70/x", "ftp://127.0.0.1/x"])
def test_a_redirect_to_another_scheme_is_refused(hostile: LoopbackServer, target: str) -> None:
    url = f"{hostile.url}/redirect?to={target}"
    timed(fetcher_for(hostile), url, FetchRefused, "only http and https")


def test_a_redirect_to_a_data_url_is_a_typed_error(hostile: LoopbackServer) -> None:
    timed(fetcher_for(hostile), f"{hostile.url}/redirect?to=data:,x", FetchError, "InvalidURL")


def test_redirects_are_counted(hostile: LoopbackServer) -> None:
    fetch = fetcher_for(hostile, max_redirects=3)
    timed(fetch, f"{hostile.url}/loop", FetchRefused, "more than 3 redirects")
    assert [path for path, _ in hostile.seen.requests] == ["/loop"] * 4
    timed(fetch, f"{hostile.url}/chain/4", FetchRefused, "more than 3 redirects")


def test_a_dripping_server_is_cut_at_the_deadline(hostile: LoopbackServer) -> None:
    """One byte every 0.2 s: each read is well inside the 5 s read timeout, so only the
    overall deadline stops it."""
    elapsed = timed(fetcher_for(hostile), f"{hostile.url}/drip", FetchError, "deadline")
    assert DEADLINE_S - 0.1 <= elapsed < DEADLINE_S + SLACK_S
    assert hostile.seen.sent < 100  # ~8 bytes in 1.5 s, not the 10 kB it would send


def test_retries_stay_inside_the_deadline(hostile: LoopbackServer) -> None:
    fetch = fetcher_for(hostile, retries=5)
    elapsed = timed(fetch, f"{hostile.url}/drip", FetchError, "deadline")
    assert elapsed < DEADLINE_S + SLACK_S
    assert len(hostile.seen.requests) == 1  # the deadline, not a retry, ended it


@pytest.mark.parametrize("route", ["/gigabyte", "/gigabyte-declared", "/gzip-bomb"])
def test_a_huge_body_is_cut_at_the_cap(hostile: LoopbackServer, route: str) -> None:
    # A deadline far away: the cap, not the clock, must end it (a deadline would raise
    # FetchError, not ImageTooLarge), however busy the machine is.
    fetch = fetcher_for(hostile, deadline_s=30.0)
    elapsed = timed(fetch, f"{hostile.url}{route}", ImageTooLarge)
    assert elapsed < 30.0
    # The server could write what the socket buffers took, never the gigabyte.
    assert hostile.seen.sent < 64 * 1024 * 1024 < GiB


@pytest.mark.parametrize(
    ("route", "message"),
    [("/bad-location", "Invalid URL in location header"), ("/garbage", "broke the HTTP")],
)
def test_protocol_garbage_is_a_typed_error(
    hostile: LoopbackServer, route: str, message: str
) -> None:
    timed(fetcher_for(hostile), f"{hostile.url}{route}", FetchError, message)


LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "localhost",
    "[::ffff:127.0.0.1]",
    "[::ffff:7f00:1]",
    "2130706433",
    "0x7f000001",
    "127.1",
    "127.0.1",
    "0.0.0.0",
    "0",
    "[::1]",
    "[::]",
    "127.255.255.254",
    "LOCALHOST",
]


def local_names_only(host: str) -> list[str]:
    """The system resolver, for numeric hosts and localhost only: nothing here may cause a
    DNS query (this machine's resolver sits on a private address)."""
    if host.lower() != "localhost":
        socket.getaddrinfo(host, None, flags=socket.AI_NUMERICHOST)  # raises for a name
    return system_resolver(host)


@pytest.mark.parametrize("spelling", LOOPBACK_SPELLINGS)
def test_every_loopback_spelling_is_refused(canary: LoopbackServer, spelling: str) -> None:
    fetch = Fetcher(max_bytes=1 << 20, retries=0, resolver=local_names_only)
    with pytest.raises(FetchRefused):
        fetch.fetch(f"http://{spelling}:{canary.port}/png")
    # canary: no request (checked by the fixture)


def test_an_octal_spelling_is_not_even_a_url(canary: LoopbackServer) -> None:
    """`0177.0.0.1` is 127.0.0.1 to inet_aton; httpx refuses to parse it at all."""
    with pytest.raises(FetchRefused, match="not a valid URL"):
        Fetcher(max_bytes=1).fetch(f"http://0177.0.0.1:{canary.port}/png")


def test_the_default_resolver_is_the_system_one(canary: LoopbackServer) -> None:
    """No resolver injected: the same refusal (localhost and numeric only, as above)."""
    fetch = Fetcher(max_bytes=1 << 20, retries=0)
    for spelling in ("127.0.0.1", "localhost", "2130706433", "[::ffff:127.0.0.1]"):
        with pytest.raises(FetchRefused, match="loopback"):
            fetch.fetch(f"http://{spelling}:{canary.port}/png")


def test_pinning_sends_the_original_host_name(hostile: LoopbackServer) -> None:
    """A made-up name, resolved by the injected resolver to 127.0.0.1 and allow-listed:
    the request reaches the loopback server with the original name as Host."""
    name = "images.example.test"
    asked: list[str] = []

    def resolver(host: str) -> list[str]:
        asked.append(host)
        assert host == name, f"only {name} may be resolved here, not {host}"
        return ["127.0.0.1"]

    allow = [f"{name}:{hostile.port}"]
    fetch = made(Fetcher(max_bytes=1 << 20, resolver=resolver, allow_hosts=allow))
    assert fetch.fetch(f"http://{name}:{hostile.port}/png") == PNG
    assert hostile.seen.requests == [("/png", f"{name}:{hostile.port}")]
    assert asked == [name]


def test_a_sibling_with_local_roots_shares_the_network_policy(
    hostile: LoopbackServer, canary: LoopbackServer, tmp_path
) -> None:
    remote = fetcher_for(hostile)
    local = remote.with_local_roots([tmp_path])
    assert local.fetch(f"{hostile.url}/png") == PNG
    with pytest.raises(FetchRefused):
        local.fetch(f"{canary.url}/png")
    assert local.remote is remote.remote  # one HTTP client, one allow-list
