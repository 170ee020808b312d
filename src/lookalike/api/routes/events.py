"""Feedback from the search page or shop front: clicks on results (and add-to-cart and
purchase events, stronger labels for a learned ranker), for quality reports and training."""

from __future__ import annotations

import time

from fastapi import APIRouter

from lookalike.api.deps import TrackerDep
from lookalike.api.errors import errors_doc
from lookalike.api.schemas import ClickIn, EventAccepted
from lookalike.errors import CatalogError
from lookalike.quality import ClickRecord

router = APIRouter(prefix="/v1/events", tags=["events"])


@router.post("/click", status_code=202, response_model=EventAccepted, responses=errors_doc(503))
async def click(body: ClickIn, tracker: TrackerDep) -> EventAccepted:
    """Record that a result of a search was clicked, added to the cart (`kind: cart`) or
    bought (`kind: purchase`): `lookalike report` turns them into CTR, MRR and NDCG and
    `lookalike train-ranker` learns from them. Written in the background: answers at once."""
    if tracker.log is None:
        raise CatalogError("search logging is off (LOOKALIKE_SEARCH_LOG=false)")
    tracker.log.record(
        ClickRecord(body.search_id, body.product_id, body.position, time.time(), body.kind)
    )
    return EventAccepted()
