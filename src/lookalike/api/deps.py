"""Dependencies the routes declare: the engine, settings, the thread pool, filters, keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Query, Request

from lookalike.api.auth import needs
from lookalike.api.blocking import BlockingRunner
from lookalike.api.schemas import product_filter
from lookalike.api.thumbnails import ThumbnailCache
from lookalike.api.tracking import SearchTracker
from lookalike.catalog import ProductFilter
from lookalike.config import Settings
from lookalike.engine import Engine


def _engine(request: Request) -> Engine:
    return request.app.state.engine


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _runner(request: Request) -> BlockingRunner:
    return request.app.state.runner


def _thumbnails(request: Request) -> ThumbnailCache:
    return request.app.state.thumbnails


def _tracker(request: Request) -> SearchTracker:
    return request.app.state.tracker


def _root_path(request: Request) -> str:
    return request.scope.get("root_path", "")


def _filters(
    category: Annotated[list[str], Query(description="Only these categories (repeatable).")] = [],  # noqa: B006
    brand: Annotated[list[str], Query(description="Only these brands (repeatable).")] = [],  # noqa: B006
    price_min: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
    price_max: Annotated[float | None, Query(ge=0, allow_inf_nan=False)] = None,
) -> ProductFilter:
    return product_filter(category, brand, price_min, price_max)


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
# What a route needs: searches and reads are open unless LOOKALIKE_SEARCH_REQUIRES_KEY;
# writes always need a key with scope write (see api/auth.py).
search_access = needs("search")
write_access = needs("write")
