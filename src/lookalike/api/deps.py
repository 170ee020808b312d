"""Dependencies the routes declare: the engine, settings, the thread pool, filters, auth."""

from __future__ import annotations

import hmac
from typing import Annotated, Literal

from fastapi import Depends, Query, Request, Security
from fastapi.security import APIKeyHeader

from lookalike.api.blocking import BlockingRunner
from lookalike.api.schemas import product_filter
from lookalike.api.thumbnails import ThumbnailCache
from lookalike.api.tracking import SearchTracker
from lookalike.catalog import ProductFilter
from lookalike.config import Settings
from lookalike.engine import Engine
from lookalike.errors import Unauthorized


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


_api_key_header = APIKeyHeader(
    name="X-API-Key",
    auto_error=False,
    description="Needed by write endpoints when the server has `LOOKALIKE_API_KEY` set.",
)


def _require_api_key(
    request: Request, given: Annotated[str | None, Security(_api_key_header)] = None
) -> None:
    secret = _settings(request).api_key
    if secret is None:
        return
    # Constant-time comparison: response timing must not reveal how much of a guess matched.
    if given is None or not hmac.compare_digest(given.encode(), secret.get_secret_value().encode()):
        raise Unauthorized("this endpoint needs a valid X-API-Key header")


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
require_api_key = Depends(_require_api_key)
