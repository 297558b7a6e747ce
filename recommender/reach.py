"""Which corpus changes can alter a related block already computed: selective invalidation.

A block is ranked from a candidate pool: the vector index's top n for the article's vector and
the lexical index's top n for its words (`RelatedEngine.candidates`). Everything the ranking
weighs (similarity, shared names, agreement between candidates, duplicates, diversity) is read
from that pool. So a story added later can change the block only by joining the pool, which
takes a cosine with the article at least the pool's lowest dense score, or a lexical cosine at
least its lowest lexical score; and a story removed (or edited, or re-embedded: the change log
removes and adds it again) only matters if it was in the pool.

Until now every new story threw away every cached block: with stories arriving every few
seconds, a block was served from the cache for seconds at most, and each article's block was
ranked again on nearly every view. `Reach` is what a cached block remembers of its pool, a
`Journal` what the corpus did since (kept in memory, bounded), and `untouched` the decision.

What this does not see, on purpose: a new story shifts the lexical index's idf a little, which
moves every lexical score by a hair (the floors keep a margin for it), and the clock moves
freshness. The caches also drop an entry after `MAX_AGE_S` whatever happened, which bounds
both.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from recommender.lexical import LexicalIndex

# Dense scores come from the index, which may keep vectors as float16 or 8-bit codes: a story
# is taken as joining the pool when its exact cosine is within this much of the floor.
DENSE_MARGIN = 0.02
# Lexical scores drift with the corpus's idf: within this share of the floor counts as joining.
LEXICAL_MARGIN = 0.1
# A cached block is ranked anew after this long, whatever the corpus did: freshness and the
# age filter move with the clock (hours, not minutes, change a ranking).
MAX_AGE_S = 300.0
# Stories kept in the journal (their vectors too: 6 MiB at 384 dimensions): about an hour of
# a large network's arrivals, far more than `MAX_AGE_S`. A block ranked before the oldest kept
# change is ranked anew.
JOURNAL_STORIES = 4096


class Reach:
    """What a block's candidate pool was: enough to tell whether a later story would join it.

    The query's lexical vector is computed on the first check, not when the block is ranked:
    most cached blocks are never checked (the corpus did not change before the next view), and
    the ranking's time is the related route's latency."""

    __slots__ = ("vector", "dense_floor", "lexical_floor", "pool", "title", "text", "_terms",
                 "born")

    def __init__(self, *, vector: np.ndarray | None, dense_floor: float, lexical_floor: float,
                 pool: Iterable[int], title: str, text: str, born: float | None = None):
        self.vector = vector
        self.dense_floor = dense_floor  # -inf: the index gave fewer than asked, so any joins
        self.lexical_floor = lexical_floor  # 0: fewer than asked, so any shared term joins
        # Sorted ids in an array: ~1 KiB a block where a frozenset of ~120 ids took ~8 KiB,
        # times the 2,048 blocks each cache holds.
        self.pool = np.unique(np.fromiter(pool, dtype=np.int64))
        self.title, self.text = title, text
        self._terms: dict[str, float] | None = None
        self.born = time.monotonic() if born is None else born

    def terms(self, lexical: LexicalIndex) -> dict[str, float]:
        if self._terms is None:
            self._terms = lexical.unit_vector(self.title, self.text, query=True)
        return self._terms


def widest(reaches: Sequence[Reach]) -> Reach:
    """One reach for an answer made of several rankings of one query (a search's depths,
    `search.merged`): any change that could alter one of them alters it. Their pools together,
    the lowest floors, the oldest birth."""
    if len(reaches) == 1:
        return reaches[0]
    first = reaches[0]
    return Reach(vector=first.vector, dense_floor=min(r.dense_floor for r in reaches),
                 lexical_floor=min(r.lexical_floor for r in reaches),
                 pool=np.concatenate([r.pool for r in reaches]), title=first.title,
                 text=first.text, born=min(r.born for r in reaches))


def pool_floor(scores: Sequence[float], asked: int, empty: float) -> float:
    """The lowest score a newcomer must reach to join a top-`asked` list: its last score when
    full, else `empty` (anything that scores at all joins a list that is not full)."""
    return min(scores) if len(scores) >= asked else empty


@dataclass
class Change:
    """One step of the corpus's version: stories added (with their vectors and indexed words)
    or removed. `reset`: something no journal describes (a start, a rebuild, another recipe)."""

    version: int
    added: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    vectors: np.ndarray | None = None
    texts: Sequence[tuple[str, str]] = ()  # (title, lexical text) per added story
    removed: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    reset: bool = False
    _lexical: list[dict[str, float]] | None = None

    def lexical_vectors(self, lexical: LexicalIndex) -> list[dict[str, float]]:
        """The added stories' lexical vectors, computed once for every block that asks."""
        if self._lexical is None:
            self._lexical = [lexical.unit_vector(title, text) for title, text in self.texts]
        return self._lexical


