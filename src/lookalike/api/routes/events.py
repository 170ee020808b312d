"""Feedback from the search page or shop front: clicks on results, for quality reports."""

from __future__ import annotations

import time

from fastapi import APIRouter

from lookalike.api.deps import TrackerDep, search_access
from lookalike.api.errors import errors_doc
from lookalike.api.schemas import ClickIn, EventAccepted
from lookalike.errors import CatalogError
from lookalike.quality import ClickRecord

router = APIRouter(prefix="/v1/events", tags=["events"], dependencies=[search_access])


@router.post("/click", status_code=202, response_model=EventAccepted, responses=errors_doc(503))
async def click(body: ClickIn, tracker: TrackerDep) -> EventAccepted:
    """Record that a result of a search was clicked (`lookalike report` turns clicks into
    CTR and MRR). Written in the background: answers at once."""
    if tracker.log is None:
        raise CatalogError("search logging is off (LOOKALIKE_SEARCH_LOG=false)")
    tracker.log.record(ClickRecord(body.search_id, body.product_id, body.position, time.time()))
    return EventAccepted()
