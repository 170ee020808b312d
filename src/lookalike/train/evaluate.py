"""`lookalike eval`: retrieval quality of a model on a held-out split, beside baselines.

Relevance is "same category" (and, for title queries, "the item itself"). Measured, in one
run on the same items:
- text -> image over the held-out split: P@10, mAP@10 and R@1 for class prompts ("a photo
  of a {category}", the training template), for paraphrases no training caption contains
  ("running shoes"), and for the same queries translated into other languages (the
  queries file's `translations`; a query's language is never declared);
- image -> image within the held-out split: P@10 and mAP@10, each item querying the others;
- held-out images against the gallery split (`gallery_split`, default `train`): what a
  shopper's photo that is not in the catalog finds. P@10 (also macro-averaged over
  categories, for unbalanced catalogs) and 1-NN accuracy (the nearest item's category);
- with `titles` in the queries file: each held-out item's own title as a text query over
  the whole catalog (gallery + held-out items): Recall@1/5/10 and MRR@100 of finding that
  item, beside BM25 keyword search over the items' keywords and descriptions (the title
  itself is not indexed: it is the query);
- baselines: nearest neighbours on raw pixels (image -> image), the untrained
  (random-init) model of the same architecture, and any further models given (`others`,
  e.g. the same recipe on another text tower), all on the same items.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from lookalike.config import Settings
from lookalike.encode.base import Encoder
from lookalike.encode.images import ImageLimits
from lookalike.errors import InvalidInput
from lookalike.files.atomic import atomic_write
from lookalike.files.fetch import Fetcher, ingest_roots
from lookalike.ingest.sources import BadRow, ItemSpec
from lookalike.train.bm25 import BM25
from lookalike.train.data import ImageStore, load_images, read_items
from lookalike.train.metrics import (
    RunningTopK,
    average_precision_at_k,
    hit_at_k,
    knn,
    macro_mean,
    precision_at_k,
    reciprocal_rank,
    retrieved_labels,
)

QUERIES_FILE = "eval_queries.json"
RAW_PIXEL_SIDE = 32
GALLERY_CHUNK = 2048
TITLE_DEPTH = 100  # MRR looks this deep; an item found lower counts 0
TEXT_SETS = ("class_prompts", "paraphrases")


@dataclass
class EvalQueries:
    """Text queries and the category each should find; what else to measure."""

    class_prompts: dict[str, str] = field(default_factory=dict)
    paraphrases: dict[str, str] = field(default_factory=dict)
    split: str | None = "test"
    # language code -> {"class_prompts": {query: category}, "paraphrases": {...}}
    translations: dict[str, dict[str, dict[str, str]]] = field(default_factory=dict)
    gallery_split: str | None = "train"  # held-out images against this split's items
    titles: bool = False  # each held-out item's title finds that item (and BM25 beside it)


def load_queries(path: Path | None, source: str | Path) -> EvalQueries:
    """`path`, else `eval_queries.json` beside the manifest, else prompts from categories."""
    candidate = path or Path(source).parent / QUERIES_FILE
    if path is None and not candidate.is_file():
        return EvalQueries()
    try:
        raw = json.loads(candidate.read_text(encoding="utf-8"))
        translations = {
            str(language): {name: dict(sets.get(name, {})) for name in TEXT_SETS}
            for language, sets in dict(raw.get("translations", {})).items()
        }
        return EvalQueries(
            class_prompts=dict(raw.get("class_prompts", {})),
            paraphrases=dict(raw.get("paraphrases", {})),
            split=raw.get("split", "test"),
            translations=translations,
            gallery_split=raw.get("gallery_split", "train"),
            titles=bool(raw.get("titles", False)),
        )
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise InvalidInput(f"{candidate}: not a queries file: {exc}") from exc


@dataclass
class _View:
    """One way of turning images (and maybe texts) into vectors: a model or raw pixels."""

    name: str
    preprocess: Callable[[Any], np.ndarray]
    encode_pixels: Callable[[np.ndarray], np.ndarray]
    encode_texts: Callable[[Sequence[str]], np.ndarray] | None
    metric: str  # "ip" for unit vectors, "l2" for raw pixels


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
    others: dict[str, Encoder] | None = None,
    gallery_limit: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """The report: per model (the one under test, `others`, random init, raw pixels) the
    metrics, all measured on the same items in this run."""
    started = time.monotonic()
    every, _ = read_items(source)
    items = _split_items(every, source, split, limit)
    categories = sorted({str(item.category) for item in items})
    limits = ImageLimits.from_settings(settings)
    fetcher = Fetcher.from_settings(settings, local_roots=ingest_roots(source, settings))
    # float32: measure exactly the vectors the engine would store.
    options = {
        "workers": settings.ingest_workers,
        "progress": progress,
        "dtype": np.float32,
        "fetcher": fetcher,
    }
    views = [_model_view("model", encoder)]
    views += [_model_view(name, other) for name, other in (others or {}).items()]
    views += [_model_view("random-init", baseline)] if baseline else []
    views.append(_View("raw-pixels", _raw_pixels, _flatten, None, "l2"))

    held_out: dict[str, np.ndarray] = {}
    kept: list[ItemSpec] = []
    for view in views:
        store = ImageStore(
            items,
            view.preprocess,
            limits,
            desc=f"eval images ({view.name})",
            cache_bytes=1 << 62,
            **options,
        )
        held_out[view.name] = _encode_store(view.encode_pixels, store)
        kept, skipped = store.items, len(store.failed)
    labels = np.asarray([categories.index(str(item.category)) for item in kept])
    prompts = queries.class_prompts or {f"a photo of a {c.lower()}": c for c in categories}
    text_sets = {
        "class_prompts": _known(prompts, categories),
        "paraphrases": _known(queries.paraphrases, categories),
    }
    results: dict[str, dict[str, Any]] = {}
    for view in views:
        vectors = held_out[view.name]
        entry: dict[str, Any] = {
            "image_to_image": _image_metrics(vectors, labels, categories, k, metric=view.metric)
        }
        if view.encode_texts is not None:
            for key, texts in text_sets.items():
                if texts:
                    entry[key] = _text_metrics(
                        view.encode_texts, texts, vectors, labels, k, categories
                    )
            languages = _language_metrics(
                view.encode_texts, queries, categories, vectors, labels, k
            )
            if languages:
                entry["languages"] = languages
        results[view.name] = entry

    report: dict[str, Any] = {
        "source": str(source),
        "split": split,
        "items": len(kept),
        "skipped": skipped,
        "k": k,
        "categories": {c: int((labels == i).sum()) for i, c in enumerate(categories)},
        "model": {
            "family": encoder.info.family,
            "name": encoder.info.name,
            "model_id": encoder.model_id,
        },
    }
    gallery = _gallery_items(every, queries.gallery_split if split else None, gallery_limit)
    if gallery or queries.titles:
        searched = _search_gallery(
            gallery, kept, views, held_out, queries.titles, k, fetcher, limits, settings, progress
        )
        report["gallery"] = {"split": queries.gallery_split, "items": searched.size}
        subsets: dict[str, np.ndarray] = {}
        ranks: dict[str, list[int | None]] = {}
        if queries.titles:
            bm25 = BM25([_keyword_text(item) for item in searched.catalog])
            keyword_hits = bm25.top(searched.title_texts, TITLE_DEPTH)
            subsets = {
                "distinct": searched.distinct,
                # Where a keyword search returns nothing at all: what embeddings add.
                "no keyword match": keyword_hits[:, 0] < 0,
            }
            results["keywords-bm25"] = {
                "titles": _title_metrics(keyword_hits, searched.title_targets, subsets)
            }
            ranks = {"keywords-bm25": title_ranks(keyword_hits, searched.title_targets)}
        for view in views:
            if gallery and searched.size:
                found = retrieved_labels(
                    searched.images[view.name].found(), searched.labels(categories)
                )
                results[view.name]["held_out_vs_gallery"] = _gallery_metrics(
                    found, labels, categories, k
                )
            if view.name in searched.titles:
                found_titles = searched.titles[view.name].found()
                results[view.name]["titles"] = _title_metrics(
                    found_titles, searched.title_targets, subsets
                )
                ranks[view.name] = title_ranks(found_titles, searched.title_targets)
        if queries.titles:
            # Per query, so a reader can see which titles each side finds (title_examples).
            report["title_queries"] = {"queries": searched.title_texts, "ranks": ranks}
    if "keywords-bm25" in results:  # the baseline's column last, as the others
        results["keywords-bm25"] = results.pop("keywords-bm25")
    report["results"] = results
    report["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def write_report(report: dict[str, Any], data_dir: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = data_dir / "reports" / f"eval-{stamp}.json"
    text = json.dumps(report, indent=2)
    atomic_write(path, lambda tmp: Path(tmp).write_text(text))
    return path


def markdown_table(report: dict[str, Any]) -> str:
    """Headline metrics of each model side by side, for the README."""
    k = report["k"]
    gallery = (report.get("gallery") or {}).get("split")
    vs = f"held-out vs {gallery} gallery" if gallery else "held-out vs gallery"
    rows = [
        ("text->image, class prompts", ("class_prompts",), f"P@{k}"),
        ("text->image, class prompts", ("class_prompts",), f"mAP@{k}"),
        ("text->image, paraphrases", ("paraphrases",), f"P@{k}"),
        ("text->image, paraphrases", ("paraphrases",), f"mAP@{k}"),
        ("image->image, within held-out", ("image_to_image",), f"P@{k}"),
        ("image->image, within held-out", ("image_to_image",), f"mAP@{k}"),
        (f"image->image, {vs}", ("held_out_vs_gallery",), f"P@{k}"),
        (f"image->image, {vs}", ("held_out_vs_gallery",), f"macro P@{k}"),
        (f"image->image, {vs}", ("held_out_vs_gallery",), "1-NN accuracy"),
        ("title->item, all held-out titles", ("titles", "all"), "R@1"),
        ("title->item, all held-out titles", ("titles", "all"), "R@5"),
        ("title->item, all held-out titles", ("titles", "all"), "R@10"),
        ("title->item, all held-out titles", ("titles", "all"), "MRR"),
        ("title->item, titles no other item has", ("titles", "distinct"), "R@10"),
        ("title->item, titles no other item has", ("titles", "distinct"), "MRR"),
        ("title->item, titles no keyword matches", ("titles", "no keyword match"), "R@10"),
    ]
    names = list(report["results"])
    lines = [
        "| task | metric | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for title, path, metric in rows:
        cells = []
        for name in names:
            value: Any = report["results"][name]
            for key in path:
                value = value.get(key, {}) if isinstance(value, dict) else {}
            value = value.get(metric) if isinstance(value, dict) else None
            cells.append(f"{value:.3f}" if value is not None else "-")
        if any(cell != "-" for cell in cells):
            lines.append(f"| {title} | {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def language_table(report: dict[str, Any]) -> str:
    """P@k per language (class prompts, paraphrases, both) of each model with a text side."""
    k = report["k"]
    names = [n for n, r in report["results"].items() if "languages" in r]
    if not names:
        return ""
    languages = list(report["results"][names[0]]["languages"])
    lines = [
        "| language | queries | " + " | ".join(f"{n} P@{k}" for n in names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for language in languages:
        for key in (*TEXT_SETS, "all"):
            cells = []
            for name in names:
                entry = report["results"][name]["languages"].get(language, {})
                value = entry.get(f"P@{k}") if key == "all" else entry.get(key, {}).get(f"P@{k}")
                cells.append(f"{value:.3f}" if value is not None else "-")
            label = {"class_prompts": "class prompts", "paraphrases": "paraphrases"}
            lines.append(f"| {language} | {label.get(key, 'both')} | " + " | ".join(cells) + " |")
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


def title_ranks(found: np.ndarray, targets: np.ndarray) -> list[int | None]:
    """Each title query's rank (1 = first) of its own item, None when not in `found`."""
    hit = found == np.asarray(targets)[:, None]
    ranks = np.argmax(hit, axis=1) + 1
    return [int(r) if h else None for r, h in zip(ranks, hit.any(axis=1), strict=True)]


