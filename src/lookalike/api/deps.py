"""Dependencies the routes declare: the engine, settings, the thread pool, filters, keys.

All are `async def`: none blocks, and FastAPI runs a plain `def` dependency on a worker
thread (a thread hop, and a wake of the event loop, per dependency per request: four on a
text search, a tenth of the server's time under load)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import Depends, Header, Query, Request

from lookalike.api.auth import needs
from lookalike.api.blocking import BlockingRunner
from lookalike.api.schemas import product_filter
from lookalike.api.thumbnails import ThumbnailCache
from lookalike.api.tracking import SearchTracker
from lookalike.catalog import ProductFilter
from lookalike.config import Settings
from lookalike.engine import Engine
from lookalike.errors import NotFound


async def _engine(request: Request) -> Engine:
    return request.app.state.engine


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _runner(request: Request) -> BlockingRunner:
    return request.app.state.runner


async def _thumbnails(request: Request) -> ThumbnailCache:
    return request.app.state.thumbnails


async def _tracker(request: Request) -> SearchTracker:
    return request.app.state.tracker


async def _root_path(request: Request) -> str:
    return request.scope.get("root_path", "")


async def _filters(
    category: Annotated[list[str], Query(description="Only these categories (repeatable).")] = [],  # noqa: B006
    brand: Annotated[list[str], Query(description="Only these brands (repeatable).")] = [],  # noqa: B006
    price_min: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    price_max: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
) -> ProductFilter:
    return product_filter(category, brand, price_min, price_max)


async def _report_enabled(request: Request) -> None:
    """The quality report's page and data are off unless `LOOKALIKE_REPORT_PAGE` is set
    (404); they also need an `admin` key (see `report_access`)."""
    if not request.app.state.settings.report_page:
        raise NotFound("the report page (LOOKALIKE_REPORT_PAGE=true serves it)")


async def _session(
    x_session_id: Annotated[
        str | None,
        Header(
            max_length=200,
            description="The shopper's session id: keeps an A/B arm stable; logged hashed.",
        ),
    ] = None,
) -> str | None:
    return x_session_id


EngineDep = Annotated[Engine, Depends(_engine)]
SettingsDep = Annotated[Settings, Depends(_settings)]
RunDep = Annotated[BlockingRunner, Depends(_runner)]
ThumbnailsDep = Annotated[ThumbnailCache, Depends(_thumbnails)]
TrackerDep = Annotated[SearchTracker, Depends(_tracker)]
RootPathDep = Annotated[str, Depends(_root_path)]
FiltersDep = Annotated[ProductFilter, Depends(_filters)]
LimitQuery = Annotated[
    int | None,
    Query(ge=1, description="Results wanted (settings: 20 by default, at most 100)."),
]
SessionDep = Annotated[str | None, Depends(_session)]
# What a route needs: searches and reads are open unless LOOKALIKE_SEARCH_REQUIRES_KEY;
# writes always need a key with scope write, administration one with scope admin (see
# api/auth.py).
search_access = needs("search")
write_access = needs("write")
admin_access = needs("admin")
report_enabled = Depends(_report_enabled)
MinScoreQuery = Annotated[
    float | None,
    Query(
        ge=-1,
        le=1,
        allow_inf_nan=False,
        description="Relevance floor: raw similarity a hit needs (default: calibrated; -1: none).",
    ),
]
CollapseQuery = Annotated[
    Literal["duplicates"] | None,
    Query(description="`duplicates`: one hit per near-duplicate group."),
]
