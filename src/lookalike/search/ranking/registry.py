"""Rankers by name: the one place that maps `LOOKALIKE_RANKER` (or a request's `ranker`) to
an implementation, shaped like the encoder registry.

A builder gets the settings and a request's hand-weight overrides. Explicit weights always
mean the hand-weighted ranker with those weights, whatever the default ranker is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from lookalike.config import Settings
from lookalike.errors import InvalidInput
from lookalike.search.ranking.base import Ranker
from lookalike.search.ranking.hand_weighted import HandWeightedRanker

RankerBuilder = Callable[[Settings], Ranker]
_BUILDERS: dict[str, RankerBuilder] = {}


def register_ranker(name: str) -> Callable[[RankerBuilder], RankerBuilder]:
    """Register `builder(settings) -> Ranker` under `name`."""

    def decorate(builder: RankerBuilder) -> RankerBuilder:
        _BUILDERS[name] = builder
        return builder

    return decorate


def known_rankers() -> list[str]:
    return sorted(_BUILDERS)


def create_ranker(
    settings: Settings, name: str | None = None, overrides: Mapping[str, float] | None = None
) -> Ranker:
    """The ranker a request asks for (`name`, else the settings' `ranker`)."""
    if overrides:
        return HandWeightedRanker.from_settings(settings, overrides)
    chosen = name or settings.ranker
    builder = _BUILDERS.get(chosen)
    if builder is None:
        raise InvalidInput(f"unknown ranker {chosen!r}; known: {', '.join(known_rankers())}")
    return builder(settings)


@register_ranker("hand")
def _hand(settings: Settings) -> Ranker:
    return HandWeightedRanker.from_settings(settings)
