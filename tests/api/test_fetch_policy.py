"""No way in through an image URL, no server file out through the API.

`PUT /v1/products/{id}` with an `image_url`: local files (every spelling, even under the
catalog's own folder) are refused with 422 and nothing is saved; hostile hosts (a loopback
canary, redirects to it, to file://, in a loop, a drip, 1 GB) get a typed 4xx within the
deadline, never a 500. Searches take no paths. `/v1/images/{id}` serves only files where
Lookalike keeps or was given images (404 otherwise), with `nosniff`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.catalog import Product, ProductWrite
from tests.support.api_catalog import WRITE_HEADERS, CatalogItem, api_settings, copy_data
from tests.support.hostile_http import LoopbackServer, hostile_server

DEADLINE_S = 2.0
SLACK_S = 3.0  # scheduling on a busy 2-core machine


@pytest.fixture(scope="module")
def hostile_host() -> Iterator[LoopbackServer]:
    with hostile_server() as server:
        yield server


@pytest.fixture(scope="module")
def api(
    tmp_path_factory: pytest.TempPathFactory,
    indexed_data: Path,
    tiny_model: Path,
    hostile_host: LoopbackServer,
) -> Iterator[TestClient]:
    """A client whose only allow-listed host is the hostile server, with a short deadline."""
    data_dir = copy_data(indexed_data, tmp_path_factory.mktemp("fetch-policy"))
    settings = api_settings(
        data_dir,
        tiny_model,
        fetch_allow_hosts=[hostile_host.allow_entry],
        fetch_deadline_s=DEADLINE_S,
        download_timeout_s=10.0,
    )
    with TestClient(create_app(settings), headers=WRITE_HEADERS) as client:
        yield client


def put_image_url(client: TestClient, product_id: str, url: str):
    return client.put(f"/v1/products/{product_id}", json={"title": "x", "image_url": url})


def local_sources(tmp_path: Path, catalog_items: list[CatalogItem]) -> dict[str, str]:
    folder = catalog_items[0].path.parent
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    link = tmp_path / "link.png"
    link.symlink_to("/etc/passwd")
    return {
        "etc-passwd": "/etc/passwd",
        "file-url": "file:///etc/passwd",
        "file-url-localhost": "file://localhost/etc/passwd",
        "dev-zero": "/dev/zero",
        "proc-environ": "/proc/self/environ",
        "fifo": str(pipe),
        "symlink-out": str(link),
        "dot-dot": f"{folder}/../../../../../../etc/passwd",
        "relative": "../../etc/passwd",
        "directory": str(folder),
        # Under the folder `lookalike index` was given: still not for API clients.
        "catalog-image": str(catalog_items[0].path),
        "catalog-image-url": catalog_items[0].path.as_uri(),
    }


@pytest.mark.timeout(60)  # /dev/zero or a FIFO that were opened would hang here
def test_put_never_reads_a_server_file(
    api: TestClient, tmp_path: Path, catalog_items: list[CatalogItem]
) -> None:
    for name, source in local_sources(tmp_path, catalog_items).items():
        started = time.monotonic()
        response = put_image_url(api, f"local-{name}", source)
        assert response.status_code == 422, (name, response.text)
        assert response.json()["error"]["type"] == "FetchRefused", name
        assert "local files are not accepted" in response.json()["error"]["message"]
        assert time.monotonic() - started < DEADLINE_S + SLACK_S, name
        assert api.get(f"/v1/products/local-{name}").status_code == 404, name


LOOPBACK = ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]", "2130706433", "0x7f000001",
            "127.1", "0.0.0.0", "[::1]"]  # fmt: skip


def test_put_never_reaches_a_loopback_service(api: TestClient, canary: LoopbackServer) -> None:
    for spelling in LOOPBACK:
        response = put_image_url(api, "loop", f"http://{spelling}:{canary.port}/png")
        assert response.status_code == 422, (spelling, response.text)
        assert response.json()["error"]["type"] == "FetchRefused"
    assert api.get("/v1/products/loop").status_code == 404
    # canary: no request (checked by the fixture)


@pytest.mark.parametrize(
    ("path", "status", "error", "message"),
    [
        ("/redirect?to={canary}/png", 422, "FetchRefused", "loopback"),
        ("/redirect?to=http://localhost:{canary_port}/png", 422, "FetchRefused", "loopback"),
        ("/redirect?to=file:///etc/passwd", 422, "FetchRefused", "only http and https"),
        ("/loop", 422, "FetchRefused", "more than 3 redirects"),
        ("/chain/9", 422, "FetchRefused", "more than 3 redirects"),
        ("/drip", 400, "FetchError", "deadline"),
        ("/gigabyte", 413, "ImageTooLarge", "over the limit"),
        ("/gigabyte-declared", 413, "ImageTooLarge", "over the limit"),
        ("/gzip-bomb", 413, "ImageTooLarge", "over the limit"),
        ("/bad-location", 400, "FetchError", "Invalid URL in location header"),
        ("/garbage", 400, "FetchError", "broke the HTTP protocol"),
        ("/missing.png", 400, "FetchError", "HTTP 404"),
    ],
)
def test_hostile_hosts_get_a_typed_4xx_in_time(
    api: TestClient,
    hostile_host: LoopbackServer,
    canary: LoopbackServer,
    path: str,
    status: int,
    error: str,
    message: str,
) -> None:
    url = hostile_host.url + path.format(canary=canary.url, canary_port=canary.port)
    started = time.monotonic()
    response = put_image_url(api, "hostile", url)
    assert time.monotonic() - started < DEADLINE_S + SLACK_S
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["type"] == error and message in body["message"]
    assert api.get("/v1/products/hostile").status_code == 404


@pytest.mark.parametrize(
    "url",
    ["http://[::1", "http://0177.0.0.1/a.png", "http:///a.png", "gopher://127.0.0.1/x",
     "ftp://127.0.0.1/a.png", "data:image/png;base64,AAAA", "http://exa mple/a.png",
     "http://127.0.0.1:99999/a.png"],
)  # fmt: skip
def test_broken_and_foreign_urls_are_422_not_500(api: TestClient, url: str) -> None:
    response = put_image_url(api, "broken", url)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["type"] == "FetchRefused"


@pytest.mark.parametrize(
    "image", ["/etc/passwd", "file:///etc/passwd", "http://127.0.0.1:{port}/png", "/dev/zero"]
)
def test_search_takes_no_paths_or_urls(api: TestClient, canary: LoopbackServer, image: str) -> None:
    """Query images are uploads or base64: a path or URL is not base64, and is never read."""
    response = api.post("/v1/search", json={"images": [image.format(port=canary.port)]})
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["type"] in {"InvalidImage", "UnsupportedImage"}


def plant(client: TestClient, product_id: str, source: str) -> None:
    """A product record whose image source points anywhere (as an old catalog, or one
    written by other means, may hold): the image route must not serve it blindly."""
    engine = client.app.state.engine
    engine.catalog.upsert([ProductWrite(Product(id=product_id, image_source=source))])


@pytest.mark.parametrize(
    "source", ["/etc/passwd", "file:///etc/passwd", "/proc/self/environ", "/dev/zero"]
)
def test_images_serve_nothing_outside_the_roots(api: TestClient, source: str) -> None:
    plant(api, "planted", source)
    for params in ({}, {"size": 64}):
        response = api.get("/v1/images/planted", params=params)
        assert response.status_code == 404, response.text
        assert response.json()["error"]["type"] == "NotFound"
        assert "root:" not in response.text


def test_images_under_a_root_are_served_with_nosniff(
    api: TestClient, catalog_items: list[CatalogItem]
) -> None:
    item = catalog_items[4]  # indexed from its folder: a recorded root
    for params in ({}, {"size": 64}):
        response = api.get(f"/v1/images/{item.id}", params=params)
        assert response.status_code == 200
        assert response.headers["x-content-type-options"] == "nosniff"
    # The same file, planted under another id by its real path: it is under the root.
    plant(api, "same-file", str(item.path))
    assert api.get("/v1/images/same-file").content == item.path.read_bytes()
