"""`lookalike eval`: retrieval quality of a model on a held-out split, beside baselines.

Relevance is "same category". Measured, in one run on the same items:
- text -> image: P@10, mAP@10 and R@1 for class prompts ("a photo of a {category}", the
  training template) and for paraphrases no training caption contains ("running shoes");
- image -> image: P@10 and mAP@10, each item querying all the others, overall and by class;
- baselines: nearest neighbours on raw pixels (image -> image) and the untrained
  (random-init) model of the same architecture (both directions).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lookalike.config import Settings
from lookalike.encode.base import Encoder
from lookalike.encode.images import ImageLimits
from lookalike.errors import InvalidInput
from lookalike.files.atomic import atomic_write
from lookalike.files.fetch import Fetcher, ingest_roots
from lookalike.ingest.sources import ItemSpec
from lookalike.train.data import ImageStore, read_items
from lookalike.train.metrics import (
    average_precision_at_k,
    hit_at_k,
    knn,
    precision_at_k,
    retrieved_labels,
)

QUERIES_FILE = "eval_queries.json"
RAW_PIXEL_SIDE = 32


@dataclass
class EvalQueries:
    """Text queries and the category each should find."""

    class_prompts: dict[str, str] = field(default_factory=dict)
    paraphrases: dict[str, str] = field(default_factory=dict)
    split: str | None = "test"


def load_queries(path: Path | None, source: str | Path) -> EvalQueries:
    """`path`, else `eval_queries.json` beside the manifest, else prompts from categories."""
    candidate = path or Path(source).parent / QUERIES_FILE
    if path is None and not candidate.is_file():
        return EvalQueries()
    try:
        raw = json.loads(candidate.read_text())
        return EvalQueries(
            class_prompts=dict(raw.get("class_prompts", {})),
            paraphrases=dict(raw.get("paraphrases", {})),
            split=raw.get("split", "test"),
        )
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise InvalidInput(f"{candidate}: not a queries file: {exc}") from exc


def evaluate(
    source: str | Path,
    settings: Settings,
    encoder: Encoder,
    *,
    queries: EvalQueries,
    split: str | None = "test",
    limit: int | None = None,
    k: int = 10,
    baseline: Encoder | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The report: per model (the one under test, random init, raw pixels) the metrics."""
    started = time.monotonic()
    items = _split_items(source, split, limit)
    categories = sorted({str(item.category) for item in items})
    limits = ImageLimits.from_settings(settings)
    # float32: measure exactly the vectors the engine would store.
    options = {
        "workers": settings.ingest_workers,
        "progress": progress,
        "dtype": np.float32,
        "fetcher": Fetcher.from_settings(settings, local_roots=ingest_roots(source, settings)),
    }
    store = ImageStore(items, encoder.preprocess, limits, desc="eval images", **options)
    items = store.items
    labels = np.asarray([categories.index(str(item.category)) for item in items])
    prompts = queries.class_prompts or {f"a photo of a {c.lower()}": c for c in categories}
    text_sets = {
        "class_prompts": _known(prompts, categories),
        "paraphrases": _known(queries.paraphrases, categories),
    }
    results: dict[str, Any] = {}
    encoders = [("model", encoder)] + ([("random-init", baseline)] if baseline else [])
    for name, model in encoders:
        vectors = _encode_store(model, store)
        results[name] = {
            "image_to_image": _image_metrics(vectors, labels, categories, k, metric="ip"),
            **{
                key: _text_metrics(model, texts, vectors, labels, categories, k)
                for key, texts in text_sets.items()
                if texts
            },
        }
    raw = ImageStore(items, _raw_pixels, limits, desc="raw pixels", cache_bytes=1 << 62, **options)
    raw_vectors = raw.get(range(len(raw))).reshape(len(raw), -1).numpy()
    results["raw-pixels"] = {
        "image_to_image": _image_metrics(raw_vectors, labels, categories, k, metric="l2")
    }
    return {
        "source": str(source),
        "split": split,
        "items": len(items),
        "skipped": len(store.failed),
        "k": k,
        "categories": {c: int((labels == i).sum()) for i, c in enumerate(categories)},
        "model": {
            "family": encoder.info.family,
            "name": encoder.info.name,
            "model_id": encoder.model_id,
        },
        "results": results,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.monotonic() - started, 1),
    }


