"""TF-IDF over word 1-2 grams with sublinear term frequency, computed without scikit-learn.

It is scikit-learn's ``TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)`` (lowercase,
tokens of two or more word characters, smoothed idf, L2-normalised rows) written out for the
topic_fit criterion, whose vocabulary is the 86 topic references: importing scikit-learn (and
the parts of SciPy it loads) takes about 1.5 s, longer than a one-partition validation. The
arithmetic follows scikit-learn's step by step in float64 (tested equal to it, element for
element), so the verdicts do not change.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np

TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token_pattern


def terms(text: str) -> list[str]:
    """Unigrams, then bigrams joined by a space, of the lowercased text."""
    tokens = TOKEN.findall(text.lower())
    return tokens + [f"{a} {b}" for a, b in zip(tokens, tokens[1:])]


class Tfidf:
    """Fitted on ``documents``: a sorted vocabulary and each term's smoothed idf."""

    def __init__(self, documents: list[str]):
        counts = [Counter(terms(d)) for d in documents]
        first_seen: dict[str, int] = {}
        for c in counts:
            for t in c:
                first_seen.setdefault(t, len(first_seen))
        self.vocabulary = {t: i for i, t in enumerate(sorted(first_seen))}
        df = np.zeros(len(self.vocabulary), dtype=np.int64)
        for c in counts:
            df[[self.vocabulary[t] for t in c]] += 1
        n = len(documents) + 1  # smooth_idf: one document holding every term, so no division by zero
        self.idf = np.log(float(n) / (df + 1).astype(np.float64)) + 1
        # scikit-learn numbers the fitted documents' terms as first seen, then renames them to
        # sorted order without re-sorting each row: their norms sum in first-seen order
        self._fitted = self._rows(counts, first_seen)

    def _rows(self, counts: list[Counter], sum_order: dict[str, int] | None = None) -> np.ndarray:
        out = np.zeros((len(counts), len(self.vocabulary)), dtype=np.float64)
        for row, c in enumerate(counts):
            known = [(t, n) for t, n in c.items() if t in self.vocabulary]
            if not known:
                continue
            known.sort(key=lambda tn: (sum_order or self.vocabulary)[tn[0]])
            columns = np.array([self.vocabulary[t] for t, _ in known], dtype=np.int64)
            values = np.log(np.array([n for _, n in known], dtype=np.float64)) + 1  # sublinear tf
            values *= self.idf[columns]
            total = 0.0
            for v in values:  # one term at a time in the row's order, as scikit-learn's row normalisation sums
                total += v * v
            if total:
                values /= np.sqrt(total)
            out[row, columns] = values
        return out

    def fitted(self) -> np.ndarray:
        """The fitted documents' rows (documents x vocabulary)."""
        return self._fitted

    def transform(self, texts: list[str]) -> np.ndarray:
        """Rows of new texts over the fitted vocabulary; unknown terms are ignored."""
        return self._rows([Counter(terms(t)) for t in texts])