def title_examples(
    report: dict[str, Any], model: str = "model", other: str = "keywords-bm25", count: int = 5
) -> str:
    """Titles one side finds first and the other misses in its top 10, both ways: where
    embeddings win and where keywords win, as a table (empty without title queries)."""
    titles = report.get("title_queries") or {}
    ranks = titles.get("ranks", {})
    if model not in ranks or other not in ranks:
        return ""

    def shown(rank: int | None) -> str:
        return str(rank) if rank is not None else f"> {TITLE_DEPTH}"

    lines = [
        f"| winner | title query | {model} rank | {other} rank |",
        "|---|---|---|---|",
    ]
    pairs = list(zip(titles["queries"], ranks[model], ranks[other], strict=True))
    for winner, first, second in ((model, 1, 2), (other, 2, 1)):
        wins = [
            row for row in pairs if row[first] == 1 and (row[second] is None or row[second] > 10)
        ]
        lines += [
            f"| {winner} ({len(wins)} titles) | {query} | {shown(a)} | {shown(b)} |"
            for query, a, b in wins[:count]
        ]
    return "\n".join(lines)


def _model_view(name: str, encoder: Encoder) -> _View:
    return _View(name, encoder.preprocess, encoder.encode_pixels, encoder.encode_texts, "ip")


