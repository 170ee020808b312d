"""Query composition: hybrid weights, means, negative directions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from lookalike.errors import InvalidInput
from lookalike.search import hybrid, mean_direction, subtract

DIM = 12
vectors = arrays(
    np.float32, DIM, elements=st.floats(-1, 1, width=32, allow_subnormal=False)
).filter(lambda v: np.linalg.norm(v) > 0.1)


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


@given(image=vectors, text=vectors)
def test_hybrid_weight_one_is_the_image_and_zero_the_text(image, text):
    np.testing.assert_allclose(hybrid(image, text, 1.0), unit(image), atol=1e-6)
    np.testing.assert_allclose(hybrid(image, text, 0.0), unit(text), atol=1e-6)


@given(image=vectors, text=vectors, weight=st.floats(0, 1))
def test_hybrid_is_the_normalised_weighted_sum(image, text, weight):
    mixed = weight * unit(image) + (1 - weight) * unit(text)
    if np.linalg.norm(mixed) < 1e-3:
        return  # opposite directions cancel: no direction to compare
    np.testing.assert_allclose(hybrid(image, text, weight), unit(mixed), atol=1e-5)


def test_hybrid_refuses_bad_weights_and_empty_queries():
    with pytest.raises(InvalidInput):
        hybrid(np.ones(DIM), np.ones(DIM), 1.5)
    with pytest.raises(InvalidInput):
        hybrid(None, None, 0.5)


@given(query=vectors, negative=vectors, weight=st.floats(0.05, 1))
def test_subtract_moves_away_from_the_negative(query, negative, weight):
    before = float(unit(query) @ unit(negative))
    if before < -0.999:
        return  # already pointing straight away from it
    # A (nearly) cancelled query is refused: see the test below.
    assume(np.linalg.norm(unit(query) - weight * unit(negative)) > 1e-3)
    shifted = subtract(query, negative, weight)
    assert np.linalg.norm(shifted) == pytest.approx(1.0, abs=1e-5)
    assert float(shifted @ unit(negative)) <= before + 1e-5


@given(query=vectors, negative=vectors)
def test_subtract_with_weight_zero_changes_nothing(query, negative):
    np.testing.assert_allclose(subtract(query, negative, 0.0), unit(query), atol=1e-6)


def test_subtract_works_row_wise_and_refuses_a_cancelled_query():
    rows = np.eye(3, dtype=np.float32)
    shifted = subtract(rows, np.array([1, 0, 0], dtype=np.float32), 0.5)
    assert shifted.shape == (3, 3)
    np.testing.assert_allclose(shifted[1], [-0.5 / np.sqrt(1.25), 1 / np.sqrt(1.25), 0], atol=1e-6)
    with pytest.raises(InvalidInput):
        subtract(rows[0], rows[0], 1.0)
    with pytest.raises(InvalidInput):
        subtract(rows[0], rows[1], 1.5)


def test_mean_direction_of_one_vector_is_itself():
    v = np.array([3.0, 4.0], dtype=np.float32)
    np.testing.assert_allclose(mean_direction(v[None, :]), [0.6, 0.8], atol=1e-6)
