"""Request and response bodies (pydantic); conversions to and from engine types."""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar
from urllib.parse import quote

from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, ValidationError

from lookalike.catalog import Product, ProductFilter
from lookalike.catalog.fields import (
    MAX_ATTRIBUTES,
    MAX_ID_CHARS,
    MAX_NAME_CHARS,
    MAX_SOURCE_CHARS,
    MAX_TITLE_CHARS,
)
from lookalike.catalog.filters import MAX_FILTER_ATTRIBUTES, MAX_FILTER_VALUES
from lookalike.errors import InvalidInput
from lookalike.search import Diversity, SearchResults
from lookalike.search.request import MAX_QUERY_IMAGES, MAX_QUERY_TEXT_CHARS, MAX_QUERY_TEXTS

MAX_TEXT_CHARS = MAX_QUERY_TEXT_CHARS
THUMBNAIL_SIZE = 256  # what result URLs ask for; the grid shows ~200 px cards

Scalar = str | int | FiniteFloat | bool
QueryText = Annotated[str, Field(max_length=MAX_TEXT_CHARS)]
FilterText = Annotated[str, Field(max_length=MAX_NAME_CHARS)]


# --- errors ------------------------------------------------------------------------------
class ErrorBody(BaseModel):
    type: str = Field(description="Error class, e.g. `InvalidImage`, `NotFound`.")
    message: str = Field(description="What was wrong, for a person to read.")
    details: Any = Field(None, description="Per-field problems, for validation errors.")


class ErrorResponse(BaseModel):
    error: ErrorBody


# --- search ------------------------------------------------------------------------------
class Filters(BaseModel):
    """Conditions every result must meet; empty lists and nulls mean "any"."""

    model_config = ConfigDict(extra="forbid")

    categories: list[FilterText] = Field(
        [], max_length=MAX_FILTER_VALUES, description="Any of these categories."
    )
    brands: list[FilterText] = Field(
        [], max_length=MAX_FILTER_VALUES, description="Any of these brands."
    )
    price_min: float | None = Field(None, ge=0, allow_inf_nan=False)
    price_max: float | None = Field(None, ge=0, allow_inf_nan=False)
    attributes: dict[str, list[Scalar]] = Field(
        {},
        max_length=MAX_FILTER_ATTRIBUTES,
        description='Attribute name -> allowed values, e.g. `{"color": ["red"]}` (at most '
        f"{MAX_FILTER_ATTRIBUTES} attributes and {MAX_FILTER_VALUES} values each).",
    )

    def to_filter(self) -> ProductFilter:
        return product_filter(
            self.categories,
            self.brands,
            self.price_min,
            self.price_max,
            {name: tuple(values) for name, values in self.attributes.items()},
        )


class DiversityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_per_category: int | None = Field(None, ge=1)
    max_per_brand: int | None = Field(None, ge=1)
    mmr_lambda: float | None = Field(
        None, ge=0, le=1, description="Maximal marginal relevance: 1 = relevance only."
    )

    def to_diversity(self) -> Diversity:
        return Diversity(self.max_per_category, self.max_per_brand, self.mmr_lambda)