def _split_items(
    items: Sequence[ItemSpec], source: str | Path, split: str | None, limit: int | None
) -> list[ItemSpec]:
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


def _gallery_items(
    items: Sequence[ItemSpec], split: str | None, limit: int | None
) -> list[ItemSpec]:
    if not split:
        return []
    chosen = [item for item in items if str(item.attributes.get("split")) == split]
    return chosen[:limit] if limit is not None else chosen


def _known(queries: dict[str, str], categories: Sequence[str]) -> dict[str, str]:
    return {text: category for text, category in queries.items() if category in categories}


def _encode_store(encode: Callable[[np.ndarray], np.ndarray], store: ImageStore) -> np.ndarray:
    chunks = [encode(store.get(chunk).numpy()) for chunk in torch.arange(len(store)).split(1024)]
    return np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=np.float32)


def _raw_pixels(image) -> np.ndarray:
    from lookalike.encode.lit import preprocess_image

    return preprocess_image(image, RAW_PIXEL_SIDE, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))


def _flatten(pixels: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(pixels.reshape(len(pixels), -1), dtype=np.float32)


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


def _gallery_metrics(
    found: np.ndarray, labels: np.ndarray, categories: Sequence[str], k: int
) -> dict[str, Any]:
    precision = precision_at_k(found, labels)
    nearest = (found[:, 0] == labels).astype(float)
    return {
        f"P@{k}": round(float(precision.mean()), 4),
        f"macro P@{k}": round(macro_mean(precision, labels), 4),
        "1-NN accuracy": round(float(nearest.mean()), 4),
        "by_class": {
            category: {
                f"P@{k}": round(float(precision[labels == i].mean()), 4),
                "1-NN accuracy": round(float(nearest[labels == i].mean()), 4),
                "queries": int((labels == i).sum()),
            }
            for i, category in enumerate(categories)
            if (labels == i).any()
        },
    }


def _text_metrics(
    encode_texts: Callable[[Sequence[str]], np.ndarray],
    texts: dict[str, str],
    vectors: np.ndarray,
    labels: np.ndarray,
    k: int,
    categories: Sequence[str],
) -> dict[str, Any]:
    names = list(categories)
    queries = list(texts)
    expected = np.asarray([names.index(texts[q]) for q in queries])
    found = retrieved_labels(knn(encode_texts(queries), vectors, k), labels)
    counts = np.bincount(labels, minlength=len(names))[expected]
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
                "top": [names[j] if j >= 0 else None for j in found[i][:5]],
            }
            for i, query in enumerate(queries)
        },
    }