def write_report(report: dict[str, Any], data_dir: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = data_dir / "reports" / f"eval-{stamp}.json"
    text = json.dumps(report, indent=2)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


def markdown_table(report: dict[str, Any]) -> str:
    """Headline metrics of each model side by side, for the README."""
    k = report["k"]
    rows = [
        ("text->image, class prompts", "class_prompts", f"P@{k}"),
        ("text->image, class prompts", "class_prompts", f"mAP@{k}"),
        ("text->image, paraphrases", "paraphrases", f"P@{k}"),
        ("text->image, paraphrases", "paraphrases", f"mAP@{k}"),
        ("image->image", "image_to_image", f"P@{k}"),
        ("image->image", "image_to_image", f"mAP@{k}"),
    ]
    names = list(report["results"])
    lines = [
        "| task | metric | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for title, key, metric in rows:
        cells = []
        for name in names:
            value = report["results"][name].get(key, {}).get(metric)
            cells.append(f"{value:.3f}" if value is not None else "-")
        if any(cell != "-" for cell in cells):
            lines.append(f"| {title} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def per_query_table(report: dict[str, Any], key: str = "paraphrases") -> str:
    k = report["k"]
    model = report["results"]["model"].get(key, {})
    baseline = report["results"].get("random-init", {}).get(key, {})
    lines = [f"| query | expected | P@{k} | random-init P@{k} |", "|---|---|---|---|"]
    for query, entry in model.get("queries", {}).items():
        base = baseline.get("queries", {}).get(query, {}).get(f"P@{k}")
        shown = f"{base:.1f}" if base is not None else "-"
        lines.append(f"| {query} | {entry['expected']} | {entry[f'P@{k}']:.1f} | {shown} |")
    return "\n".join(lines)


def _split_items(source: str | Path, split: str | None, limit: int | None) -> list[ItemSpec]:
    items, _ = read_items(source)
    chosen = [
        item
        for item in items
        if item.category and (split is None or str(item.attributes.get("split")) == split)
    ]
    if limit is not None:
        chosen = chosen[:limit]
    if len(chosen) < 2:
        raise InvalidInput(
            f"{source}: fewer than 2 items with a category"
            + (f" in split {split!r}" if split else "")
        )
    return chosen


def _known(queries: dict[str, str], categories: Sequence[str]) -> dict[str, str]:
    return {text: category for text, category in queries.items() if category in categories}


def _encode_store(encoder: Encoder, store: ImageStore) -> np.ndarray:
    chunks = [
        encoder.encode_pixels(store.get(chunk).numpy())
        for chunk in torch.arange(len(store)).split(1024)
    ]
    return np.concatenate(chunks)


def _raw_pixels(image) -> np.ndarray:
    from lookalike.encode.lit import preprocess_image

    return preprocess_image(image, RAW_PIXEL_SIDE, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def _image_metrics(
    vectors: np.ndarray, labels: np.ndarray, categories: Sequence[str], k: int, *, metric: str
) -> dict[str, Any]:
    found = retrieved_labels(knn(vectors, vectors, k, metric=metric, exclude_self=True), labels)
    counts = np.bincount(labels, minlength=len(categories))[labels] - 1
    precision = precision_at_k(found, labels)
    average = average_precision_at_k(found, labels, counts)
    by_class = {
        category: {
            f"P@{k}": round(float(precision[labels == i].mean()), 4),
            f"mAP@{k}": round(float(average[labels == i].mean()), 4),
        }
        for i, category in enumerate(categories)
        if (labels == i).any()
    }
    return {
        f"P@{k}": round(float(precision.mean()), 4),
        f"mAP@{k}": round(float(average.mean()), 4),
        "by_class": by_class,
    }


def _text_metrics(
    encoder: Encoder,
    texts: dict[str, str],
    vectors: np.ndarray,
    labels: np.ndarray,
    categories: Sequence[str],
    k: int,
) -> dict[str, Any]:
    queries = list(texts)
    expected = np.asarray([categories.index(texts[q]) for q in queries])
    found = retrieved_labels(knn(encoder.encode_texts(queries), vectors, k), labels)
    counts = np.bincount(labels, minlength=len(categories))[expected]
    precision = precision_at_k(found, expected)
    average = average_precision_at_k(found, expected, counts)
    hits = hit_at_k(found, expected, 1)
    return {
        f"P@{k}": round(float(precision.mean()), 4),
        f"mAP@{k}": round(float(average.mean()), 4),
        "R@1": round(float(hits.mean()), 4),
        "queries": {
            query: {
                "expected": texts[query],
                f"P@{k}": round(float(precision[i]), 4),
                "top": [categories[j] if j >= 0 else None for j in found[i][:5]],
            }
            for i, query in enumerate(queries)
        },
    }