class SearchQuery(BaseModel):
    """A combined query. As JSON, images are base64 strings (data URLs are fine); as
    multipart, this object is the `query` field and images are `image` file parts."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"text": "red sneakers", "filters": {"price_max": 80}, "limit": 10},
                {"product_id": "SKU-123", "texts": ["in blue"], "image_weight": 0.6},
            ]
        },
    )

    text: str | None = Field(None, max_length=MAX_TEXT_CHARS, description="Query text.")
    texts: list[QueryText] = Field(
        [], max_length=MAX_QUERY_TEXTS, description="More query texts (averaged)."
    )
    negative_texts: list[QueryText] = Field(
        [], max_length=MAX_QUERY_TEXTS, description='"Like this, but not ...".'
    )
    images: list[str] = Field(
        [], max_length=MAX_QUERY_IMAGES, description="Query images, base64-encoded."
    )
    product_id: str | None = Field(
        None,
        max_length=MAX_ID_CHARS,
        description="An indexed product: its stored embedding joins the image side.",
    )
    image_weight: float | None = Field(
        None, ge=0, le=1, description="Image side vs text side (default from settings)."
    )
    multi_image: Literal["mean", "best"] = Field(
        "mean", description="Several images: average them, or merge each one's results."
    )
    filters: Filters = Field(default_factory=Filters)
    rerank: dict[str, FiniteFloat] | None = Field(
        None, description="Business-signal weights for re-ranking (null: settings)."
    )
    diversity: DiversityIn | None = None
    limit: int | None = Field(None, ge=1, description="Results wanted (default 20).")
    ranker: str | None = Field(
        None,
        max_length=100,
        description="A registered ranker for this search (`hand`, `similarity`, `learned`); "
        "null: the server's (or the A/B arm's).",
    )
    session: str | None = Field(
        None,
        max_length=200,
        description="The shopper's session id (also accepted as the `X-Session-Id` header): "
        "keeps an A/B arm stable; logged only as a keyed hash.",
    )
    min_score: float | None = Field(
        None,
        ge=-1,
        le=1,
        allow_inf_nan=False,
        description="Relevance floor: the raw similarity a hit needs (null: the calibrated "
        "default of the model and query kind; -1: no floor).",
    )
    collapse: Literal["duplicates"] | None = Field(
        None, description="`duplicates`: one hit per near-duplicate group."
    )

    def all_texts(self) -> list[str]:
        return ([self.text] if self.text else []) + list(self.texts)


class SearchHitOut(BaseModel):
    id: str
    title: str
    image_url: str = Field(description="The product's image (`GET /v1/images/{id}`).")
    thumbnail_url: str = Field(description="A small JPEG of the image for result grids.")
    category: str | None
    brand: str | None
    price: float | None
    score: float = Field(description="Final score (after any re-ranking); higher is better.")
    similarity: float = Field(description="Cosine similarity to the query.")
    attributes: dict[str, Any]
    duplicates: list[str] = Field(
        [], description="With `collapse=duplicates`: the other products of this hit's group."
    )


class SearchResponse(BaseModel):
    results: list[SearchHitOut]
    total_found: int = Field(description="Searchable items matching the filters.")
    query_time_ms: float
    timings_ms: dict[str, float] = Field(description="Where the time went.")
    search_id: str | None = Field(
        None, description="Send it back with `POST /v1/events/click` when a result is clicked."
    )
    ranker: str = Field("", description="The ranker that ordered the results (name@version).")
    ranker_fallback: str | None = Field(
        None,
        description="Set when the asked-for ranker could not be used (its model missing or "
        "corrupt) and the hand-weighted ranker stood in: why.",
    )
    arm: str | None = Field(
        None, description="The session's A/B arm (`control`, `candidate`) while one runs."
    )
    min_score: float | None = Field(
        None, description="The relevance floor that applied (null: none)."
    )
    below_floor: int = Field(
        0,
        description="How many of the best `limit` candidates (by similarity) were under the "
        "floor: a page can say 'no close matches' instead of showing noise.",
    )


# --- products ----------------------------------------------------------------------------
class ProductIn(BaseModel):
    """Metadata for `PUT /v1/products/{id}`. The image is an uploaded file (multipart) or
    `image_url`: an http(s) URL of a public host (or one in `fetch_allow_hosts`), never a
    file on the server. Without either, an existing product keeps its image."""

    model_config = ConfigDict(extra="forbid")

    title: str = Field("", max_length=MAX_TITLE_CHARS)
    category: str | None = Field(None, max_length=MAX_NAME_CHARS)
    brand: str | None = Field(None, max_length=MAX_NAME_CHARS)
    price: float | None = Field(None, ge=0, allow_inf_nan=False)
    attributes: dict[str, Any] = Field(
        {},
        max_length=MAX_ATTRIBUTES,
        description="Any other fields, kept as given: JSON values, numbers finite (limits: "
        "see the security page).",
    )
    image_url: str | None = Field(None, min_length=1, max_length=MAX_SOURCE_CHARS)


class ProductOut(BaseModel):
    id: str
    title: str
    category: str | None
    brand: str | None
    price: float | None
    attributes: dict[str, Any]
    image_url: str
    thumbnail_url: str
    searchable: bool = Field(description="Whether it has an embedding (shows up in search).")
    model_id: str | None
    created_at: float
    updated_at: float
    version: int = Field(
        description="Grows with every change of the product; a queue event older than it is "
        "skipped (see the live catalog docs)."
    )


# --- catalog -----------------------------------------------------------------------------
class FacetValue(BaseModel):
    value: str
    count: int


class PriceRange(BaseModel):
    min: float | None
    max: float | None


class Facets(BaseModel):
    category: list[FacetValue]
    brand: list[FacetValue]
    price: PriceRange


class Health(BaseModel):
    status: str


class Readiness(BaseModel):
    status: str
    products: int
    searchable: int
    index_vectors: int
    # The last catalog change-log entry this process's index has applied (a change whose
    # entry is at or below it is searchable here).
    index_watermark: int
    model: str
    # What answers text and image queries, e.g. {"text": "onnxruntime-fp32", "images": "torch"}.
    runtimes: dict[str, str]


# --- events ------------------------------------------------------------------------------
class ClickIn(BaseModel):
    """A click on a search result, or a stronger signal: added to the cart, bought."""

    model_config = ConfigDict(extra="forbid")

    search_id: str = Field(
        pattern=r"^[0-9a-f]{32}$", description="The `search_id` of the search response."
    )
    product_id: str = Field(
        min_length=1, max_length=MAX_ID_CHARS, description="The clicked result."
    )
    position: int | None = Field(
        None,
        ge=1,
        le=1000,
        description="Ignored (kept for older clients): the position recorded is the one the "
        "product had in the logged search.",
    )
    kind: Literal["click", "cart", "purchase"] = Field(
        "click", description="What the shopper did with it (a ranker learns most from purchases)."
    )


class EventAccepted(BaseModel):
    status: Literal["recorded"] = "recorded"
    position: int = Field(description="The clicked result's position in its search (1 = first).")


# --- conversions -------------------------------------------------------------------------
def product_filter(
    categories: list[str],
    brands: list[str],
    price_min: float | None,
    price_max: float | None,
    attributes: dict[str, tuple[Any, ...]] | None = None,
) -> ProductFilter:
    if price_min is not None and price_max is not None and price_min > price_max:
        raise InvalidInput(f"price_min {price_min:g} is above price_max {price_max:g}")
    return ProductFilter(
        categories=tuple(categories),
        brands=tuple(brands),
        price_min=price_min,
        price_max=price_max,
        attributes=attributes or {},
    )


def image_urls(product: Product, root_path: str = "") -> tuple[str, str]:
    """(full image URL, thumbnail URL); the content hash busts browser caches on change."""
    url = f"{root_path}/v1/images/{quote(product.id, safe='')}"
    version = f"v={product.content_hash[:12]}" if product.content_hash else ""
    thumb = f"{url}?size={THUMBNAIL_SIZE}" + (f"&{version}" if version else "")
    return (f"{url}?{version}" if version else url), thumb


def product_out(product: Product, root_path: str = "") -> ProductOut:
    image_url, thumbnail_url = image_urls(product, root_path)
    return ProductOut(
        id=product.id,
        title=product.title,
        category=product.category,
        brand=product.brand,
        price=product.price,
        attributes=product.attributes,
        image_url=image_url,
        thumbnail_url=thumbnail_url,
        searchable=product.vector_id is not None,
        model_id=product.model_id,
        created_at=product.created_at,
        updated_at=product.updated_at,
        version=product.version,
    )


def search_response(
    results: SearchResults, root_path: str = "", *, search_id: str | None = None
) -> SearchResponse:
    hits = []
    for hit in results.hits:
        p = hit.product
        image_url, thumbnail_url = image_urls(p, root_path)
        hits.append(
            SearchHitOut(
                id=p.id,
                title=p.title,
                image_url=image_url,
                thumbnail_url=thumbnail_url,
                category=p.category,
                brand=p.brand,
                price=p.price,
                score=round(hit.score, 6),
                similarity=round(hit.similarity, 6),
                attributes=p.attributes,
                duplicates=hit.duplicates,
            )
        )
    return SearchResponse(
        results=hits,
        total_found=results.total_found,
        query_time_ms=round(results.query_time_ms, 3),
        timings_ms={k: round(v, 3) for k, v in results.timings_ms.items()},
        search_id=search_id,
        ranker=results.ranker,
        ranker_fallback=results.fallback,
        arm=results.arm,
        min_score=results.min_score,
        below_floor=results.below_floor,
    )


Model = TypeVar("Model", bound=BaseModel)


def parse_body(model: type[Model], raw: str | bytes | dict[str, Any]) -> Model:
    """Validate a body a route read itself; problems become the usual 422, located in it."""
    try:
        if isinstance(raw, dict):
            return model.model_validate(raw)
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**error, "loc": ("body", *error["loc"])} for error in exc.errors()]
        raise RequestValidationError(errors) from exc