def _language_metrics(
    encode_texts: Callable[[Sequence[str]], np.ndarray],
    queries: EvalQueries,
    categories: Sequence[str],
    vectors: np.ndarray,
    labels: np.ndarray,
    k: int,
) -> dict[str, Any]:
    """Per language: each query set's metrics and P@k over both sets together."""
    out: dict[str, Any] = {}
    for language, sets in queries.translations.items():
        entry: dict[str, Any] = {}
        precisions: list[float] = []
        for key in TEXT_SETS:
            texts = _known(sets.get(key, {}), categories)
            if texts:
                entry[key] = _text_metrics(encode_texts, texts, vectors, labels, k, categories)
                precisions += [q[f"P@{k}"] for q in entry[key]["queries"].values()]
        if precisions:
            entry[f"P@{k}"] = round(float(np.mean(precisions)), 4)
            out[language] = entry
    return out


@dataclass
class _GallerySearch:
    """Held-out images (and titles) searched against the gallery, per view."""

    catalog: list[ItemSpec]  # gallery items that loaded, then the held-out items
    size: int  # how many of `catalog` are gallery items
    images: dict[str, RunningTopK]
    titles: dict[str, RunningTopK]
    title_texts: list[str]
    title_targets: np.ndarray  # catalog row of each title query's own item
    distinct: np.ndarray  # title queries whose title no other catalog item has

    def labels(self, categories: Sequence[str]) -> np.ndarray:
        index = {c: i for i, c in enumerate(categories)}
        # A gallery category the held-out split lacks can never match a query: -2.
        return np.asarray([index.get(str(i.category), -2) for i in self.catalog[: self.size]])


