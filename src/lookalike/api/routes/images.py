"""Product images for result pages: only a product's own image source is ever served, and
a local file only when it lies where Lookalike keeps or was given images (its media
folder, `media_roots`, the folders `lookalike index` read)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse, RedirectResponse, Response

from lookalike.api.deps import EngineDep, RunDep, ThumbnailsDep, search_access
from lookalike.api.errors import errors_doc
from lookalike.api.thumbnails import media_type
from lookalike.engine import Engine
from lookalike.errors import FetchRefused, NotFound
from lookalike.files.fetch import served_roots
from lookalike.files.local import RECORDED_ROOTS_KEY, real_roots, recorded_roots, resolve_under

router = APIRouter(prefix="/v1/images", tags=["images"], dependencies=[search_access])

# URLs carry the content hash (`?v=`), so a cached copy is never stale.
# nosniff: a browser never runs a served file as anything but the image type we name.
CACHE = {"Cache-Control": "public, max-age=86400", "X-Content-Type-Options": "nosniff"}


@router.get(
    "/{product_id:path}",
    response_class=Response,
    responses={
        200: {"content": {"image/*": {}}, "description": "The image, or its thumbnail (JPEG)"},
        307: {"description": "Redirect to the product's http(s) image"},
        **errors_doc(400, 404, 413),
    },
)
async def get_image(
    product_id: str,
    engine: EngineDep,
    run: RunDep,
    thumbnails: ThumbnailsDep,
    size: Annotated[
        int | None,
        Query(ge=16, le=1024, description="A thumbnail no larger than this many pixels."),
    ] = None,
) -> Response:
    """The product's image: a local file is served (or a thumbnail of it); an http(s) image
    is a redirect to its URL."""
    source = await run(_image_source, engine, product_id)
    if isinstance(source, str):
        return RedirectResponse(source, status_code=307)
    if size is not None:
        path = await run(thumbnails.get, source, size)
        return FileResponse(path, media_type="image/jpeg", headers=CACHE)
    return FileResponse(source, media_type=await run(media_type, source), headers=CACHE)


def _image_source(engine: Engine, product_id: str) -> Path | str:
    """A local file's path, or an http(s) URL (str)."""
    product = engine.get_product(product_id)
    source = product.image_source
    if not source:
        raise NotFound(f"image of product {product_id!r}")
    if source.startswith(("http://", "https://")):
        return source
    recorded = recorded_roots(engine.catalog.get_meta(RECORDED_ROOTS_KEY))
    try:
        path = resolve_under(source, real_roots(served_roots(engine.settings, recorded)))
    except FetchRefused:
        # Not a file Lookalike keeps or was given: as if there were no image at all.
        raise NotFound(f"image of product {product_id!r}") from None
    if not path.is_file():
        raise NotFound(f"image file of product {product_id!r} (it was moved or deleted)")
    return path
