"""Rate limits on the real app: per key and per client address, 429 with Retry-After in
the JSON error shape, keys and addresses counted apart, loopback exempt by default,
proxy headers believed only from trusted proxies, counts shared through a real Redis by
two app instances (replicas), and a Redis that cannot be reached letting requests through."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.catalog import open_catalog
from lookalike.catalog.keys import issue_key
from tests.support.api_catalog import api_settings, copy_data
from tests.support.servers import free_port

SEARCH = ("/v1/search/text", {"q": "red"})


def search(client: TestClient, **headers: str):
    return client.get(SEARCH[0], params=SEARCH[1], headers=headers)


def assert_limited(response) -> None:
    assert response.status_code == 429, response.text
    assert response.json()["error"]["type"] == "RateLimited"
    retry = int(response.headers["retry-after"])
    assert 1 <= retry <= 60
    assert response.headers["x-content-type-options"] == "nosniff"


@pytest.fixture
def limited(tmp_path: Path, indexed_data: Path, tiny_model: Path):
    """An app with small limits: 3 a minute per key, 2 a minute per address; two keys."""

    made = itertools.count()

    def make(**overrides) -> tuple[TestClient, dict[str, str]]:
        settings = api_settings(
            copy_data(indexed_data, tmp_path / f"app-{next(made)}"),
            tiny_model,
            rate_limit_per_key="3/minute",
            rate_limit_per_address="2/minute",
            **overrides,
        )
        catalog = open_catalog(settings)
        try:
            tokens = {name: issue_key(catalog, name, "search", time.time()) for name in "ab"}
        finally:
            catalog.close()
        return TestClient(create_app(settings)), tokens

    return make


def test_a_burst_over_a_key_limit_gets_429_and_other_keys_are_unaffected(limited) -> None:
    client, tokens = limited()
    with client:
        a, b = {"X-API-Key": tokens["a"]}, {"X-API-Key": tokens["b"]}
        burst = [search(client, **a) for _ in range(6)]
        assert [r.status_code for r in burst[:3]] == [200, 200, 200]
        for refused in burst[3:]:
            assert_limited(refused)
            assert "key 'a'" in refused.json()["error"]["message"]
        # Another key, and anonymous callers, have counts of their own.
        assert [search(client, **b).status_code for _ in range(3)] == [200, 200, 200]
        assert search(client).status_code == 200
        assert_limited(search(client, **b))


def test_anonymous_clients_are_limited_per_address_and_loopback_is_exempt(limited) -> None:
    client, _ = limited()
    with client:
        assert [search(client).status_code for _ in range(2)] == [200, 200]
        refused = search(client)
        assert_limited(refused)
        assert "client address" in refused.json()["error"]["message"]
        # Probes are never limited.
        assert client.get("/healthz").status_code == 200
        assert client.get("/readyz").status_code == 200
    loopback, _ = limited()
    loopback_client = TestClient(loopback.app, client=("127.0.0.1", 40000))
    ipv6_loopback = TestClient(loopback.app, client=("::1", 40000))
    with loopback_client, ipv6_loopback:
        assert {search(loopback_client).status_code for _ in range(10)} == {200}
        assert {search(ipv6_loopback).status_code for _ in range(10)} == {200}
        # The same app limits everyone else: exemption is by address, not by setting.
        other = TestClient(loopback.app, client=("192.0.2.7", 40000))
        assert [search(other).status_code for _ in range(3)][-1] == 429


def test_ipv6_clients_count_by_their_slash_64(limited) -> None:
    client, _ = limited()
    with client:
        first = TestClient(client.app, client=("2001:db8:1:2::1", 1))
        same_64 = TestClient(client.app, client=("2001:db8:1:2:ffff::9", 1))
        other_64 = TestClient(client.app, client=("2001:db8:1:3::1", 1))
        assert [search(first).status_code for _ in range(2)] == [200, 200]
        assert_limited(search(same_64))
        assert search(other_64).status_code == 200


def test_forwarded_addresses_count_only_from_trusted_proxies(limited) -> None:
    """Behind a proxy every request comes from the proxy: its X-Forwarded-For names the
    client, but only when the proxy is trusted (else anyone could pick their address)."""
    trusting, _ = limited(trusted_proxies=["192.0.2.1"])
    with ExitStack() as stack:
        stack.enter_context(trusting)
        proxy = TestClient(trusting.app, client=("192.0.2.1", 5000))
        for _ in range(2):
            assert search(proxy, **{"X-Forwarded-For": "198.51.100.1"}).status_code == 200
        assert_limited(search(proxy, **{"X-Forwarded-For": "198.51.100.1"}))
        assert search(proxy, **{"X-Forwarded-For": "198.51.100.2"}).status_code == 200
        # Not from the proxy: the header is ignored, the connecting address counts.
        stranger = TestClient(trusting.app, client=("203.0.113.5", 5000))
        spoofed = [search(stranger, **{"X-Forwarded-For": f"10.0.0.{i}"}) for i in range(3)]
        assert [r.status_code for r in spoofed] == [200, 200, 429]

    untrusting, _ = limited()
    with untrusting:
        proxy = TestClient(untrusting.app, client=("192.0.2.1", 5000))
        varied = [search(proxy, **{"X-Forwarded-For": f"198.51.100.{i}"}) for i in range(3)]
        assert [r.status_code for r in varied] == [200, 200, 429]
        # Nor can a forwarded loopback address buy the loopback exemption.
        assert search(proxy, **{"X-Forwarded-For": "127.0.0.1"}).status_code == 429


@pytest.fixture
def two_replicas(
    limited, redis_url: str
) -> Iterator[tuple[TestClient, TestClient, dict[str, str]]]:
    first, tokens = limited(redis_url=redis_url)
    second = TestClient(create_app(first.app.state.settings))
    with first, second:
        yield first, second, tokens


def test_replicas_share_counts_through_redis(two_replicas) -> None:
    first, second, tokens = two_replicas
    key = {"X-API-Key": tokens["a"]}
    assert search(first, **key).status_code == 200
    assert search(second, **key).status_code == 200
    assert search(first, **key).status_code == 200
    assert_limited(search(second, **key))  # the fourth, wherever it lands
    assert_limited(search(first, **key))


def test_an_unreachable_redis_lets_requests_through(limited) -> None:
    """No server on the port: each check fails fast and the request is served (fail open)."""
    client, _ = limited(redis_url=f"redis://127.0.0.1:{free_port()}/0")
    with client:
        started = time.monotonic()
        statuses = [search(client).status_code for _ in range(4)]
        assert statuses == [200] * 4  # over the limit of 2, and nothing refused or broken
        assert time.monotonic() - started < 20