def _search_gallery(
    gallery: list[ItemSpec],
    held: list[ItemSpec],
    views: list[_View],
    held_out: dict[str, np.ndarray],
    titles: bool,
    k: int,
    fetcher: Fetcher,
    limits: ImageLimits,
    settings: Settings,
    progress: bool,
) -> _GallerySearch:
    """Decode the gallery once, chunk by chunk; every view encodes each chunk and every
    search of that view takes it in. Nothing of the gallery is kept but top-k rows."""
    title_rows = [i for i, item in enumerate(held) if _title(item)] if titles else []
    title_texts = [_title(held[i]) for i in title_rows]
    images = {v.name: RunningTopK(held_out[v.name], k, v.metric) for v in views}
    texts = {
        v.name: RunningTopK(v.encode_texts(title_texts), TITLE_DEPTH, v.metric)
        for v in views
        if v.encode_texts is not None and title_texts
    }
    kept: list[ItemSpec] = []
    bar = tqdm(total=len(gallery), desc="eval gallery", unit="img", disable=not progress)
    with bar:
        for chunk in _chunks(gallery, GALLERY_CHUNK):
            loaded = load_images(chunk, fetcher, limits, settings.ingest_workers)
            pictures = [image for image in loaded if not isinstance(image, BadRow)]
            offset = len(kept)
            kept += [
                item
                for item, image in zip(chunk, loaded, strict=True)
                if not isinstance(image, BadRow)
            ]
            if pictures:
                for view in views:
                    vectors = view.encode_pixels(np.stack([view.preprocess(p) for p in pictures]))
                    images[view.name].add(vectors, offset)
                    if view.name in texts:
                        texts[view.name].add(vectors, offset)
            bar.update(len(chunk))
    size = len(kept)
    for name, search in texts.items():  # the held-out items are in the catalog too
        search.add(held_out[name], size)
    catalog = kept + list(held)
    targets = np.asarray([size + i for i in title_rows], dtype=np.int64)
    counts = Counter(_title(item).casefold() for item in catalog if _title(item))
    distinct = np.asarray([counts[t.casefold()] == 1 for t in title_texts], dtype=bool)
    return _GallerySearch(catalog, size, images, texts, title_texts, targets, distinct)


def _chunks(items: list[ItemSpec], size: int) -> Iterator[list[ItemSpec]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _title(item: ItemSpec) -> str:
    return " ".join(str(item.title or "").split())


def _keyword_text(item: ItemSpec) -> str:
    """What a shop's keyword search indexes, without the title (the title is the query)."""
    keywords = item.attributes.get("keywords") or []
    if isinstance(keywords, str):
        keywords = [keywords]
    description = str(item.attributes.get("description") or "")
    return " ".join([*map(str, keywords), description])


def _title_metrics(
    found: np.ndarray, targets: np.ndarray, subsets: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Recall@1/5/10 and MRR of each title query finding its own item: over all queries
    and over each subset (bool masks over the queries)."""

    def summary(rows: np.ndarray) -> dict[str, Any]:
        if not rows.any():
            return {"queries": 0}
        hits, wanted = found[rows], targets[rows]
        return {
            "queries": int(rows.sum()),
            **{f"R@{n}": round(float(hit_at_k(hits, wanted, n).mean()), 4) for n in (1, 5, 10)},
            "MRR": round(float(reciprocal_rank(hits, wanted).mean()), 4),
        }

    every = np.ones(len(targets), dtype=bool)
    parts = {name: summary(rows) for name, rows in subsets.items()}
    return {"all": summary(every), **parts, "depth": TITLE_DEPTH}
