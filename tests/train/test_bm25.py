"""BM25, the keyword baseline of `lookalike eval`: scores worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lookalike.train.bm25 import BM25, tokens

DOCS = ["red dress", "red red shoes", "blue dress long", ""]


def test_scores_follow_the_okapi_formula():
    # N = 4 documents, average length 2; "red" and "dress" are each in 2 documents:
    # idf = ln(1 + (4 - 2 + 0.5) / (2 + 0.5)) = ln 2. k1 = 1.5, b = 0.75.
    index = BM25(DOCS)
    assert index.idf("red") == pytest.approx(math.log(2))
    assert index.idf("absent") == pytest.approx(math.log(1 + 4.5 / 0.5))
    norm2, norm3 = 1.5 * (0.25 + 0.75 * 2 / 2), 1.5 * (0.25 + 0.75 * 3 / 2)
    expected = [
        2 * math.log(2) * 2.5 / (1 + norm2),  # one "red", one "dress", length 2
        math.log(2) * 2 * 2.5 / (2 + norm3),  # "red" twice, length 3
        math.log(2) * 2.5 / (1 + norm3),  # one "dress", length 3
        0.0,
    ]
    assert index.scores("red dress") == pytest.approx(expected)


def test_top_ranks_by_score_and_returns_nothing_without_a_shared_word():
    index = BM25(DOCS)
    assert index.top(["red dress", "green", ""], 3).tolist() == [
        [0, 1, 2],
        [-1, -1, -1],
        [-1, -1, -1],
    ]
    # Equal scores keep catalog order.
    assert BM25(["cat", "dog", "cat"]).top(["cat"], 2).tolist() == [[0, 2]]


def test_words_in_any_script_match_without_case():
    words = ["grosse", "grösse", "платье", "红色连衣裙"]
    assert tokens("Große GRÖSSE, Платье 红色连衣裙!") == words
    index = BM25(["Вечернее платье", "evening dress"])
    assert index.top(["ПЛАТЬЕ"], 2).tolist() == [[0, -1]]


def test_an_empty_catalog_finds_nothing():
    assert BM25([]).top(["red"], 2).tolist() == [[-1, -1]]
    assert BM25([]).scores("red").shape == (0,)
    assert np.all(BM25(["", ""]).scores("red") == 0)
