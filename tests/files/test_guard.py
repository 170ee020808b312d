"""The network policy decided before any connection: injected resolver answers for
private, link-local, shared, multicast, reserved and public addresses, fed to the guard,
with a connect hook that records every attempt - so no test here can send a packet off
this machine, even with the guard broken. No name but `localhost` (here: none) goes to
the system resolver."""

from __future__ import annotations

import socket
from collections.abc import Sequence
from ipaddress import ip_address

import httpcore
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lookalike.errors import ConfigError, FetchError, FetchRefused, LookalikeError
from lookalike.files.fetch import Fetcher
from lookalike.files.guard import HostGuard, parse_allow_entry


class Resolver:
    """Answers only the names it was given; records what it was asked."""

    def __init__(self, answers: dict[str, Sequence[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, host: str) -> Sequence[str]:
        self.asked.append(host)
        if host not in self.answers:
            raise socket.gaierror(socket.EAI_NONAME, f"{host}: unknown to the test resolver")
        return self.answers[host]


class NoConnect:
    """A connect hook that must not be called; if it is, it records the attempt and fails
    the fetch without opening a socket."""

    def __init__(self) -> None:
        self.attempts: list[tuple[str, int]] = []

    def __call__(self, host: str, port: int, *args: object) -> httpcore.NetworkStream:
        self.attempts.append((host, port))
        raise httpcore.ConnectError("the test forbids connections")


def fetcher(answers: dict[str, Sequence[str]], **options) -> tuple[Fetcher, NoConnect]:
    hook = NoConnect()
    return Fetcher(max_bytes=1 << 20, resolver=Resolver(answers), connector=hook, **options), hook


REFUSED_ANSWERS = {
    "private-10": ["10.0.0.5"],
    "private-172": ["172.16.8.1"],
    "private-192": ["192.168.0.10"],
    "metadata": ["169.254.169.254"],
    "cgnat": ["100.64.1.1"],
    "multicast": ["224.0.0.1"],
    "reserved": ["240.1.2.3"],
    "broadcast": ["255.255.255.255"],
    "unspecified": ["0.0.0.0"],
    "documentation": ["203.0.113.5"],
    "benchmark": ["198.18.3.4"],
    "loopback-v6": ["::1"],
    "unique-local": ["fd00::5"],
    "link-local-v6": ["fe80::1"],
    "mapped-metadata": ["::ffff:169.254.169.254"],
    "nat64-private": ["64:ff9b::10.0.0.1"],
    "6to4-private": ["2002:c0a8:0001::1"],
    "one-bad-answer": ["93.184.216.34", "10.0.0.1"],  # every answer must be public
    "bad-answer-first": ["127.0.0.1", "2606:4700::1111"],
}


@pytest.mark.parametrize("name", sorted(REFUSED_ANSWERS))
def test_internal_answers_are_refused_before_connecting(name: str) -> None:
    host = f"{name}.example.test"
    fetch, hook = fetcher({host: REFUSED_ANSWERS[name]})
    for url in (f"http://{host}/a.png", f"https://{host}:8443/a.png"):
        with pytest.raises(FetchRefused, match="image URLs must point at public hosts"):
            fetch.fetch(url)
    assert hook.attempts == []


def test_a_public_answer_is_allowed_by_the_check_alone() -> None:
    resolver = Resolver({"shop.example.test": ["93.184.216.34", "2606:2800:220:1::248"]})
    guard = HostGuard(resolver=resolver)
    allowed = guard.check_url("https://shop.example.test/img/1.jpg")
    assert allowed == [ip_address("93.184.216.34"), ip_address("2606:2800:220:1::248")]
    assert resolver.asked == ["shop.example.test"]  # decided without a connection


def test_the_connection_goes_to_the_address_that_was_checked() -> None:
    """DNS rebinding: a name that answers public, then loopback. The fetch resolves once
    and connects to the public answer it checked (here: the hook, which connects nowhere)."""
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])
    asked: list[str] = []

    def rebinding(host: str) -> list[str]:
        asked.append(host)
        return next(answers)

    hook = NoConnect()
    fetch = Fetcher(max_bytes=1 << 20, retries=0, resolver=rebinding, connector=hook)
    with pytest.raises(FetchError, match="connection failed"):
        fetch.fetch("http://rebind.example.test/a.png")
    assert asked == ["rebind.example.test"]
    assert hook.attempts == [("93.184.216.34", 80)]


