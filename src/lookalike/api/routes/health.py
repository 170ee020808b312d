"""Liveness and readiness probes."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from lookalike.api.deps import EngineDep, RunDep
from lookalike.api.errors import error_response
from lookalike.api.schemas import ErrorResponse, Health, Readiness
from lookalike.encode.runtime import encoder_runtimes
from lookalike.engine import Engine

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> Health:
    """The process is up and its event loop answers."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": ErrorResponse, "description": "Still starting, or unavailable"}},
)
async def readyz(request: Request, engine: EngineDep, run: RunDep) -> Readiness | JSONResponse:
    """Model loaded, index open and the catalog answering: ready to search."""
    if not getattr(request.app.state, "ready", False):
        return error_response(503, "NotReady", "the model and index are still loading")
    return await run(_readiness, engine)


def _readiness(engine: Engine) -> Readiness:
    stats = engine.catalog.stats()  # a CatalogError here becomes a 503
    return Readiness(
        status="ready",
        products=stats.products,
        searchable=stats.searchable,
        index_vectors=len(engine.live_index.index),
        index_watermark=engine.live_index.watermark,
        model=engine.encoder.model_id,
        runtimes=encoder_runtimes(engine.settings, lambda: engine.encoder),
    )
