"""The app as a whole: start-up, probes, OpenAPI, the page, error shapes, index sync."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi.testclient import TestClient

from lookalike.api import create_app
from lookalike.engine import Engine
from lookalike.ingest.sources import ItemSpec
from tests.support.api_catalog import api_settings, copy_data, draw_product, png_bytes


def test_health_and_readiness(client: TestClient, catalog_items) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    body = ready.json()
    assert body["status"] == "ready"
    assert body["products"] == body["searchable"] == body["index_vectors"] == len(catalog_items)
    assert body["index_watermark"] == len(catalog_items)  # one log entry per product added
    assert body["model"].startswith("openclip-dir:")
    assert body["runtimes"] == {"text": "torch", "images": "torch"}  # an open_clip model


def test_model_and_index_load_at_start_up(tmp_path: Path, indexed_data, tiny_model) -> None:
    app = create_app(api_settings(copy_data(indexed_data, tmp_path), tiny_model))
    with TestClient(app):
        engine = app.state.engine
        # Before any request: loaded by the lifespan, not lazily by a first search.
        assert engine._encoder is not None and engine._encoder._model is not None
        assert engine._live is not None


def test_a_caller_owned_engine_is_used_and_left_open(tmp_path: Path, indexed_data, tiny_model):
    settings = api_settings(copy_data(indexed_data, tmp_path), tiny_model)
    with Engine(settings) as engine:
        with TestClient(create_app(settings, engine=engine)) as client:
            assert client.get("/v1/products/sku-000").status_code == 200
        assert engine.catalog.get("sku-000").id == "sku-000"  # still open


def test_api_docs_page_is_served_without_a_cdn(client: TestClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200
    assert "cdn" not in page.text.lower() and "/openapi.json" in page.text
    for asset in ("/docs-assets/swagger-ui-bundle.js", "/docs-assets/swagger-ui.css"):
        assert asset in page.text
        served = client.get(asset)
        assert served.status_code == 200 and len(served.content) > 10_000, asset


def test_openapi_documents_every_endpoint(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    paths = schema["paths"]
    expected = {
        "/v1/search/image": {"post"},
        "/v1/search/text": {"get"},
        "/v1/search": {"post"},
        "/v1/products/{product_id}": {"get", "put", "delete"},
        "/v1/products/{product_id}/similar": {"get"},
        "/v1/images/{product_id}": {"get"},
        "/v1/facets": {"get"},
        "/healthz": {"get"},
        "/readyz": {"get"},
    }
    for path, methods in expected.items():
        assert methods <= set(paths[path]), path
    components = schema["components"]["schemas"]
    # Bodies the routes read themselves are documented, with every $ref resolvable.
    assert {"SearchQuery", "ProductIn", "Filters", "DiversityIn", "ErrorResponse"} <= set(
        components
    )
    body = paths["/v1/search"]["post"]["requestBody"]["content"]
    assert {"application/json", "multipart/form-data"} <= set(body)

    def refs(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in refs(schema):
        assert ref.removeprefix("#/components/schemas/") in components, ref
    assert "X-API-Key" in str(schema["components"]["securitySchemes"])


def test_the_page_and_its_assets_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "Lookalike" in page.text
    for asset, kind in (("static/app.js", "javascript"), ("static/app.css", "css")):
        assert asset in page.text
        response = client.get(f"/{asset}")
        assert response.status_code == 200 and kind in response.headers["content-type"]


def test_unknown_routes_and_methods_answer_json(client: TestClient) -> None:
    missing = client.get("/v2/nothing")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "NotFound"
    wrong_method = client.patch("/v1/search/text")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["type"] == "MethodNotAllowed"


def test_facets(client: TestClient, catalog_items) -> None:
    facets = client.get("/v1/facets").json()
    categories = {f["value"]: f["count"] for f in facets["category"]}
    assert categories == {shape: 6 for shape in ("circle", "square", "triangle", "diamond")}
    assert {f["value"] for f in facets["brand"]} == {"Acme", "Zenith"}
    prices = [item.price for item in catalog_items]
    assert facets["price"] == {"min": min(prices), "max": max(prices)}


def test_writes_from_another_engine_become_searchable(
    tmp_path: Path, indexed_data, tiny_model
) -> None:
    """The background sync picks up what other writers (a CLI ingest, a queue consumer)
    commit to the catalog: same files, a separate Engine with its own index copy."""
    settings = api_settings(copy_data(indexed_data, tmp_path), tiny_model)
    image = png_bytes(draw_product("triangle", (0, 0, 0), 77, size=100))
    with TestClient(create_app(settings)) as client:
        with Engine(settings) as other:
            other.upsert(ItemSpec(id="from-elsewhere", image=None, title="Elsewhere"), image)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            response = client.post(
                "/v1/search/image", files={"image": ("q.png", image, "image/png")}
            )
            if response.json()["results"][0]["id"] == "from-elsewhere":
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the server never picked up the other engine's write")
        assert client.get("/readyz").json()["index_vectors"] == 25


def test_cors_when_configured(tmp_path: Path, indexed_data, tiny_model) -> None:
    origin = "http://shop.example"
    settings = api_settings(copy_data(indexed_data, tmp_path), tiny_model, cors_origins=[origin])
    with TestClient(create_app(settings)) as client:
        preflight = client.options(
            "/v1/search",
            headers={"Origin": origin, "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == origin
        search = client.get("/v1/search/text", params={"q": "x"}, headers={"Origin": origin})
        assert search.headers["access-control-allow-origin"] == origin
        # Even a refused upload is readable by the page that sent it.
        too_big = client.post("/v1/search", content=b"0" * 2_000_000, headers={"Origin": origin})
        assert too_big.status_code == 413
        assert too_big.headers["access-control-allow-origin"] == origin
        other = client.get("/healthz", headers={"Origin": "http://elsewhere.example"})
        assert "access-control-allow-origin" not in other.headers


def test_a_server_runs_one_intra_op_thread_per_request_unless_configured(
    tmp_path: Path, indexed_data, tiny_model
) -> None:
    """FAISS and torch get one thread per request in a server (concurrent requests use the
    cores); a configured count is kept."""
    data_dir = copy_data(indexed_data, tmp_path)
    with TestClient(create_app(api_settings(data_dir, tiny_model))) as client:
        engine = client.app.state.engine
        assert engine.settings.search_threads == 1 and engine.settings.torch_threads == 1
        assert engine.live_index.index.threads == 1
        assert client.get("/v1/search/text", params={"q": "red circle"}).status_code == 200
    configured = api_settings(data_dir, tiny_model, search_threads=2, torch_threads=3)
    with TestClient(create_app(configured)) as client:
        engine = client.app.state.engine
        assert engine.settings.search_threads == 2 and engine.settings.torch_threads == 3
        assert engine.live_index.index.threads == 2
