"""What the app answers to and what every answer carries: the Host check against DNS
rebinding, `X-Content-Type-Options: nosniff` on every response, the API docs policy."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.api.hosts import allowed_hosts
from lookalike.config import Settings
from tests.support.api_catalog import api_settings, copy_data


@pytest.fixture(scope="module")
def app_settings(tmp_path_factory: pytest.TempPathFactory, indexed_data: Path, tiny_model: Path):
    data_dir = copy_data(indexed_data, tmp_path_factory.mktemp("hosts"))
    return lambda **overrides: api_settings(data_dir, tiny_model, **overrides)


def host_status(client: TestClient, host: str) -> int:
    return client.get("/v1/search/text", params={"q": "x"}, headers={"Host": host}).status_code


def test_only_allowed_host_names_are_answered(app_settings) -> None:
    settings = app_settings(allowed_hosts=["shop.example", "*.cdn.example"])
    with TestClient(create_app(settings)) as client:
        for host in ("localhost", "localhost:8000", "127.0.0.1:80", "[::1]:8000", "LOCALHOST"):
            assert host_status(client, host) == 200, host
        for host in ("shop.example", "shop.example:443", "img.cdn.example"):
            assert host_status(client, host) == 200, host
        # A rebinding page's own name, near misses, and garbage.
        for host in ("evil.example", "shop.example.evil.example", "cdn.example", "a b", ""):
            refused = client.get("/healthz", headers={"Host": host})
            assert refused.status_code == 400, host
            assert refused.json()["error"]["type"] == "InvalidHost"
            assert refused.headers["x-content-type-options"] == "nosniff"


def test_the_bound_address_is_allowed_unless_a_wildcard() -> None:
    def hosts(host: str, extra: list[str] | None = None) -> list[str]:
        return allowed_hosts(Settings(_env_file=None, host=host, allowed_hosts=extra or []))

    assert hosts("127.0.0.1") == ["localhost", "127.0.0.1", "[::1]"]
    assert hosts("192.0.2.4") == ["localhost", "127.0.0.1", "[::1]", "192.0.2.4"]
    assert hosts("fd00::5")[-1] == "[fd00::5]"
    assert hosts("0.0.0.0") == hosts("::") == ["localhost", "127.0.0.1", "[::1]"]
    assert hosts("0.0.0.0", ["Search.Example"])[-1] == "search.example"
    assert "*" in hosts("0.0.0.0", ["*"])


def test_any_host_when_configured(app_settings) -> None:
    with TestClient(create_app(app_settings(allowed_hosts=["*"]))) as client:
        assert host_status(client, "anything.example") == 200


def test_every_response_says_nosniff(app_settings) -> None:
    with TestClient(create_app(app_settings())) as client:
        responses = [
            client.get("/"),
            client.get("/static/app.js"),
            client.get("/v1/search/text", params={"q": "x"}),
            client.get("/v1/nothing"),
            client.put("/v1/products/x", json={}),  # 401
            client.get("/v1/images/sku-001"),
            client.get("/v1/images/sku-001", params={"size": 64}),
            client.get("/openapi.json"),
        ]
        for response in responses:
            assert response.headers["x-content-type-options"] == "nosniff", response.url


def test_api_docs_can_be_turned_off(app_settings) -> None:
    with TestClient(create_app(app_settings(docs_access="off"))) as client:
        for path in ("/docs", "/openapi.json", "/docs-assets/swagger-ui.css"):
            assert client.get(path).status_code == 404, path
        assert client.get("/v1/search/text", params={"q": "x"}).status_code == 200
