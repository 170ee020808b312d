"""What the catalog holds, for filter UIs."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from lookalike.api.deps import EngineDep, RunDep, search_access
from lookalike.api.errors import errors_doc
from lookalike.api.schemas import Facets

router = APIRouter(prefix="/v1", tags=["catalog"], dependencies=[search_access])


@router.get("/facets", response_model=Facets, responses=errors_doc())
async def facets(engine: EngineDep, run: RunDep) -> Any:
    """Categories and brands with their counts, and the price range."""
    return await run(engine.catalog.facets)
