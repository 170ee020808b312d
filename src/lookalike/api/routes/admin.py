"""Administration: erasing one shopper's logs on request, and the search-quality report
(its data, and a page that plots it)."""

from __future__ import annotations

import time
from importlib import resources
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from lookalike.api.deps import (
    EngineDep,
    RunDep,
    TrackerDep,
    admin_access,
    report_enabled,
)
from lookalike.api.errors import errors_doc
from lookalike.errors import InvalidInput, NotFound
from lookalike.quality import quality_report
from lookalike.quality.window import QualityWindow

router = APIRouter(prefix="/v1/admin", tags=["admin"])
page_router = APIRouter(include_in_schema=False)
STATIC_DIR = resources.files("lookalike.api") / "static"


class SessionErased(BaseModel):
    erased_searches: int = Field(description="Logged searches of the session now gone.")


@router.delete(
    "/sessions/{session_id}",
    response_model=SessionErased,
    responses=errors_doc(401, 403, 503),
    dependencies=[admin_access],
)
async def erase_session(
    session_id: Annotated[str, Path(min_length=1, max_length=200)],
    tracker: TrackerDep,
    engine: EngineDep,
    run: RunDep,
) -> SessionErased:
    """Forget a shopper: every logged search of the session (sent as `X-Session-Id`), its
    shown hits and its events. Pending log writes are flushed first."""
    hashed = tracker.sessions.hash(session_id)
    if hashed is None:
        raise InvalidInput("a session id must contain some text")
    if tracker.log is not None:
        await run(tracker.log.flush)
    return SessionErased(erased_searches=await run(engine.catalog.erase_session, hashed))


@router.get(
    "/report", responses=errors_doc(401, 403, 404), dependencies=[report_enabled, admin_access]
)
async def report(
    engine: EngineDep,
    run: RunDep,
    days: Annotated[int, Query(ge=1, le=90, description="Days to cover, today included.")] = 7,
) -> dict:
    """`lookalike report` as JSON: CTR, MRR and diversity per day beside their baselines,
    and CTR, MRR and NDCG@10 with intervals by day and A/B arm."""
    return (await run(quality_report, engine.catalog, days)).to_dict()


@page_router.get("/report")
async def report_page(request: Request) -> FileResponse:
    """The report page (it fetches `/v1/admin/report`, with the API key when asked)."""
    if not request.app.state.settings.report_page:
        raise NotFound("the report page (LOOKALIKE_REPORT_PAGE=true serves it)")
    return FileResponse(str(STATIC_DIR / "report.html"), media_type="text/html")


def refresh_quality_gauges(
    engine, window: QualityWindow | None = None, now: float | None = None
) -> None:
    """Set the quality gauges from the last 24 hours of logs, through `window` (a server's
    own, read incrementally) or read whole now. Blocking."""
    now = time.time() if now is None else now
    window = window or QualityWindow(engine.catalog, settle_s=0.0)
    for row in window.refresh(now):
        engine.metrics.set_quality(
            row.arm,
            searches=row.searches,
            ctr=row.ctr and row.ctr.mean,
            mrr=row.mrr and row.mrr.mean,
            ndcg=row.ndcg and row.ndcg.mean,
        )