class Journal:
    """The corpus's recent changes by version, oldest first, at most `stories` added ones."""

    def __init__(self, stories: int = JOURNAL_STORIES):
        self.stories = stories
        self._changes: deque[Change] = deque()
        self._held = 0
        self._since = 0  # versions before this one are not described

    def record(self, change: Change) -> None:
        if change.reset:
            self._changes.clear()
            self._held = 0
            self._since = change.version
            return
        self._changes.append(change)
        self._held += len(change.added) + len(change.removed)
        while self._held > self.stories and self._changes:
            old = self._changes.popleft()
            self._held -= len(old.added) + len(old.removed)
            self._since = old.version

    def since(self, version: int) -> list[Change] | None:
        """The changes after `version`, or None when they are not all known."""
        if version < self._since:
            return None
        return [c for c in self._changes if c.version > version]


def untouched(reach: Reach, changes: Sequence[Change], lexical: LexicalIndex) -> bool:
    """Would the block that `reach` describes be ranked from the same pool after `changes`?"""
    for change in changes:
        if change.reset:
            return False
        if _any_in(reach.pool, change.removed):
            return False
        if not len(change.added):
            continue
        if _any_in(reach.pool, change.added):
            return False  # a pool story edited or embedded again
        if reach.vector is not None and change.vectors is not None:
            if float(np.max(change.vectors @ reach.vector)) >= reach.dense_floor - DENSE_MARGIN:
                return False
        terms = reach.terms(lexical)
        floor = reach.lexical_floor * (1.0 - LEXICAL_MARGIN)
        for doc in change.lexical_vectors(lexical):
            if _joins(terms, doc, floor):
                return False
    return True


def _any_in(pool: np.ndarray, ids: np.ndarray) -> bool:
    """Whether any of `ids` is in the sorted `pool`. Not np.isin: it costs ~27 us a call even
    on an empty array, two calls per change per lookup, and a lookup behind a busy journal
    checks dozens of changes (+0.2 ms a request in the churn benchmark)."""
    if not len(pool) or not len(ids):
        return False
    at = np.searchsorted(pool, ids).clip(max=len(pool) - 1)
    return bool(np.any(pool[at] == ids))


def _joins(query: dict[str, float], doc: dict[str, float], floor: float) -> bool:
    small, large = (query, doc) if len(query) <= len(doc) else (doc, query)
    score = 0.0
    for term, w in small.items():
        other = large.get(term)
        if other is not None:
            score += w * other
    return score > 0.0 and score >= floor


def still_good(reach: Reach | None, then: int, now: int, journal: Journal, lexical: LexicalIndex,
               clock: Callable[[], float] = time.monotonic) -> bool:
    """May a block ranked at corpus version `then` still be served at version `now`?"""
    if reach is not None and clock() - reach.born > MAX_AGE_S:
        return False
    if then == now:
        return True
    if reach is None or then > now:
        return False
    changes = journal.since(then)
    return changes is not None and untouched(reach, changes, lexical)
