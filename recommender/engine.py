"""Gather candidates for a related block and hand them to the pure ranking.

`RelatedEngine` over-fetches from the vector index and from the lexical index (union of both),
asks `meta` for what the store knows about each candidate (title, site, dates, ...), attaches
the stored vectors, and calls `recommender.related.rank_related`. It owns no storage and does
no ranking itself: the store (through `meta`) and the ranking stay strangers.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import numpy as np

from aggregator.onethread import OneThread
from recommender.lexical import LexicalIndex
from recommender.reach import Reach, pool_floor
from recommender.related import (
    Candidate,
    Filters,
    Query,
    Ranked,
    RankParams,
    copies_under_title,
    rank_related,
)


@dataclass(eq=False)
class CandidateMeta:
    """What the store says about a candidate story; everything but the retrieval scores.
    Not frozen, as `Candidate` (one per candidate per block)."""

    title: str
    summary: str = ""
    url: str = ""
    site: str = ""
    source: str = ""
    category: str = ""
    published_at: datetime | None = None
    source_weight: float = 1.0
    duplicate_of: int | None = None
    content_hash: str = ""
    image_url: str = ""
    key_terms: tuple[str, ...] = ()


_DENSE = OneThread("tidings-dense")


def _beside(fn: Callable[..., Any], *args: Any) -> Future:
    """Run `fn(*args)` on this process's worker thread while the caller goes on.

    For the vector search beside the lexical one: FAISS releases the GIL, so on two cores a
    block waits for the slower search instead of both (1M synthetic stories: 7.6 -> 5.6 ms
    p50 for the two). One worker per process, started on first use.
    """
    return _DENSE.submit(fn, *args)


MetaLookup = Callable[[list[int]], Mapping[int, "CandidateMeta | Mapping[str, Any]"]]
_META_FIELDS = {f.name for f in fields(CandidateMeta)}


class RelatedEngine:
    """Candidates from both indexes -> `rank_related`.

    `overfetch * k + overfetch_extra` candidates are asked from each index (gorse does the
    same: over-fetch, filter, cut to k); when filters leave fewer than k, the fetch is
    widened up to `max_fetch`. 60 each for a block of 5: the ranking scores in full only the
    best 60 of the union (`_POOL_PER_K`), and asking 100 each gave the same ECB+ and BBC
    figures to the fourth decimal while every candidate costs metadata, a vector and a score
    (40 each cost BBC politics 0.004; recommender/evaluate.py).
    """

    def __init__(
        self,
        vindex: Any,
        lexical: LexicalIndex,
        meta: MetaLookup,
        params: RankParams | None = None,
        overfetch: int = 6,
        overfetch_extra: int = 30,
        max_fetch: int = 2000,
    ):
        self.vindex = vindex
        self.lexical = lexical
        self.meta = meta
        self.params = params or RankParams()
        self.overfetch = overfetch
        self.overfetch_extra = overfetch_extra
        self.max_fetch = max_fetch

    def related(
        self,
        query: Query,
        *,
        k: int = 5,
        filters: Filters | None = None,
        now: datetime | None = None,
        params: RankParams | None = None,
    ) -> list[Ranked]:
        return self.related_with_reach(query, k=k, filters=filters, now=now, params=params)[0]

    def related_with_reach(
        self,
        query: Query,
        *,
        k: int = 5,
        filters: Filters | None = None,
        now: datetime | None = None,
        params: RankParams | None = None,
        copy_sites: Mapping[int, tuple[str, ...]] | None = None,
    ) -> tuple[list[Ranked], Reach]:
        """The block, and the reach of the pool it was ranked from (what later stories would
        have to score to change it: recommender/reach.py). `copy_sites`: the sites of stored
        stories' word-for-word copies (no index holds them), for the site filters."""
        if k <= 0:  # an empty block: nothing changes it
            return [], Reach(vector=None, dense_floor=math.inf, lexical_floor=math.inf,
                             pool=(), title="", text="")
        filters = filters or Filters()
        params = params or self.params
        n = self.overfetch * k + self.overfetch_extra
        narrowing = filters != Filters()
        while True:
            candidates, dense, lexical = self._pool(query, n)
            for cand in candidates if copy_sites else ():
                cand.copy_sites = copy_sites.get(cand.id, ())
            ranked = rank_related(
                query, candidates, k=k, params=params, now=now, filters=filters,
                # Names from the text the lexical index read, richer than title + summary.
                term_idf=self.lexical.idf_table(), terms_of=self.lexical.key_terms_of,
                common_word=self.lexical.common_word,  # kept out of the reasons
            )
            total = max(len(self.vindex), len(self.lexical))
            # Short of k because filters dropped candidates, or because the article's own
            # republished copies filled the fetch (sixty of them left a block of none): ask
            # for more, as far as `max_fetch`. Not every short block: with that, the related
            # flow at 1M synthetic stories measured 12.2 ms in-process p50 against 7.95 before
            # (rerun at 93d9f95, docs/benchmarks.md).
            if len(ranked) >= k or n >= total or n >= self.max_fetch or (
                    not narrowing and copies_under_title(query, candidates) == 0):
                return ranked, self._reach(query, candidates, dense, lexical, n)
            n = min(n * 4, self.max_fetch)

    @staticmethod
    def _reach(query: Query, candidates: list[Candidate], dense: dict[int, float],
               lexical: dict[int, float], n: int) -> Reach:
        # The pool holds the article's own id and copies too: their removal or edit changes
        # what the ranking left out. Its own id also when the index did not find it (not
        # embedded yet, ranked from a vector made on the spot): its takedown must end the block.
        own = () if query.id is None else (query.id,)
        pool = [*dense, *lexical, *(c.id for c in candidates), *own, *query.same_as]
        return Reach(vector=query.vector,
                     dense_floor=pool_floor(list(dense.values()), n, -math.inf),
                     lexical_floor=pool_floor(list(lexical.values()), n, 0.0),
                     pool=pool, title=query.title, text=query.text)

    def candidates(self, query: Query, n: int) -> list[Candidate]:
        """Union of the dense and lexical top-n, with metadata and vectors attached."""
        return self._pool(query, n)[0]

    def _pool(self, query: Query, n: int
              ) -> tuple[list[Candidate], dict[int, float], dict[int, float]]:
        """`candidates`, with the dense and lexical scores they were found by."""
        searching = None
        if query.vector is not None and len(self.vindex):
            searching = _beside(self.vindex.search, query.vector, n)
        lexical = {int(i): float(s) for i, s in self.lexical.search(query.title, query.text, n)}
        dense: dict[int, float] = {}
        if searching is not None:
            dense = {int(i): float(s) for i, s in searching.result()}
        ids = list(dict.fromkeys([*dense, *lexical]))
        if query.id is not None or query.same_as:
            ids = [i for i in ids if i != query.id and i not in query.same_as]
        if not ids:
            return [], dense, lexical
        metas = self.meta(ids)
        ids = [i for i in ids if i in metas]  # deleted since indexing: skip
        vectors = self._vectors(ids)
        out = []
        for i in ids:
            m = metas[i]
            if isinstance(m, CandidateMeta):  # the common case, without a dict per candidate
                out.append(Candidate(
                    id=i, title=m.title, summary=m.summary, url=m.url, site=m.site,
                    source=m.source, category=m.category, published_at=m.published_at,
                    vector=vectors.get(i), dense_score=dense.get(i), lexical_score=lexical.get(i),
                    source_weight=m.source_weight, duplicate_of=m.duplicate_of,
                    content_hash=m.content_hash, image_url=m.image_url,
                    key_terms=m.key_terms))  # else the ranking asks terms_of if it needs them
                continue
            values = {f: v for f, v in m.items() if f in _META_FIELDS}
            out.append(
                Candidate(
                    id=i,
                    vector=vectors.get(i),
                    dense_score=dense.get(i),
                    lexical_score=lexical.get(i),
                    **{"summary": "", "url": "", "site": "", "source": "", "category": "",
                       "published_at": None, **values},
                )
            )
        return out, dense, lexical

    def _vectors(self, ids: list[int]) -> dict[int, np.ndarray]:
        if not ids or not len(self.vindex):
            return {}
        try:
            rows = self.vindex.get(np.asarray(ids, dtype=np.int64))
            return {i: rows[j] for j, i in enumerate(ids)}
        except KeyError:
            # Some lexical hits are not embedded yet: fetch the rest one by one.
            out = {}
            for i in ids:
                try:
                    out[i] = self.vindex.get(np.asarray([i], dtype=np.int64))[0]
                except KeyError:
                    continue
            return out
