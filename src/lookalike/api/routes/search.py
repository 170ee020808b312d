"""Search by image upload, by text, or any mix of both (`POST /v1/search`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, File, Query, Request, UploadFile

from lookalike.api.deps import (
    EngineDep,
    FiltersDep,
    LimitQuery,
    RootPathDep,
    TrackerDep,
    search_access,
)
from lookalike.api.errors import errors_doc
from lookalike.api.schemas import (
    MAX_QUERY_IMAGES,
    MAX_TEXT_CHARS,
    SearchQuery,
    SearchResponse,
    parse_body,
)
from lookalike.api.uploads import decode_base64_image, read_upload
from lookalike.engine import SearchRequest
from lookalike.errors import InvalidInput, UnsupportedMediaType

router = APIRouter(prefix="/v1/search", tags=["search"], dependencies=[search_access])


@router.post("/image", response_model=SearchResponse, responses=errors_doc(400, 413, 415, 503))
async def search_by_image(
    image: Annotated[UploadFile, File(description="The query image (JPEG, PNG, WebP, ...).")],
    engine: EngineDep,
    tracker: TrackerDep,
    filters: FiltersDep,
    root_path: RootPathDep,
    limit: LimitQuery = None,
) -> SearchResponse:
    """Products that look like the uploaded image."""
    upload = await read_upload(image, engine.settings.max_image_bytes)
    request = SearchRequest(filters=filters, limit=limit)
    return await tracker.search(request, [upload], root_path)


@router.get("/text", response_model=SearchResponse, responses=errors_doc(503))
async def search_by_text(
    q: Annotated[
        str, Query(min_length=1, max_length=MAX_TEXT_CHARS, description="What to look for.")
    ],
    tracker: TrackerDep,
    filters: FiltersDep,
    root_path: RootPathDep,
    limit: LimitQuery = None,
) -> SearchResponse:
    """Products that match a description, e.g. `red vintage car on mountain road`."""
    if not q.strip():
        raise InvalidInput("q must contain some text")
    request = SearchRequest(texts=[q], filters=filters, limit=limit)
    return await tracker.search(request, [], root_path)


# The body is JSON or multipart, which FastAPI cannot declare on one route; the route reads
# it itself and the OpenAPI entry is written here (the app adds SearchQuery's schema).
_COMBINED_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/SearchQuery"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "query": {
                            "type": "string",
                            "description": "A SearchQuery as JSON (its `images` stay empty).",
                        },
                        "image": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "maxItems": MAX_QUERY_IMAGES,
                            "description": "Query images (repeat the part for several).",
                        },
                    },
                }
            },
        },
    }
}


@router.post(
    "",
    response_model=SearchResponse,
    responses=errors_doc(400, 413, 415, 404, 503),
    openapi_extra=_COMBINED_BODY,
)
async def search_combined(
    http_request: Request, engine: EngineDep, tracker: TrackerDep, root_path: RootPathDep
) -> SearchResponse:
    """Any mix of images (one or several), texts, an indexed product, filters and ranking
    options. Send JSON (images base64) or multipart (`query` JSON + `image` files)."""
    max_bytes = engine.settings.max_image_bytes
    content_type = http_request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with http_request.form(max_files=MAX_QUERY_IMAGES, max_fields=8) as form:
            unexpected = set(form.keys()) - {"query", "image"}
            if unexpected:
                raise InvalidInput(
                    f"unexpected multipart part(s) {', '.join(sorted(unexpected))}: "
                    "send `query` (JSON) and `image` files"
                )
            raw = form.get("query")
            if raw is not None and not isinstance(raw, str):
                raise InvalidInput("the `query` part must be text (JSON), not a file")
            query = parse_body(SearchQuery, raw or "{}")
            if query.images:
                raise InvalidInput("in multipart requests send images as `image` file parts")
            parts = form.getlist("image")
            if any(isinstance(part, str) for part in parts):
                raise InvalidInput("`image` parts must be files")
            images = [await read_upload(part, max_bytes) for part in parts]  # type: ignore[arg-type]
    elif content_type.startswith("application/json") or not content_type:
        query = parse_body(SearchQuery, await http_request.body())
        images = [
            decode_base64_image(text, max_bytes, index=i) for i, text in enumerate(query.images)
        ]
    else:
        raise UnsupportedMediaType(
            f"send application/json or multipart/form-data, not {content_type.split(';')[0]}"
        )
    texts = query.all_texts()
    if not (images or [t for t in texts if t.strip()] or query.product_id):
        raise InvalidInput("give at least one image, a text or a product_id")
    request = SearchRequest(
        texts=texts,
        negative_texts=query.negative_texts,
        product_id=query.product_id,
        image_weight=query.image_weight,
        multi_image=query.multi_image,
        filters=query.filters.to_filter(),
        rerank=query.rerank,
        diversity=query.diversity.to_diversity() if query.diversity else None,
        limit=query.limit,
    )
    return await tracker.search(request, images, root_path)
