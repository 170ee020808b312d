"""`lookalike eval-floor`: what the relevance floor keeps, beside no floor, in one run.

Text queries the catalog can answer (class prompts and paraphrases, each with the category
it should find) and a fixed list of queries it cannot (objects and scenes a clothing or
clip-art shop does not sell, and random strings) run through the search pipeline twice:
with the default floor and with none. Per set: results kept of a page (`limit`) and, for
in-catalog queries, P@10 counting a missing result as a miss. Image queries too: catalog
items' "more like this" (in-catalog) and synthetic images of nothing (off-catalog, seeded
apart from the ones calibration uses).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.catalog.base import Catalog, ProductFilter
from lookalike.errors import InvalidInput
from lookalike.search.calibration import noise_images
from lookalike.search.floor import NO_FLOOR
from lookalike.search.pipeline import SearchPipeline
from lookalike.search.request import SearchRequest

# Things neither a clothing catalog nor the demo's clip art are about, and strings that
# mean nothing. Fixed: the eval compares floors on the same queries every time.
OFF_CATALOG_SCENES = (
    "a red sports car",
    "airplane in the sky",
    "laptop computer",
    "kitchen table",
    "mountain landscape at sunset",
    "a bowl of fruit",
    "a golden retriever puppy",
    "city skyline at night",
    "a glass of red wine",
    "bicycle",
    "electric guitar",
    "a cup of coffee",
    "smartphone",
    "a wooden chair",
    "tropical beach with palm trees",
    "a vase of flowers",
    "pizza",
    "a steam locomotive",
    "a cat sleeping on a sofa",
    "television",
    "a pile of books",
    "a bald eagle",
    "snow-covered forest",
    "a soccer ball",
    "a hammer and nails",
    "a birthday cake",
    "a sailing boat",
    "an office building",
    "a desk lamp",
    "a tractor in a field",
)
OFF_CATALOG_STRINGS = (
    "xkq zvbt plorr",
    "asdfgh jkl",
    "qwerty uiop zxcv",
    "7734 9921 0042",
    "lorem ipsum dolor",
    "zzqx vvbn",
    "mnbvcx lkjh",
    "plokij uhygt",
)
IMAGE_QUERIES = 40
P_AT = 10


def load_in_catalog(path: Path | None, catalog: Catalog) -> dict[str, dict[str, str]]:
    """set name -> {query: expected category}."""
    if path is None:
        names = [e["value"] for e in catalog.facets(limit=50)["category"]]
        return {"class prompts": {f"a photo of a {n.lower()}": n for n in names}}
    try:
        raw = json.loads(Path(path).read_text())
        return {
            "class prompts": dict(raw.get("class_prompts", {})),
            "paraphrases": dict(raw.get("paraphrases", {})),
        }
    except (OSError, ValueError, AttributeError) as exc:
        raise InvalidInput(f"{path}: not a queries file: {exc}") from exc


def evaluate_floor(
    pipeline: SearchPipeline, catalog: Catalog, queries: Path | None, *, limit: int = 20
) -> dict[str, Any]:
    sets: dict[str, list[tuple[SearchRequest, str | None]]] = {}
    for name, texts in load_in_catalog(queries, catalog).items():
        if texts:
            sets[f"in-catalog text: {name}"] = [
                (SearchRequest(texts=[q], limit=limit), c) for q, c in texts.items()
            ]
    sets["off-catalog text: objects and scenes"] = [
        (SearchRequest(texts=[q], limit=limit), None) for q in OFF_CATALOG_SCENES
    ]
    sets["off-catalog text: random strings"] = [
        (SearchRequest(texts=[q], limit=limit), None) for q in OFF_CATALOG_STRINGS
    ]
    items = _sample_items(catalog)
    if items:
        sets["in-catalog image: more like this"] = [
            (SearchRequest(product_id=pid, limit=limit), category) for pid, category in items
        ]
    sets["off-catalog image: noise, colours, gradients"] = [
        (SearchRequest(images=[image], limit=limit), None)
        for image in noise_images(IMAGE_QUERIES // 2, seed=1)
    ]
    rows = []
    floors: dict[str, float | None] = {}
    for name, requests in sets.items():
        row: dict[str, Any] = {"set": name, "queries": len(requests)}
        for label, min_score in (("no floor", NO_FLOOR), ("floor", None)):
            kept, precision = [], []
            for request, expected in requests:
                request.min_score = min_score
                results = pipeline.run(request)
                if min_score is None:
                    floors[request.kind] = results.min_score
                kept.append(len(results.hits))
                if expected is not None:
                    top = [h.product.category for h in results.hits[:P_AT]]
                    precision.append(sum(c == expected for c in top) / P_AT)
            row[label] = {
                "kept": round(float(np.mean(kept)), 2),
                f"P@{P_AT}": round(float(np.mean(precision)), 3) if precision else None,
            }
        rows.append(row)
    rows.insert(_first_off_catalog(rows) + 2, _combined(rows, "off-catalog text"))
    return {"limit": limit, "floors": floors, "rows": rows}


def _first_off_catalog(rows: list[dict[str, Any]]) -> int:
    return next(i for i, row in enumerate(rows) if row["set"].startswith("off-catalog text"))


def _combined(rows: list[dict[str, Any]], prefix: str) -> dict[str, Any]:
    """The sets starting with `prefix` as one, weighted by their query counts."""
    parts = [row for row in rows if row["set"].startswith(prefix)]
    total = sum(row["queries"] for row in parts)
    combined: dict[str, Any] = {"set": f"{prefix}: all", "queries": total}
    for label in ("no floor", "floor"):
        kept = sum(row[label]["kept"] * row["queries"] for row in parts) / total
        combined[label] = {"kept": round(kept, 2), f"P@{P_AT}": None}
    return combined


def _sample_items(catalog: Catalog, count: int = IMAGE_QUERIES) -> list[tuple[str, str]]:
    """Seeded catalog items with a category, spread over the categories."""
    names = [e["value"] for e in catalog.facets(limit=50)["category"]]
    rng = np.random.default_rng(0)
    chosen: list[tuple[str, str]] = []
    for name in names:
        ids = catalog.filter_vector_ids(ProductFilter(categories=(name,)))
        if len(ids) == 0:
            continue
        picked = rng.choice(ids, min(len(ids), max(1, count // len(names))), replace=False)
        products = catalog.by_vector_ids([int(v) for v in picked])
        chosen.extend((p.id, name) for p in products.values())
    return chosen


def floor_table(report: dict[str, Any]) -> str:
    limit = report["limit"]
    floors = ", ".join(
        f"{kind} {value:.3f}" if value is not None else f"{kind} none"
        for kind, value in report["floors"].items()
    )
    lines = [
        f"results kept of {limit}, and P@{P_AT} (a missing result counts as a miss); "
        f"floors: {floors}",
        f"| query set | queries | kept, no floor | kept, floor | P@{P_AT}, no floor "
        f"| P@{P_AT}, floor |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        none, floor = row["no floor"], row["floor"]
        p_none, p_floor = none[f"P@{P_AT}"], floor[f"P@{P_AT}"]
        lines.append(
            f"| {row['set']} | {row['queries']} | {none['kept']:.1f} | {floor['kept']:.1f} | "
            f"{'-' if p_none is None else f'{p_none:.3f}'} | "
            f"{'-' if p_floor is None else f'{p_floor:.3f}'} |"
        )
    return "\n".join(lines)
