"""The caption bridge of `benchmarks/caption_bridge.py`: its mixing does what the docs say,
so that the figures it measured (docs/demo.md: it does not help) are the idea's, not a bug's."""

from __future__ import annotations

import numpy as np
from benchmarks.caption_bridge import Bridge

from lookalike.encode.base import l2_normalize


def _bank(seed: int = 0) -> tuple[Bridge, np.ndarray]:
    rng = np.random.default_rng(seed)
    frozen = l2_normalize(rng.normal(size=(50, 16)))
    matrix = rng.normal(size=(16, 8)).astype(np.float32)
    return Bridge(frozen, l2_normalize(frozen @ matrix)), matrix


def test_weight_zero_leaves_the_query_as_it_was() -> None:
    bridge, matrix = _bank()
    query = l2_normalize(np.random.default_rng(1).normal(size=(3, 16)))
    projected = query @ matrix
    mixed = Bridge(bridge.frozen, bridge.projected, k=8, weight=0.0).apply(query, projected)
    np.testing.assert_array_equal(mixed, l2_normalize(projected))


def test_a_query_moves_to_its_nearest_caption_projection() -> None:
    bridge, _ = _bank()
    # A query just beside caption 7 in the frozen space, whose own projection is elsewhere.
    noise = l2_normalize(np.random.default_rng(2).normal(size=(1, 16)))
    query = l2_normalize(bridge.frozen[7:8] + 0.05 * noise)
    own = l2_normalize(np.random.default_rng(3).normal(size=(1, 8)))
    target = bridge.projected[7]
    before = float(own[0] @ target)
    half = Bridge(bridge.frozen, bridge.projected, k=4, temperature=0.01, weight=0.5)
    whole = Bridge(bridge.frozen, bridge.projected, k=1, weight=1.0)
    assert float(half.apply(query, own)[0] @ target) > before + 0.1
    np.testing.assert_allclose(whole.apply(query, own)[0], target, atol=1e-6)
