"""The FastAPI app: `create_app(settings)` builds it; `lifespan` owns its resources.

At start-up the Engine is built (unless one is handed in), the model loaded and the index
opened, so no request pays for them; a thread pool runs blocking work; a background task
calls `engine.sync()` so writes made by other processes (CLI ingest, a queue consumer)
become searchable here.

Middleware, outermost first (each sees what the ones inside it answer):
request metrics -> trusted proxy headers -> security headers -> trusted hosts -> CORS ->
deadline -> authenticate (whose key) -> rate limits -> audit log -> body size -> routes.
docs/security.md says what each one stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Iterable
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client.core import GaugeMetricFamily, Metric
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from lookalike import __version__
from lookalike.api.audit import AuditWrites
from lookalike.api.auth import Authenticate, KeyRing
from lookalike.api.blocking import BlockingRunner
from lookalike.api.deadline import Deadline
from lookalike.api.errors import install_error_handlers
from lookalike.api.headers import SecurityHeaders
from lookalike.api.heap import freeze_startup_heap, thaw
from lookalike.api.hosts import TrustedHosts, allowed_hosts
from lookalike.api.limits import BodySizeLimit
from lookalike.api.metrics import RequestMetrics
from lookalike.api.metrics import router as metrics_router
from lookalike.api.ratelimit import RateLimit, RateLimiter
from lookalike.api.routes import admin, catalog, events, health, images, products, search
from lookalike.api.schemas import ProductIn, SearchQuery
from lookalike.api.serving import server_threads
from lookalike.api.thumbnails import ThumbnailCache
from lookalike.api.tracking import SearchTracker
from lookalike.config import Settings
from lookalike.encode.runtime import warm_up
from lookalike.engine import Engine
from lookalike.quality import SearchLogger
from lookalike.quality.window import QualityWindow

log = logging.getLogger(__name__)

STATIC_DIR = resources.files("lookalike.api") / "static"

DESCRIPTION = """Image search over your own catalog: by image, by text, or both.

Errors are JSON: `{"error": {"type": "...", "message": "..."}}`. Write endpoints need an API
key with scope `write` (`lookalike keys create --scope write NAME`), sent as `X-API-Key` or
`Authorization: Bearer`; searches need none unless the server sets
`LOOKALIKE_SEARCH_REQUIRES_KEY`. 429 (rate limit), 503 (shedding load) and 504 (request
deadline) carry `Retry-After`."""


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The app. With `engine`, the caller owns it (the app will not close it)."""
    settings = server_threads(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runner = BlockingRunner(settings.api_threads, settings.api_queue_max)
        owned = engine is None
        app.state.ready = False
        the_engine = engine
        try:
            if the_engine is None:
                the_engine = await runner.background(Engine, settings)
            # Load the model and open (or rebuild) the index now, not on the first request.
            await runner.background(lambda: the_engine.live_index)
            # And the towers a model loads lazily (a LiT model's, with any ONNX export made
            # or checked here): the first queries would otherwise all wait for it.
            await runner.background(warm_up, the_engine.encoder)
        except BaseException:
            if owned and the_engine is not None:
                the_engine.close()
            runner.shutdown()
            raise
        app.state.engine = the_engine
        app.state.runner = runner
        _watch_pool(the_engine, runner)
        app.state.keyring = KeyRing(the_engine.catalog, settings.api_key, settings.key_cache_ttl_s)
        app.state.rate_limiter = RateLimiter(settings)
        if not await asyncio.to_thread(app.state.keyring.configured):
            log.warning(
                "no API key is configured: write endpoints answer 401 until you create one "
                "with `lookalike keys create --scope write NAME` (or set LOOKALIKE_API_KEY)"
            )
        app.state.thumbnails = ThumbnailCache(
            settings.data_dir / "thumbnails", the_engine.limits, settings.thumbnail_cache_bytes
        )
        search_log = _search_logger(settings, the_engine)
        app.state.tracker = SearchTracker(the_engine, runner, search_log)
        background = [
            asyncio.create_task(_sync_forever(the_engine, runner, settings)),
            asyncio.create_task(_housekeeping_forever(the_engine, runner, settings)),
        ]
        if search_log is not None:
            background.append(asyncio.create_task(_quality_forever(the_engine, runner, settings)))
        if settings.gc_freeze:
            freeze_startup_heap()
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            if settings.gc_freeze:
                thaw()
            for task in background:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            # Let running requests finish before the engine saves and closes.
            await asyncio.to_thread(runner.shutdown)
            if search_log is not None:
                await asyncio.to_thread(search_log.close)
            if owned:
                the_engine.close()

    app = FastAPI(
        title="Lookalike",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        # Served below from the fastapi-offline package: FastAPI's default pages load
        # their scripts from a CDN, blank on air-gapped machines.
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json" if settings.docs_access == "open" else None,
    )
    app.state.settings = settings
    install_error_handlers(app)
    for module in (search, products, images, catalog, events, admin, health):
        app.include_router(module.router)
    app.include_router(admin.page_router)
    if settings.metrics_access != "off":
        app.include_router(metrics_router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC_DIR / "index.html"), media_type="text/html")

    if settings.docs_access == "open":
        _serve_api_docs(app)

    # Added innermost first.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    app.add_middleware(AuditWrites)
    app.add_middleware(RateLimit)
    app.add_middleware(Authenticate)
    # Outside the key lookup and the limits: a deadline covers them and the body upload.
    app.add_middleware(Deadline, seconds=settings.request_deadline_s)
    if settings.cors_origins:
        # Outside the size limit and the limits, so a browser on another origin can read
        # its 413 and 429 too.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key", "Authorization", "X-Session-Id"],
            expose_headers=["Retry-After"],
        )
    app.add_middleware(TrustedHosts, hosts=allowed_hosts(settings))
    app.add_middleware(SecurityHeaders)
    if settings.trusted_proxies:
        # First of all: every later decision (limits, `local` metrics, the audit log) is
        # about the client the proxy names, not about the proxy.
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.trusted_proxies)
    app.add_middleware(RequestMetrics)  # outermost: counts what the others answer too
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _serve_api_docs(app: FastAPI) -> None:
    """Swagger UI at /docs with its scripts and styles from this server."""
    # Swagger UI 5 (OpenAPI 3.1, which FastAPI writes), as packaged by fastapi-offline.
    assets = resources.files("fastapi_offline") / "static"
    app.mount("/docs-assets", StaticFiles(directory=str(assets)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} API",
            swagger_js_url=f"{root}/docs-assets/swagger-ui-bundle.js",
            swagger_css_url=f"{root}/docs-assets/swagger-ui.css",
            swagger_favicon_url=f"{root}/docs-assets/favicon.png",
        )


