"""Lexical match over title and text: an in-memory TF-IDF index, and the names a story is about.

`LexicalIndex` answers "which stored stories share the rare words of this one" with a cosine
score in [0, 1] (sublinear tf, smoothed idf), so it can be fused with the dense cosine without
rescaling. It is incremental: documents come and go one by one, document frequencies are exact
at every query, and the per-document norms (which depend on idf) are refreshed whenever the
corpus has grown or shrunk by a few percent since they were last computed. TF-IDF cosine was
chosen over BM25 after measuring both in the related-stories fusion (see recommender/evaluate.py).

`key_terms` pulls out what identifies an event: capitalised names and numbers. It does no I/O
and knows nothing about storage or the dense index.
"""

from __future__ import annotations

import math
import re
import sys
from collections import Counter
from collections.abc import Iterable

import numpy as np

# Frequent function words: they carry no topic and would only lengthen the postings walked.
STOPWORDS = frozenset(
    """a about above after again against all also am an and any are as at be because been before
    being below between both but by can could did do does doing down during each few for from
    further had has have having he her here hers herself him himself his how i if in into is it its
    itself just me more most my myself no nor not now of off on once only or other our ours
    ourselves out over own same she should so some such than that the their theirs them themselves
    then there these they this those through to too under until up very was we were what when where
    which while who whom why will with would you your yours yourself yourselves said says say
    told one two new year years mr mrs ms s t ll re ve d m o y n't""".split()
)

