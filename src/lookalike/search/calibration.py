"""Calibrating the relevance floor from the catalog itself, per model and query kind.

What the floor must separate is a page of hits for a query the catalog cannot answer from a
page for one it can. Two things are measured, for text, image and hybrid queries alike:

* **noise level**: the k-th best similarity (k = the default page size) over the whole
  catalog of queries that mean nothing: seeded random strings (text), synthetic noise,
  flat colours, gradients and blocks (image), one of each combined (hybrid). The level is
  the 90th percentile: nine nonsense queries in ten have fewer than k hits above it.
* **related level**: similarities of pairs that belong together, from a sample of the
  catalog stratified by category: a category's name and "a photo of a {name}" against that
  category's items (text), an item against the other items of its category (image), both
  combined (hybrid). The level is the 5th percentile: the similarity that 95% of genuine
  matches reach.

The floor is the midpoint of the two. Where the noise level is not below the related level
the model does not tell that kind of nonsense from a real match, and that kind gets no
floor (said so in the report) rather than one that cuts real results.

Why not leave one category out (a category's prompt against the catalog without it) as
the stand-in for an off-catalog query: measured on the Fashion-MNIST demo its top 20 sit at
0.72-0.87, because among 63,000 other items there are always 20 that look like the missing
category (mislabelled or ambiguous items); real off-catalog queries ("a red sports car")
reach 0.30-0.60. It measures the confusable tail, not an off-catalog query.
"""

from __future__ import annotations

import json
import random
import string
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from lookalike.catalog.base import Catalog, ProductFilter
from lookalike.config import Settings
from lookalike.encode.base import Encoder, l2_normalize
from lookalike.files.atomic import write_text_atomic
from lookalike.index.base import VectorIndex
from lookalike.search.compose import hybrid
from lookalike.search.floor import FloorDefaults, meta_key, thresholds_from_json

NOISE_TEXTS = 200
NOISE_IMAGES = 64
ANCHORS_PER_CATEGORY = 20
MAX_CATEGORIES = 50
NOISE_QUANTILE = 0.9
RELATED_QUANTILE = 0.05
# Levels closer than this are one level: a model that puts every image at similarity
# 0.99999 to every other (a barely trained one) would otherwise get a floor between the
# two, and rounding (or another runtime's last digits) would decide which hits survive.
MIN_SEPARATION = 0.02
PROMPT = "a photo of a {}"
KINDS = ("text", "image", "hybrid")
SHOWN_QUANTILES = (0.01, 0.05, 0.1, 0.5, 0.9, 0.99)

MODEL_FILE = "relevance_floor.json"  # in a model directory: written by `lookalike train`

KthBest = Callable[[np.ndarray], np.ndarray]  # (m, dim) queries -> (m,) k-th best similarity


@dataclass
class LabelledSample:
    """Catalog embeddings with their category (an index into `names`)."""

    vectors: np.ndarray  # (n, dim) float32, L2-normalised
    labels: np.ndarray  # (n,) int
    names: list[str]


@dataclass
class KindFloor:
    min_score: float | None
    noise_level: float | None
    related_level: float | None
    noise: dict[str, float] = field(default_factory=dict)  # quantile -> noise k-th best
    related: dict[str, float] = field(default_factory=dict)  # quantile -> related pairs
    noise_queries: int = 0
    related_pairs: int = 0
    note: str = ""


@dataclass
class Calibration:
    model_id: str
    k: int
    items: int  # sampled catalog items
    categories: int
    source: str  # "catalog" or "training items"
    kinds: dict[str, KindFloor]
    created: float = field(default_factory=time.time)
    rule: str = (
        "min_score = (noise q90 + related q05) / 2, where noise = the k-th best similarity "
        "of nonsense queries and related = similarities of same-category pairs; no floor "
        f"when related q05 - noise q90 < {MIN_SEPARATION}"
    )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, raw: str) -> Calibration:
        data = json.loads(raw)
        data["kinds"] = {kind: KindFloor(**entry) for kind, entry in data["kinds"].items()}
        return cls(**data)


# --- nonsense queries --------------------------------------------------------------------
def noise_texts(count: int = NOISE_TEXTS, seed: int = 0) -> list[str]:
    """Seeded strings of random letters and digits, one to three "words"."""
    rng = random.Random(seed)
    alphabet = string.ascii_lowercase + string.digits
    return [
        " ".join(
            "".join(rng.choice(alphabet) for _ in range(rng.randint(3, 10)))
            for _ in range(rng.randint(1, 3))
        )
        for _ in range(count)
    ]