def _watch_pool(engine: Engine, runner: BlockingRunner) -> None:
    """Export how many calls hold or wait for the API threads (shedding starts at
    api_threads + api_queue_max)."""

    def collect() -> Iterable[Metric]:
        yield GaugeMetricFamily(
            "lookalike_api_pool_busy",
            "Calls running on or waiting for the API thread pool.",
            value=runner.busy,
        )

    engine.metrics.collect_from(collect)


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and multi-worker serving: settings from the env."""
    return create_app(Settings())


def _search_logger(settings: Settings, engine: Engine) -> SearchLogger | None:
    """Search and click logs go to the catalog, whatever its backend, unless turned off."""
    if not settings.search_log:
        return None
    return SearchLogger(engine.catalog, flush_interval_s=settings.search_log_flush_s)


async def _sync_forever(engine: Engine, runner: BlockingRunner, settings: Settings) -> None:
    while True:
        await asyncio.sleep(settings.index_sync_interval_s)
        try:
            applied = await runner.background(engine.sync)
        except asyncio.CancelledError:
            raise
        except Exception:  # keep serving what we have; the next round retries
            log.exception("index sync failed")
            continue
        if applied:
            log.info("index sync applied %d catalog change(s)", applied)


async def _housekeeping_forever(engine: Engine, runner: BlockingRunner, settings: Settings) -> None:
    """Prune old search logs and delete unused uploads: at start, then every interval."""
    while True:
        try:
            done = await runner.background(engine.housekeeping)
        except asyncio.CancelledError:
            raise
        except Exception:  # the next round retries
            log.exception("housekeeping failed")
        else:
            if done.pruned.searches or done.pruned.clicks or done.media_deleted:
                log.info(
                    "housekeeping: pruned %d searches and %d clicks, deleted %d unused uploads",
                    done.pruned.searches,
                    done.pruned.clicks,
                    done.media_deleted,
                )
        await asyncio.sleep(settings.housekeeping_interval_s)


async def _quality_forever(engine: Engine, runner: BlockingRunner, settings: Settings) -> None:
    """Keep the quality gauges of /metrics (CTR, MRR, NDCG by A/B arm) current."""
    window = QualityWindow(engine.catalog)
    while True:
        try:
            await runner(admin.refresh_quality_gauges, engine, window)
        except asyncio.CancelledError:
            raise
        except Exception:  # the gauges keep their last values; the next round retries
            log.exception("quality gauges refresh failed")
        await asyncio.sleep(settings.quality_refresh_interval_s)


def _openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema plus the bodies that routes read themselves (JSON or multipart)."""
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in (SearchQuery, ProductIn):
            model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components.update(model_schema.pop("$defs", {}))
            components[model.__name__] = model_schema
        _add_links(schema)
        app.openapi_schema = schema
    return app.openapi_schema


def _operation_ref(path: str, method: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + f"/{method}"


# OpenAPI links: how one response feeds the next request (clients and stateful API testing
# follow them): a search's id and first result into a click; a written product into reads.
_PRODUCT = "/v1/products/{product_id}"
_SEARCHES = (
    ("/v1/search", "post"),
    ("/v1/search/image", "post"),
    ("/v1/search/text", "get"),
    (_PRODUCT + "/similar", "get"),
)
_CLICK_LINK = {
    "ClickFirstResult": {
        "operationRef": _operation_ref("/v1/events/click", "post"),
        "requestBody": {
            "search_id": "$response.body#/search_id",
            "product_id": "$response.body#/results/0/id",
        },
        "description": "Report a click on the first result.",
    }
}
_PRODUCT_LINKS = {
    name: {
        "operationRef": _operation_ref(path, method),
        "parameters": {"product_id": "$request.path.product_id"},
    }
    for name, path, method in (
        ("GetProduct", _PRODUCT, "get"),
        ("SimilarProducts", _PRODUCT + "/similar", "get"),
        ("GetImage", "/v1/images/{product_id}", "get"),
        ("DeleteProduct", _PRODUCT, "delete"),
    )
}


def _add_links(schema: dict[str, Any]) -> None:
    paths = schema.get("paths", {})
    for path, method in _SEARCHES:
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get("200")
        if response is not None:
            response["links"] = _CLICK_LINK
    for status in ("200", "201"):
        response = paths.get(_PRODUCT, {}).get("put", {}).get("responses", {}).get(status)
        if response is not None:
            response["links"] = _PRODUCT_LINKS
