"""Feedback from the search page or shop front: clicks on results, for quality reports."""

from __future__ import annotations

from fastapi import APIRouter

from lookalike.api.deps import TrackerDep, search_access
from lookalike.api.errors import errors_doc
from lookalike.api.schemas import ClickIn, EventAccepted

router = APIRouter(prefix="/v1/events", tags=["events"], dependencies=[search_access])


@router.post(
    "/click", status_code=202, response_model=EventAccepted, responses=errors_doc(404, 503)
)
async def click(body: ClickIn, tracker: TrackerDep) -> EventAccepted:
    """Record that a result of a search was clicked (`lookalike report` turns clicks into
    CTR and MRR). Accepted only for a product the search (by its `search_id`) returned; the
    position recorded is the one the search log has (a `position` sent is ignored).
    An unknown search id is 404, a product the search did not return 422. Written in the
    background."""
    record = await tracker.click(body.search_id, body.product_id)
    return EventAccepted(position=record.position)
