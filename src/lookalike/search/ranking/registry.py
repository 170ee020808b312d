"""Rankers by name: the one place that maps `LOOKALIKE_RANKER` (or a request's `ranker`) to
an implementation, shaped like the encoder registry.

A builder gets the settings and the pipeline's `LearnedModels` (where learned rankers
load their models from). Explicit hand weights always mean the hand-weighted ranker with
those weights, whatever the default ranker is. The setting may also be the path of a
model directory; a request may only name a registered ranker (never a path on the
server).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from lookalike.config import Settings
from lookalike.errors import InvalidInput, RankerModelError
from lookalike.search.ranking.base import Ranker
from lookalike.search.ranking.features import SignalScales
from lookalike.search.ranking.hand_weighted import HandWeightedRanker, SimilarityRanker
from lookalike.search.ranking.learned import FellBack, LearnedModels, LearnedRanker
from lookalike.search.ranking.model_files import LearnedModel

RankerBuilder = Callable[[Settings, LearnedModels], Ranker]
_BUILDERS: dict[str, RankerBuilder] = {}


def register_ranker(name: str) -> Callable[[RankerBuilder], RankerBuilder]:
    """Register `builder(settings, models) -> Ranker` under `name`."""

    def decorate(builder: RankerBuilder) -> RankerBuilder:
        _BUILDERS[name] = builder
        return builder

    return decorate


def known_rankers() -> list[str]:
    return sorted(_BUILDERS)


def create_ranker(
    settings: Settings,
    name: str | None = None,
    overrides: Mapping[str, float] | None = None,
    models: LearnedModels | None = None,
) -> Ranker:
    """The ranker a request asks for (`name`, else the settings' `ranker`)."""
    if overrides:
        return HandWeightedRanker.from_settings(settings, overrides)
    models = models or LearnedModels(None)
    chosen = name or settings.ranker
    builder = _BUILDERS.get(chosen)
    if builder is not None:
        return builder(settings, models)
    if name is None and _is_path(chosen):
        return _learned(settings, lambda: models.directory(Path(chosen)))
    raise InvalidInput(f"unknown ranker {chosen!r}; known: {', '.join(known_rankers())}")


def _is_path(value: str) -> bool:
    return "/" in value or "\\" in value or value.endswith(".json")


def _learned(settings: Settings, load: Callable[[], LearnedModel]) -> Ranker:
    hand = HandWeightedRanker.from_settings(settings)
    try:
        model = load()
    except RankerModelError as exc:
        return FellBack(hand, f"learned: {exc}")
    return LearnedRanker(model, SignalScales.from_settings(settings), hand)


@register_ranker("hand")
def _hand(settings: Settings, models: LearnedModels) -> Ranker:
    return HandWeightedRanker.from_settings(settings)


@register_ranker("similarity")
def _similarity(settings: Settings, models: LearnedModels) -> Ranker:
    return SimilarityRanker(scales=SignalScales.from_settings(settings))


@register_ranker("learned")
def _promoted(settings: Settings, models: LearnedModels) -> Ranker:
    return _learned(settings, models.promoted)
