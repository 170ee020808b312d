"""The FastAPI app: `create_app(settings)` builds it; `lifespan` owns its resources.

At start-up the Engine is built (unless one is handed in), the model loaded and the index
opened, so no request pays for them; a thread pool runs blocking work; a background task
calls `engine.sync()` so writes made by other processes (CLI ingest, a queue consumer)
become searchable here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from importlib import resources
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import FileResponse, HTMLResponse
from fastapi.staticfiles import StaticFiles

from lookalike import __version__
from lookalike.api.blocking import BlockingRunner
from lookalike.api.errors import install_error_handlers
from lookalike.api.limits import BodySizeLimit
from lookalike.api.metrics import RequestMetrics
from lookalike.api.metrics import router as metrics_router
from lookalike.api.routes import admin, catalog, events, health, images, products, search
from lookalike.api.schemas import ProductIn, SearchQuery
from lookalike.api.thumbnails import ThumbnailCache
from lookalike.api.tracking import SearchTracker
from lookalike.config import Settings
from lookalike.engine import Engine
from lookalike.quality import SearchLogger

log = logging.getLogger(__name__)

STATIC_DIR = resources.files("lookalike.api") / "static"

DESCRIPTION = """Image search over your own catalog: by image, by text, or both.

Errors are JSON: `{"error": {"type": "...", "message": "..."}}`. Write endpoints need the
`X-API-Key` header when the server has `LOOKALIKE_API_KEY` set."""


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """The app. With `engine`, the caller owns it (the app will not close it)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runner = BlockingRunner(settings.api_threads)
        owned = engine is None
        app.state.ready = False
        the_engine = engine
        try:
            if the_engine is None:
                the_engine = await runner(Engine, settings)
            # Load the model and open (or rebuild) the index now, not on the first request.
            await runner(lambda: the_engine.live_index)
        except BaseException:
            if owned and the_engine is not None:
                the_engine.close()
            runner.shutdown()
            raise
        app.state.engine = the_engine
        app.state.runner = runner
        app.state.thumbnails = ThumbnailCache(settings.data_dir / "thumbnails", the_engine.limits)
        search_log = _search_logger(settings, the_engine)
        app.state.tracker = SearchTracker(the_engine, runner, search_log)
        tasks = [asyncio.create_task(_sync_forever(the_engine, runner, settings))]
        if search_log is not None:
            tasks.append(asyncio.create_task(_quality_forever(the_engine, runner, settings)))
        app.state.ready = True
        try:
            yield
        finally:
            app.state.ready = False
            for task in tasks:
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
    )
    app.state.settings = settings
    install_error_handlers(app)
    for module in (search, products, images, catalog, events, admin, health):
        app.include_router(module.router)
    app.include_router(admin.page_router)
    app.include_router(metrics_router)
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC_DIR / "index.html"), media_type="text/html")

    _serve_api_docs(app)

    app.add_middleware(BodySizeLimit, max_bytes=settings.max_upload_bytes)
    if settings.cors_origins:
        # Outside the size limit, so a browser on another origin can read its 413 too.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Content-Type", "X-API-Key", "X-Session-Id"],
        )
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


def create_app_from_env() -> FastAPI:
    """Factory for `uvicorn --factory` and multi-worker serving: settings from the env."""
    return create_app(Settings())


def _search_logger(settings: Settings, engine: Engine) -> SearchLogger | None:
    """Search and click logs go to the catalog, whatever its backend, unless turned off."""
    return SearchLogger(engine.catalog) if settings.search_log else None


async def _sync_forever(engine: Engine, runner: BlockingRunner, settings: Settings) -> None:
    while True:
        await asyncio.sleep(settings.index_sync_interval_s)
        try:
            applied = await runner(engine.sync)
        except asyncio.CancelledError:
            raise
        except Exception:  # keep serving what we have; the next round retries
            log.exception("index sync failed")
            continue
        if applied:
            log.info("index sync applied %d catalog change(s)", applied)


async def _quality_forever(engine: Engine, runner: BlockingRunner, settings: Settings) -> None:
    """Keep the quality gauges of /metrics (CTR, MRR, NDCG by A/B arm) current."""
    while True:
        try:
            await runner(admin.refresh_quality_gauges, engine)
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
        app.openapi_schema = schema
    return app.openapi_schema