def test_every_address_is_tried_in_order_and_only_those() -> None:
    hook = NoConnect()
    resolver = Resolver({"multi.example.test": ["93.184.216.34", "2606:2800:220:1::248"]})
    fetch = Fetcher(max_bytes=1 << 20, retries=0, resolver=resolver, connector=hook)
    with pytest.raises(FetchError):
        fetch.fetch("https://multi.example.test/a.png")
    assert hook.attempts == [("93.184.216.34", 443), ("2606:2800:220:1::248", 443)]


@pytest.mark.parametrize(
    ("entry", "url", "admitted"),
    [
        ("images.internal:8080", "http://images.internal:8080/a.png", True),
        ("images.internal:8080", "http://images.internal:8081/a.png", False),
        ("images.internal:8080", "http://images.internal/a.png", False),
        ("images.internal", "http://images.internal/a.png", True),
        ("images.internal", "https://images.internal/a.png", True),
        ("images.internal", "http://images.internal:8080/a.png", False),
        ("IMAGES.internal.", "http://images.INTERNAL/a.png", True),
        ("images.internal", "http://cdn.images.internal/a.png", False),
        ("[fd00::5]:9000", "http://[fd00::5]:9000/a.png", True),
        ("10.0.0.5:9000", "http://10.0.0.5:9000/a.png", True),
        ("10.0.0.5:9000", "http://167772165:9000/a.png", False),  # exact spelling only
    ],
)
def test_the_allow_list_is_exact(entry: str, url: str, admitted: bool) -> None:
    resolver = Resolver(
        {
            "images.internal": ["10.0.0.5"],
            "cdn.images.internal": ["10.0.0.6"],
            "fd00::5": ["fd00::5"],
            "10.0.0.5": ["10.0.0.5"],
            "167772165": ["10.0.0.5"],
        }
    )
    guard = HostGuard([entry], resolver)
    if admitted:
        assert guard.check_url(url)
    else:
        with pytest.raises(FetchRefused):
            guard.check_url(url)


@pytest.mark.parametrize("entry", ["", "http://x", "x/y", "x:port", "x:99999", "user@x"])
def test_bad_allow_list_entries_are_config_errors(entry: str) -> None:
    with pytest.raises(ConfigError):
        parse_allow_entry(entry)


@pytest.mark.parametrize(
    "url",
    [
        "ftp://images.example.test/a.png",
        "gopher://images.example.test:70/_x",
        "dict://images.example.test:11211/stat",
        "data:image/png;base64,iVBORw0KGgo=",
        "javascript:alert(1)",
        "file:///etc/passwd",
        "file://localhost/etc/passwd",
        "/etc/passwd",
        "http://[::1",
        "http://0177.0.0.1/a.png",
        "http:///a.png",
        "http://exa mple.test/a.png",
        "http://images.example.test:99999/a.png",
    ],
)
def test_other_schemes_and_broken_urls_are_refused_typed(url: str) -> None:
    fetch, hook = fetcher({"images.example.test": ["93.184.216.34"]})
    with pytest.raises(FetchRefused):
        fetch.fetch(url)
    assert hook.attempts == []


def test_a_name_that_does_not_resolve_is_a_fetch_error() -> None:
    fetch, hook = fetcher({})
    with pytest.raises(FetchError, match="cannot resolve host") as caught:
        fetch.fetch("https://nowhere.example.test/a.png")
    assert not isinstance(caught.value, FetchRefused)  # not a policy matter: 400, not 422
    assert caught.value.source == "https://nowhere.example.test/a.png"
    assert hook.attempts == []


def test_a_non_verifying_tls_context_is_refused() -> None:
    import ssl

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with pytest.raises(ConfigError, match="verify"):
        Fetcher(max_bytes=1, ssl_context=context)


def refuse_everything(host: str) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "the fuzz resolver knows no names")


URLISH = st.one_of(
    st.text(max_size=60),
    st.builds(
        lambda scheme, rest: f"{scheme}{rest}",
        st.sampled_from(["http://", "https://", "file://", "HTTP://", "http:", "//", ""]),
        st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40),
    ),
)


@settings(max_examples=400, deadline=None)
@given(URLISH)
def test_any_source_string_fails_typed(location: str) -> None:
    """Whatever the string, a fetcher with no local roots and a resolver that knows no
    names answers with one of our errors - never bytes, never an httpx or OS exception -
    and never tries to connect."""
    calls: list[tuple[str, int]] = []

    def forbidden(host: str, port: int, *args: object) -> httpcore.NetworkStream:
        calls.append((host, port))
        raise httpcore.ConnectError("no connections in this test")

    fetch = Fetcher(max_bytes=1 << 10, retries=0, resolver=refuse_everything, connector=forbidden)
    with pytest.raises(LookalikeError):
        fetch.fetch(location)
    assert calls == []
