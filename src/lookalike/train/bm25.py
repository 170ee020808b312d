"""Okapi BM25 keyword search: the baseline a shop's search box already has.

`lookalike eval` ranks catalog items for text queries with it, beside the embedding models.
Standard Okapi BM25 (Robertson et al.; k1 = 1.5, b = 0.75, the Lucene idf
log(1 + (N - df + 0.5) / (df + 0.5)), which is never negative). Text is case-folded and
split into runs of letters and digits (`\\w+`, any script); nothing is stemmed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

WORDS = re.compile(r"\w+")


def tokens(text: str) -> list[str]:
    return WORDS.findall(text.casefold())


class BM25:
    """An index of documents; `scores`/`top` rank them for a query."""

    def __init__(self, documents: Sequence[str], *, k1: float = 1.5, b: float = 0.75) -> None:
        self.k1 = k1
        self.b = b
        self.count = len(documents)
        counted = [Counter(tokens(doc)) for doc in documents]
        lengths = np.asarray([sum(c.values()) for c in counted], dtype=np.float64)
        average = lengths.mean() if len(lengths) and lengths.mean() > 0 else 1.0
        # Per term: the documents holding it and its frequency in each (postings).
        postings: dict[str, tuple[list[int], list[int]]] = {}
        for row, counts in enumerate(counted):
            for term, frequency in counts.items():
                docs, freqs = postings.setdefault(term, ([], []))
                docs.append(row)
                freqs.append(frequency)
        self._norm = k1 * (1 - b + b * lengths / average)
        self._postings = {
            term: (np.asarray(docs), np.asarray(freqs, dtype=np.float64))
            for term, (docs, freqs) in postings.items()
        }

    def idf(self, term: str) -> float:
        df = len(self._postings[term][0]) if term in self._postings else 0
        return float(np.log1p((self.count - df + 0.5) / (df + 0.5)))

    def scores(self, query: str) -> np.ndarray:
        """(documents,) BM25 score of each document; a repeated query word counts again."""
        out = np.zeros(self.count, dtype=np.float64)
        for term in tokens(query):
            if term not in self._postings:
                continue
            docs, freqs = self._postings[term]
            out[docs] += self.idf(term) * freqs * (self.k1 + 1) / (freqs + self._norm[docs])
        return out

    def top(self, queries: Sequence[str], k: int) -> np.ndarray:
        """(Q, k) document rows by descending score; documents that share no word with the
        query are not results (-1), as a keyword search returns nothing for them."""
        found = np.full((len(queries), k), -1, dtype=np.int64)
        for row, query in enumerate(queries):
            scores = self.scores(query)
            matching = np.flatnonzero(scores > 0)
            # Stable: equal scores keep catalog order, so ties do not depend on the sort.
            order = matching[np.argsort(-scores[matching], kind="stable")][:k]
            found[row, : len(order)] = order
        return found
