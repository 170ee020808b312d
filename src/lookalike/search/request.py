"""A search request, its validation (done once, here), and the query context rankers see."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from lookalike.catalog.base import ProductFilter
from lookalike.catalog.fields import MAX_ID_CHARS
from lookalike.catalog.filters import check_filter
from lookalike.config import Settings
from lookalike.errors import InvalidInput
from lookalike.search.diversity import Diversity
from lookalike.text import check_text

if TYPE_CHECKING:
    from PIL import Image

    ImageInput = bytes | str | Path | Image.Image
else:
    ImageInput = object

MAX_QUERY_IMAGES = 16  # images of one request
MAX_QUERY_TEXTS = 16  # texts of one request, and negative texts
MAX_QUERY_TEXT_CHARS = 2000  # one query text

QueryKind = Literal["image", "text", "hybrid"]
QUERY_KINDS: tuple[QueryKind, ...] = ("image", "text", "hybrid")
MULTI_IMAGE_MODES = ("mean", "best")
COLLAPSE_MODES = (None, "duplicates")


@dataclass
class SearchRequest:
    """Any mix of images, texts and an indexed product, plus filters and ranking options."""

    images: Sequence[ImageInput] = ()
    texts: Sequence[str] = ()
    negative_texts: Sequence[str] = ()  # "like this, but not red"
    product_id: str | None = None  # "more like this": its stored embedding, itself excluded
    image_weight: float | None = None  # image side vs text side; default from settings
    multi_image: Literal["mean", "best"] = "mean"  # combine several images, or merge results
    filters: ProductFilter = field(default_factory=ProductFilter)
    rerank: Mapping[str, float] | None = None  # hand-weighted signal weights; None = settings
    diversity: Diversity | None = None
    limit: int | None = None
    ranker: str | None = None  # a registered ranker by name; None = settings
    session: str | None = None  # an opaque (hashed) shopper session, for logs and A/B arms
    # Raw similarity a hit needs (None: the default floor, see search/floor.py; -1: none).
    min_score: float | None = None
    collapse: Literal["duplicates"] | None = None  # one hit per near-duplicate group

    @property
    def kind(self) -> QueryKind:
        """An indexed product's embedding counts as an image: it is one."""
        has_image = bool(self.images or self.product_id)
        has_text = any(text.strip() for text in self.texts)
        if has_image and has_text:
            return "hybrid"
        return "image" if has_image else "text"


@dataclass(frozen=True)
class QueryContext:
    """What a ranker may know about the query besides the candidates: its kind, filters and
    which inputs it had (never the raw images)."""

    kind: QueryKind
    filters: ProductFilter = field(default_factory=ProductFilter)
    texts: tuple[str, ...] = ()
    images: int = 0  # query images (an indexed product counts as one)
    negative_texts: int = 0
    session: str | None = None

    @classmethod
    def of(cls, request: SearchRequest) -> QueryContext:
        return cls(
            kind=request.kind,
            filters=request.filters,
            texts=tuple(t for t in request.texts if t.strip()),
            images=len(request.images) + (request.product_id is not None),
            negative_texts=len(request.negative_texts),
            session=request.session,
        )


@dataclass(frozen=True)
class Options:
    """A request's options after validation: every stage trusts these."""

    limit: int
    filters: ProductFilter
    diversity: Diversity | None
    rerank: Mapping[str, float] | None
    ranker: str | None
    min_score: float | None = None
    collapse: str | None = None


def check_inputs(request: SearchRequest) -> None:
    """The one place a request's inputs are capped, whichever entry made it (API, CLI):
    images, texts and their length, the product id (InvalidInput when over)."""
    if len(request.images) > MAX_QUERY_IMAGES:
        raise InvalidInput(f"at most {MAX_QUERY_IMAGES} query images, not {len(request.images)}")
    for what, texts in (("texts", request.texts), ("negative texts", request.negative_texts)):
        if len(texts) > MAX_QUERY_TEXTS:
            raise InvalidInput(f"at most {MAX_QUERY_TEXTS} {what}, not {len(texts)}")
        for text in texts:
            check_text(text, "a query text", MAX_QUERY_TEXT_CHARS)
    if request.product_id is not None:
        check_text(request.product_id, "product_id", MAX_ID_CHARS)


def check_options(
    settings: Settings,
    *,
    limit: int | None,
    filters: ProductFilter | None = None,
    diversity: Diversity | None = None,
    rerank: Mapping[str, float] | None = None,
    ranker: str | None = None,
    multi_image: str = "mean",
    min_score: float | None = None,
    collapse: str | None = None,
) -> Options:
    """The one place a search's options are checked (InvalidInput for what cannot be met)."""
    limit = settings.default_limit if limit is None else limit
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise InvalidInput(f"limit must be a whole number, not {limit!r}")
    if not 1 <= limit <= settings.max_limit:
        raise InvalidInput(f"limit must be between 1 and {settings.max_limit}")
    if multi_image not in MULTI_IMAGE_MODES:
        raise InvalidInput(f"multi_image must be 'mean' or 'best', not {multi_image!r}")
    if diversity is not None:
        diversity.validate()
    if filters is not None:
        check_filter(filters)  # sizes and values, before any work is done
    if min_score is not None and (
        isinstance(min_score, bool)
        or not isinstance(min_score, (int, float))
        or not -1.0 <= min_score <= 1.0
    ):
        raise InvalidInput(f"min_score must be within [-1, 1] (-1: no floor), not {min_score!r}")
    if collapse not in COLLAPSE_MODES:
        raise InvalidInput(f"collapse must be 'duplicates' or absent, not {collapse!r}")
    floor = None if min_score is None else float(min_score)
    return Options(limit, filters or ProductFilter(), diversity, rerank, ranker, floor, collapse)
