"""The demo's data sets, by name: how each builds its catalog and the model recipe it trains.

    lookalike demo                          # fashion-mnist: 70,000 product photos, 10 classes
    lookalike demo --dataset openclipart    # 6,900 clip-art drawings with titles and keywords

A data set is one registry entry (`register_dataset`), so the demo's steps (catalog ->
model -> index -> example searches -> serve) are written once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lookalike.encode.text.e5 import MODEL_NAME as MULTILINGUAL_TEXT_MODEL
from lookalike.errors import ConfigError


@dataclass(frozen=True)
class Recipe:
    """How the demo trains its offline model: `lookalike train` options and text tower."""

    text_model: str = MULTILINGUAL_TEXT_MODEL
    train: dict[str, Any] = field(default_factory=dict)  # TrainConfig fields


@dataclass(frozen=True)
class BuiltCatalog:
    manifest: Path
    items: dict[str, int]  # split -> count
    written: int
    source: str
    notes: tuple[str, ...] = ()  # lines worth printing (skipped files and why)


@dataclass(frozen=True)
class DemoDataset:
    name: str
    title: str  # one line for the demo's output
    folder: str  # the catalog's folder under the demo directory
    model_folder: str
    data_folder: str  # the engine's data directory under the demo directory
    build: Callable[[Path, Path | None], BuiltCatalog]  # (catalog folder, source) -> catalog
    recipe: Recipe
    text_examples: tuple[str, ...]
    image_examples: tuple[str, ...]  # categories: one held-out image of each is a query


_DATASETS: dict[str, DemoDataset] = {}


def register_dataset(dataset: DemoDataset) -> DemoDataset:
    _DATASETS[dataset.name] = dataset
    return dataset


def dataset_names() -> list[str]:
    _register_builtins()
    return sorted(_DATASETS)


def get_dataset(name: str) -> DemoDataset:
    _register_builtins()
    if name not in _DATASETS:
        raise ConfigError(f"unknown demo data set {name!r}; known: {sorted(_DATASETS)}")
    return _DATASETS[name]


def _build_fashion(folder: Path, source: Path | None) -> BuiltCatalog:
    from lookalike.demo.fashion_mnist import build_catalog

    summary = build_catalog(folder, source)
    return BuiltCatalog(summary.manifest, summary.items, summary.written, summary.source)


def _build_openclipart(folder: Path, source: Path | None) -> BuiltCatalog:
    from lookalike.demo.openclipart import build_catalog

    summary = build_catalog(folder, source)
    notes = [f"{count} files skipped: {reason}" for reason, count in summary.skipped.items()]
    notes.append(
        f"{len(summary.categories)} categories: "
        + ", ".join(f"{name} {count}" for name, count in summary.categories.items())
    )
    return BuiltCatalog(
        summary.manifest, summary.items, summary.written, summary.source, tuple(notes)
    )


def _register_builtins() -> None:
    if _DATASETS:
        return
    from lookalike.demo import recipes

    register_dataset(
        DemoDataset(
            name="fashion-mnist",
            title="Fashion-MNIST (70,000 product photos, 10 classes)",
            folder="fashion-mnist",
            model_folder="model",
            data_folder="lookalike-data",
            build=_build_fashion,
            recipe=recipes.FASHION,
            text_examples=("a photo of a sneaker", "running shoes", "handbag"),
            image_examples=("Bag", "Sneaker", "Dress"),
        )
    )
    register_dataset(
        DemoDataset(
            name="openclipart",
            title="Open Clip Art (clip-art drawings with the titles and keywords people wrote)",
            folder="openclipart",
            model_folder="openclipart-model",
            data_folder="openclipart-data",
            build=_build_openclipart,
            recipe=recipes.OPENCLIPART,
            text_examples=("dog", "red car", "Weihnachtsbaum", "flag of France"),
            image_examples=("animals", "transportation", "food"),
        )
    )
