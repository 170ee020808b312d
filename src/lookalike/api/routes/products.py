"""Products: read one, find similar ones, add/replace (PUT) and delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from starlette.datastructures import UploadFile

from lookalike.api.deps import (
    CollapseQuery,
    EngineDep,
    FiltersDep,
    LimitQuery,
    MinScoreQuery,
    RootPathDep,
    RunDep,
    SessionDep,
    TrackerDep,
    search_access,
    write_access,
)
from lookalike.api.errors import errors_doc
from lookalike.api.schemas import (
    ProductIn,
    ProductOut,
    SearchResponse,
    parse_body,
    product_out,
)
from lookalike.api.uploads import ImageUpload, read_upload
from lookalike.catalog import Product
from lookalike.engine import Engine, SearchRequest
from lookalike.errors import InvalidInput, NotFound, UnsupportedMediaType
from lookalike.ingest.sources import ItemSpec, check_item
from lookalike.text import json_object

router = APIRouter(prefix="/v1/products", tags=["products"])

# Ids may contain slashes (a folder's items are named by relative path), hence `:path`.
# `/similar` and `/duplicates` are declared first so they are not swallowed as part of an id.


@router.get(
    "/{product_id:path}/similar",
    response_model=SearchResponse,
    dependencies=[search_access],
    responses=errors_doc(404, 503),
)
async def similar_products(
    product_id: str,
    tracker: TrackerDep,
    filters: FiltersDep,
    root_path: RootPathDep,
    session: SessionDep,
    limit: LimitQuery = None,
    min_score: MinScoreQuery = None,
    collapse: CollapseQuery = None,
) -> SearchResponse:
    """More like this: neighbours of the product's stored embedding (nothing is re-encoded),
    the product itself excluded."""
    request = SearchRequest(
        product_id=product_id,
        filters=filters,
        limit=limit,
        session=session,
        min_score=min_score,
        collapse=collapse,
    )
    return await tracker.search(request, [], root_path)


@router.get(
    "/{product_id:path}/duplicates",
    response_model=list[ProductOut],
    dependencies=[search_access],
    responses=errors_doc(404),
)
async def product_duplicates(
    product_id: str, engine: EngineDep, run: RunDep, root_path: RootPathDep
) -> list[ProductOut]:
    """The other products in this product's near-duplicate group (`lookalike
    near-duplicates` finds the groups; writes keep them current); empty when it has none."""
    return [product_out(p, root_path) for p in await run(engine.duplicates_of, product_id)]


@router.get(
    "/{product_id:path}",
    response_model=ProductOut,
    dependencies=[search_access],
    responses=errors_doc(404),
)
async def get_product(
    product_id: str, engine: EngineDep, run: RunDep, root_path: RootPathDep
) -> ProductOut:
    """One product's metadata."""
    return product_out(await run(engine.catalog.get, product_id), root_path)


_PUT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/ProductIn"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "title": {"type": "string"},
                        "category": {"type": "string"},
                        "brand": {"type": "string"},
                        "price": {"type": "number"},
                        "attributes": {"type": "string", "description": "A JSON object."},
                        "image": {"type": "string", "format": "binary"},
                        "image_url": {"type": "string"},
                    },
                }
            },
        },
    }
}


@router.put(
    "/{product_id:path}",
    response_model=ProductOut,
    status_code=200,
    dependencies=[write_access],
    responses={
        201: {"model": ProductOut, "description": "Created"},
        **errors_doc(400, 403, 413, 415, 503),
    },
    openapi_extra=_PUT_BODY,
)
async def put_product(
    product_id: str,
    request: Request,
    response: Response,
    engine: EngineDep,
    run: RunDep,
    root_path: RootPathDep,
) -> ProductOut:
    """Add or replace a product; it is searchable when this returns. Send JSON (metadata and
    an optional `image_url`) or multipart (metadata fields and an `image` file). Without an
    image, an existing product keeps its image and only its metadata changes."""
    max_bytes = engine.settings.max_image_bytes
    content_type = request.headers.get("content-type", "")
    upload: ImageUpload | None = None
    if content_type.startswith("multipart/form-data"):
        async with request.form(max_files=1, max_fields=16) as form:
            fields: dict[str, Any] = {k: v for k, v in form.items() if isinstance(v, str)}
            stray = [k for k, v in form.multi_items() if not isinstance(v, str) and k != "image"]
            if stray:
                # A file under another name must not turn into a silent metadata-only update.
                raise InvalidInput(f"unexpected file part {stray[0]!r}: send the image as `image`")
            part = form.get("image")
            if isinstance(part, UploadFile):
                upload = await read_upload(part, max_bytes)
            elif part is not None:
                raise InvalidInput("the `image` part must be a file (or use `image_url`)")
        fields.pop("image", None)
        if "attributes" in fields:
            fields["attributes"] = json_object(fields["attributes"], "attributes")
        body = parse_body(ProductIn, {k: v for k, v in fields.items() if v != ""})
    elif content_type.startswith("application/json"):
        body = parse_body(ProductIn, await request.body())
    else:
        raise UnsupportedMediaType(
            "send application/json or multipart/form-data, "
            f"not {content_type.split(';')[0] or 'no content type'}"
        )
    if upload is not None and body.image_url:
        raise InvalidInput("send an image file or an image_url, not both")
    check_item(_item(product_id, body, body.image_url))  # caps, finite numbers
    product, created = await run(_upsert, engine, product_id, body, upload)
    response.status_code = 201 if created else 200
    return product_out(product, root_path)


def _upsert(
    engine: Engine, product_id: str, body: ProductIn, upload: ImageUpload | None
) -> tuple[Product, bool]:
    """(product, created). Blocking: runs on the API thread pool."""
    try:
        existing: Product | None = engine.catalog.get(product_id)
    except NotFound:
        existing = None
    source, data = body.image_url, (upload.data if upload else None)
    if data is None and source is not None:
        # Fetched here rather than inside the ingest, so a bad source keeps its own typed
        # error: 400 unreachable, 413 too large, 415 not an image, 422 refused. A client
        # names only http(s) images: never a file on the server (remote_only).
        data = engine.fetcher.remote_only().fetch(source)
    elif data is None:
        if existing is None or not existing.image_source:
            raise InvalidInput(f"product {product_id!r} is new: it needs an image or image_url")
        # Metadata only: the ingest sees the same content hash and does not re-encode.
        source = existing.image_source
    return engine.upsert(_item(product_id, body, source), data), existing is None


def _item(product_id: str, body: ProductIn, image: str | None) -> ItemSpec:
    return ItemSpec(
        id=product_id,
        image=image,
        title=body.title,
        category=body.category,
        brand=body.brand,
        price=body.price,
        attributes=body.attributes,
    )


@router.delete(
    "/{product_id:path}",
    status_code=204,
    dependencies=[write_access],
    responses=errors_doc(403, 404, 503),
)
async def delete_product(product_id: str, engine: EngineDep, run: RunDep) -> Response:
    """Delete a product; it no longer shows up in search when this returns."""
    await run(engine.delete, product_id)
    return Response(status_code=204)