def noise_images(count: int = NOISE_IMAGES, seed: int = 0, size: int = 96) -> list[Image.Image]:
    """Seeded images of nothing: pixel noise, flat colours, gradients, coloured blocks."""
    rng = np.random.default_rng(seed)
    images = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            pixels = rng.integers(0, 256, (size, size, 3))
        elif kind == 1:
            pixels = np.broadcast_to(rng.integers(0, 256, 3), (size, size, 3))
        elif kind == 2:
            ramp = np.linspace(0.0, 1.0, size)[:, None, None]
            pixels = ramp * rng.integers(0, 256, 3) + (1 - ramp) * rng.integers(0, 256, 3)
            pixels = np.broadcast_to(pixels, (size, size, 3))
        else:
            blocks = rng.integers(0, 256, (4, 4, 3))
            pixels = np.kron(blocks, np.ones((size // 4, size // 4, 1)))
        images.append(Image.fromarray(np.asarray(pixels, dtype=np.uint8)))
    return images


# --- the rule ----------------------------------------------------------------------------
def calibrate(
    sample: LabelledSample,
    encoder: Encoder,
    kth_best: KthBest,
    *,
    model_id: str,
    k: int,
    image_weight: float,
    source: str = "catalog",
    seed: int = 0,
) -> Calibration:
    """Floors per query kind from a labelled sample and a k-th-best-similarity function
    over the whole catalog (see the module docstring for the rule)."""
    text_noise = encoder.encode_texts(noise_texts(seed=seed))
    image_noise = encoder.encode_images(noise_images(seed=seed))
    pairs = len(image_noise)
    hybrid_noise = np.stack(
        [hybrid(image_noise[i], text_noise[i], image_weight) for i in range(pairs)]
    )
    related = _related_pairs(sample, encoder, image_weight, seed)
    kinds = {}
    for kind, noise in (("text", text_noise), ("image", image_noise), ("hybrid", hybrid_noise)):
        kinds[kind] = _kind_floor(kth_best(noise), related[kind])
    return Calibration(model_id, k, len(sample.labels), len(sample.names), source, kinds)


def _kind_floor(noise: np.ndarray, related: np.ndarray) -> KindFloor:
    shown_noise = _quantiles(noise)
    if len(related) == 0:
        return KindFloor(
            None, None, None, shown_noise, {}, len(noise), 0, "no categories to sample"
        )
    noise_level = float(np.quantile(noise, NOISE_QUANTILE))
    related_level = float(np.quantile(related, RELATED_QUANTILE))
    floor, note = None, ""
    if related_level - noise_level >= MIN_SEPARATION:
        floor = round((noise_level + related_level) / 2, 4)
    elif noise_level < related_level:
        note = f"nonsense and genuine matches within {MIN_SEPARATION} of each other: no floor"
    else:
        note = "nonsense queries reach genuine matches' similarities: no floor"
    return KindFloor(
        floor,
        round(noise_level, 4),
        round(related_level, 4),
        shown_noise,
        _quantiles(related),
        len(noise),
        len(related),
        note,
    )


def _related_pairs(
    sample: LabelledSample, encoder: Encoder, image_weight: float, seed: int
) -> dict[str, np.ndarray]:
    """Similarities of same-category pairs per query kind."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[np.ndarray]] = {kind: [] for kind in KINDS}
    names = [name.lower() for name in sample.names]
    if not names:
        return {kind: np.zeros(0, np.float32) for kind in KINDS}
    prompts = encoder.encode_texts([PROMPT.format(n) for n in names] + names)
    for label in range(len(names)):
        members = np.flatnonzero(sample.labels == label)
        if len(members) < 2:
            continue
        vectors = sample.vectors[members]
        out["text"].append((vectors @ prompts[[label, len(names) + label]].T).ravel())
        anchors = rng.choice(len(members), min(ANCHORS_PER_CATEGORY, len(members)), False)
        queries = vectors[anchors]
        hybrids = np.stack([hybrid(q, prompts[label], image_weight) for q in queries])
        for kind, q in (("image", queries), ("hybrid", hybrids)):
            sims = q @ vectors.T
            sims[np.arange(len(anchors)), anchors] = np.nan  # an item is not its own match
            out[kind].append(sims[~np.isnan(sims)])
    return {
        kind: np.concatenate(parts) if parts else np.zeros(0, np.float32)
        for kind, parts in out.items()
    }


def _quantiles(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {}
    return {
        f"q{round(q * 100):02d}": round(float(np.quantile(values, q)), 4) for q in SHOWN_QUANTILES
    } | {"max": round(float(np.max(values)), 4)}


# --- over a catalog ----------------------------------------------------------------------
def catalog_sample(catalog: Catalog, model_id: str, size: int, seed: int = 0) -> LabelledSample:
    """Up to `size` embeddings of `model_id`, spread evenly over the (at most
    MAX_CATEGORIES largest) categories."""
    names = [entry["value"] for entry in catalog.facets(limit=MAX_CATEGORIES)["category"]]
    rng = np.random.default_rng(seed)
    per_category = max(2, size // max(1, len(names)))
    vectors, labels = [], []
    for label, name in enumerate(names):
        ids = catalog.filter_vector_ids(ProductFilter(categories=(name,)))
        if len(ids) > per_category:
            ids = np.sort(rng.choice(ids, per_category, replace=False))
        stored = catalog.embeddings_by_vector_ids(ids.tolist(), model_id=model_id)
        if stored:
            vectors.append(np.stack(list(stored.values())))
            labels.append(np.full(len(stored), label))
    if not vectors:
        return LabelledSample(np.zeros((0, 0), np.float32), np.zeros(0, int), [])
    return LabelledSample(l2_normalize(np.concatenate(vectors)), np.concatenate(labels), names)


def index_kth_best(index: VectorIndex, k: int) -> KthBest:
    """The k-th best similarity of each query over the whole index (its last hit when the
    index holds fewer than k vectors)."""

    def kth(queries: np.ndarray) -> np.ndarray:
        size = len(index)
        if size == 0:
            return np.full(len(queries), -1.0, np.float32)
        scores, found = index.search(np.ascontiguousarray(queries, np.float32), min(k, size))
        scores = np.where(found >= 0, scores, np.inf)
        return scores.min(axis=1)

    return kth


def calibrate_catalog(
    catalog: Catalog,
    index: VectorIndex,
    encoder: Encoder,
    *,
    k: int,
    sample_size: int,
    image_weight: float,
    seed: int = 0,
) -> Calibration:
    """Calibrate the floor of the index's model over this catalog and store it in the
    catalog's meta (`relevance_floor:<model id>`)."""
    model_id = index.meta.model_id
    sample = catalog_sample(catalog, model_id, sample_size, seed)
    calibration = calibrate(
        sample,
        encoder,
        index_kth_best(index, k),
        model_id=model_id,
        k=k,
        image_weight=image_weight,
        seed=seed,
    )
    catalog.set_meta(meta_key(model_id), calibration.to_json())
    return calibration


def floor_defaults(catalog: Catalog, settings: Settings) -> FloorDefaults:
    """The floors searches use: the catalog's calibration per model, else the one a model
    trained here carries (measured on its training items) until the catalog has its own."""
    checkpoint = settings.model_checkpoint
    return FloorDefaults(
        catalog, settings, fallback=lambda model_id: model_thresholds(checkpoint, model_id)
    )


def recalibrate(
    settings: Settings,
    catalog: Catalog,
    index: VectorIndex,
    encoder: Encoder,
    floors: FloorDefaults,
) -> Calibration:
    """`calibrate_catalog` with the settings' sample, and searches use it from now on."""
    calibration = calibrate_catalog(
        catalog,
        index,
        encoder,
        k=settings.default_limit,
        sample_size=settings.calibration_sample,
        image_weight=settings.image_weight,
    )
    floors.forget()
    return calibration


def save_with_model(calibration: Calibration, model_dir: str | Path) -> Path:
    """Keep a calibration made on training items beside the model (`lookalike train`)."""
    path = Path(model_dir) / MODEL_FILE
    write_text_atomic(path, calibration.to_json())
    return path


def model_thresholds(model_checkpoint: str | None, model_id: str) -> dict[str, float | None]:
    """The floors a model directory carries for `model_id` ({} when none): the default for
    catalogs not calibrated with that model yet."""
    if not model_checkpoint:
        return {}
    path = Path(model_checkpoint) / MODEL_FILE
    try:
        raw = path.read_text()
        if json.loads(raw).get("model_id") != model_id:
            return {}  # the weights changed since: it is another model's
    except (OSError, ValueError, AttributeError):
        return {}
    return thresholds_from_json(raw)


def vectors_kth_best(vectors: np.ndarray, k: int) -> KthBest:
    """The k-th best similarity over a set of vectors held in memory (training items)."""

    def kth(queries: np.ndarray) -> np.ndarray:
        sims = queries @ vectors.T
        kk = min(k, sims.shape[1])
        return np.partition(sims, -kk, axis=1)[:, -kk]

    return kth


def format_calibration(calibration: Calibration) -> str:
    """The distributions and the chosen floors, as a table for people."""
    lines = [
        f"relevance floor for model {calibration.model_id} ({calibration.source}: "
        f"{calibration.items} items in {calibration.categories} categories, k={calibration.k})",
        "| kind | floor | noise q50 / q90 / max (k-th best) "
        "| related q01 / q05 / q50 (pairs) | note |",
        "|---|---|---|---|---|",
    ]
    for kind, entry in calibration.kinds.items():
        noise = " / ".join(_shown(entry.noise.get(q)) for q in ("q50", "q90", "max"))
        related = " / ".join(_shown(entry.related.get(q)) for q in ("q01", "q05", "q50"))
        lines.append(
            f"| {kind} | {_shown(entry.min_score, 'none')} | {noise} | {related} | {entry.note} |"
        )
    lines.append(f"rule: {calibration.rule}")
    return "\n".join(lines)


def _shown(value: float | None, empty: str = "-") -> str:
    return empty if value is None else f"{value:.3f}"