_WORD = re.compile(r"[0-9]+(?:[.,][0-9]+)*|[^\W\d_]+(?:['’][^\W\d_]+)?", re.UNICODE)
# A name: a capitalised word ("Putin", "Betty Ford Center" word by word; sentence-initial
# filler like "The" is a stopword), or a number (2013, 7.1, 30-day), both found by one regex
# scan rather than a Python loop over every word (this runs once per indexed story).
_NAME_OR_NUMBER = re.compile(r"(?<![\w'’])(?:[A-Z][\w'’.-]*|[0-9][\w.,-]*)")
_NAME_PARTS = re.compile(r"[-.,’']")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens without stopwords or possessive endings."""
    out = []
    for match in _WORD.finditer(text.lower()):
        token = match.group(0)
        if token.endswith(("'s", "’s")):
            token = token[:-2]
        if len(token) < 2 or token in STOPWORDS:
            continue
        out.append(token)
    return out


def key_terms(title: str, text: str, max_terms: int = 40) -> tuple[str, ...]:
    """Names and numbers that identify an event, lower-cased, in order of first appearance.

    Multiword names yield each of their words ("vladimir", "putin"), so "Putin" in one report
    matches "Vladimir Putin" in another. Sentence-initial capitals count only when the word is
    not a stopword; rare-word weighting (idf) downstream damps the rest of that noise.
    """
    seen: dict[str, None] = {}
    for chunk in (title, text):
        for match in _NAME_OR_NUMBER.finditer(chunk):
            word = match.group(0).rstrip(".-'’")
            if word.endswith(("'s", "’s")):
                word = word[:-2]
            lower = word.lower()
            if len(lower) < 2 or lower in STOPWORDS:
                continue
            for part in _NAME_PARTS.split(lower):
                if len(part) >= 2 and part not in STOPWORDS:
                    seen.setdefault(part, None)
            if len(seen) >= max_terms:
                return tuple(seen)
    return tuple(seen)


class _Postings:
    """Growable postings of one term: internal doc numbers and their weighted tf."""

    __slots__ = ("docs", "weights", "_arrays")

    def __init__(self) -> None:
        self.docs: list[int] = []
        self.weights: list[float] = []
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None

    def append(self, doc: int, weight: float) -> None:
        self.docs.append(doc)
        self.weights.append(weight)
        self._arrays = None

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            self._arrays = (
                np.asarray(self.docs, dtype=np.int64),
                np.asarray(self.weights, dtype=np.float32),
            )
        return self._arrays


class LexicalIndex:
    """Incremental TF-IDF cosine index over title + text.

    `title_weight` counts title words that many times (titles are dense with the topic).
    `max_query_terms` keeps only the query's heaviest terms, which bounds query time at 100k
    documents to a few ms without changing the top results (the light terms add little).
    """

    def __init__(self, title_weight: int = 2, max_query_terms: int = 128):
        self.title_weight = title_weight
        self.max_query_terms = max_query_terms
        self._postings: dict[str, _Postings] = {}
        self._df: Counter[str] = Counter()
        self._doc_terms: list[dict[str, float] | None] = []  # internal doc -> {term: tf weight}
        self._doc_id: list[int] = []  # internal doc -> external id
        self._doc_keys: list[tuple[str, ...]] = []  # internal doc -> key_terms (event names)
        self._slot: dict[int, int] = {}  # external id -> internal doc
        self._norms = np.zeros(0, dtype=np.float32)
        self._norms_at_n = -1  # corpus size when norms were computed
        self._dead = 0

    # -- bookkeeping -------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._slot)

    def __contains__(self, doc_id: int) -> bool:
        return doc_id in self._slot

    def _weights(self, title: str, text: str) -> dict[str, float]:
        counts = Counter(tokenize(text))
        for token in tokenize(title):
            counts[token] += self.title_weight
        # Sublinear tf: the tenth mention of "Putin" says little more than the third.
        return {t: 1.0 + math.log(c) for t, c in counts.items()}

    def key_terms_of(self, doc_id: int) -> tuple[str, ...]:
        """The names and numbers of an indexed document (empty for unknown ids)."""
        slot = self._slot.get(int(doc_id))
        return self._doc_keys[slot] if slot is not None else ()

    def idf(self, term: str) -> float:
        """Smoothed inverse document frequency (>= 1 for every term, also unseen ones)."""
        n = len(self._slot)
        return math.log((1.0 + n) / (1.0 + self._df.get(term, 0))) + 1.0

    def add(self, doc_id: int, title: str, text: str) -> None:
        """Index a document; re-adding an id replaces its previous text."""
        doc_id = int(doc_id)
        if doc_id in self._slot:
            self.remove(doc_id)
        weights = self._weights(title, text)
        slot = len(self._doc_terms)
        self._doc_terms.append(weights)
        self._doc_id.append(doc_id)
        self._doc_keys.append(tuple(sys.intern(t) for t in key_terms(title, text)))
        self._slot[doc_id] = slot
        for term, weight in weights.items():
            self._df[term] += 1
            postings = self._postings.get(term)
            if postings is None:
                postings = self._postings[term] = _Postings()
            postings.append(slot, weight)

    def add_many(self, docs: Iterable[tuple[int, str, str]]) -> None:
        for doc_id, title, text in docs:
            self.add(doc_id, title, text)

    def remove(self, doc_id: int) -> None:
        """Forget a document; unknown ids are ignored. Postings are compacted lazily."""
        slot = self._slot.pop(int(doc_id), None)
        if slot is None:
            return
        weights = self._doc_terms[slot]
        self._doc_terms[slot] = None
        self._doc_keys[slot] = ()
        for term in weights or ():
            self._df[term] -= 1
            if self._df[term] <= 0:
                del self._df[term]
        if slot < len(self._norms):
            self._norms[slot] = 0.0  # a zero norm scores 0: removed docs never come back
        self._dead += 1
        if self._dead > max(1000, len(self._slot) // 4):
            self._compact()

    def _compact(self) -> None:
        live = [
            (self._doc_id[s], w, self._doc_keys[s])
            for s, w in enumerate(self._doc_terms)
            if w is not None
        ]
        self._postings = {}
        self._doc_terms = []
        self._doc_id = []
        self._doc_keys = []
        self._slot = {}
        self._dead = 0
        for doc_id, weights, keys in live:
            slot = len(self._doc_terms)
            self._doc_terms.append(weights)
            self._doc_id.append(doc_id)
            self._doc_keys.append(keys)
            self._slot[doc_id] = slot
            for term, weight in weights.items():
                postings = self._postings.get(term)
                if postings is None:
                    postings = self._postings[term] = _Postings()
                postings.append(slot, weight)
        self._norms = np.zeros(0, dtype=np.float32)
        self._norms_at_n = -1

    def _refresh_norms(self) -> None:
        """Document norms under the current idf; recomputed once the corpus moved by >5 %."""
        n = len(self._slot)
        stale = self._norms_at_n < 0 or abs(n - self._norms_at_n) > 0.05 * max(self._norms_at_n, 1)
        if len(self._norms) < len(self._doc_terms):
            # New documents since the last refresh: give them norms under today's idf.
            grown = np.zeros(len(self._doc_terms), dtype=np.float32)
            grown[: len(self._norms)] = self._norms
            for slot in range(len(self._norms), len(self._doc_terms)):
                grown[slot] = self._norm(self._doc_terms[slot])
            self._norms = grown
        if stale:
            self._norms = np.array([self._norm(w) for w in self._doc_terms], dtype=np.float32)
            self._norms_at_n = n

    def _norm(self, weights: dict[str, float] | None) -> float:
        if not weights:
            return 0.0
        return math.sqrt(sum((w * self.idf(t)) ** 2 for t, w in weights.items()))

    # -- queries -----------------------------------------------------------------------------

    def search(self, title: str, text: str, k: int) -> list[tuple[int, float]]:
        """Top-k (id, cosine in [0, 1]) for a query title and text, best first."""
        if k <= 0 or not self._slot:
            return []
        query = self._weights(title, text)
        if not query:
            return []
        self._refresh_norms()
        weighted = {t: w * self.idf(t) for t, w in query.items()}
        query_norm = math.sqrt(sum(v * v for v in weighted.values()))
        terms = sorted(
            (t for t in weighted if t in self._postings), key=lambda t: -weighted[t]
        )[: self.max_query_terms]
        if not terms:
            return []
        scores = np.zeros(len(self._doc_terms), dtype=np.float64)
        for term in terms:
            docs, weights = self._postings[term].arrays()
            # Each posting contributes q_t * d_t, both weighted by idf(t).
            scores[docs] += weights * (weighted[term] * self.idf(term))
        norms = self._norms[: len(scores)].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.where(norms > 0, scores / (norms * query_norm), 0.0)
        candidates = np.flatnonzero(scores > 0)
        if len(candidates) > k:
            top = np.argpartition(-scores[candidates], k - 1)[:k]
            candidates = candidates[top]
        order = candidates[np.argsort(-scores[candidates], kind="stable")]
        return [(self._doc_id[slot], float(min(scores[slot], 1.0))) for slot in order]
