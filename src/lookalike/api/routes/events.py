"""Feedback from the search page or shop front: clicks on results (and add-to-cart and
purchase events, stronger labels for a learned ranker), for quality reports and training."""

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
    """Record that a result of a search was clicked, added to the cart (`kind: cart`) or
    bought (`kind: purchase`): `lookalike report` turns them into CTR, MRR and NDCG and
    `lookalike train-ranker` learns from them. Accepted only for a product the search (by
    its `search_id`) returned; the position recorded is the one the search log has (a
    `position` sent is ignored). An unknown search id is 404, a product the search did not
    return 422. Written in the background."""
    record = await tracker.click(body.search_id, body.product_id, body.kind)
    return EventAccepted(position=record.position)
