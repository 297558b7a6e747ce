"""What the crowd does: smoothed click-through, trending scores and co-reads. Pure.

Everything here is computed from the event log the product itself records (impressions,
clicks, reads); nothing is learned from outside data. No I/O: the caller passes events.

The crowd is counted over columns (`EventColumns`: one array per field), not over an object
per event: the API recounts the last 30 days every few seconds under feed traffic, in a thread
that holds the GIL the API's requests need. At 200k events of 10k readers (the feed
benchmark's data) an object per event and dicts of dicts took 2.3-2.8 s of CPU per recount,
columns 0.5-0.6 s (the store hands them over as columns), the same counts (co-reads pruned exactly, see `co_read_columns`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import numpy as np

from recommender.profile import Event


@dataclass(frozen=True)
class EventColumns:
    """Events as parallel arrays, one entry per event."""

    readers: np.ndarray  # int64 code per reader (only equality means anything)
    stories: np.ndarray  # int64 story id
    at: np.ndarray  # float64 seconds since the epoch
    positive: np.ndarray  # bool: a click or a read, not an impression

    def __len__(self) -> int:
        return len(self.stories)

    def without(self, stories: Collection[int]) -> EventColumns:
        """These events but those of `stories`."""
        if not stories:
            return self
        keep = ~np.isin(self.stories, np.fromiter(stories, np.int64, len(stories)))
        return EventColumns(self.readers[keep], self.stories[keep], self.at[keep], self.positive[keep])


def _epoch(at: datetime) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()  # naive = UTC, as stored


def event_columns(readers: Sequence[str], story_ids: Sequence[int], at_s: Sequence[float],
                  types: Sequence[str]) -> EventColumns:
    """Columns of events given field by field (as `Store.recent_events` returns them), times
    in seconds since the epoch."""
    codes: dict[str, int] = {}
    return EventColumns(
        readers=np.fromiter((codes.setdefault(r, len(codes)) for r in readers), np.int64, len(readers)),
        stories=np.asarray(story_ids, dtype=np.int64),
        at=np.asarray(at_s, dtype=np.float64),
        positive=np.asarray(types, dtype=object) != "impression",
    )


def columns_of(events: Iterable[Event]) -> EventColumns:
    events = list(events)
    return event_columns([e.reader for e in events], [e.story_id for e in events],
                         [_epoch(e.at) for e in events], [e.type for e in events])


def _pair_keys(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """One int64 per (a, b) pair, equal where the pairs are equal and ordered as they are."""
    _, a_codes = np.unique(a, return_inverse=True)
    b_values, b_codes = np.unique(b, return_inverse=True)
    return a_codes.astype(np.int64) * len(b_values) + b_codes


def smoothed_ctr(clicks: float, impressions: float, *, prior_ctr: float, prior_strength: float) -> float:
    """Bayesian average of clicks over impressions (a Beta(a, b) prior with mean `prior_ctr` and
    a + b = `prior_strength`), so one click out of one impression is not a 100 % hit."""
    a = prior_ctr * prior_strength
    return (clicks + a) / (max(impressions, clicks) + prior_strength)


@dataclass(frozen=True)
class Counts:
    impressions: int = 0
    clicks: int = 0  # clicks and reads: a read we were told about is a click we did not see


def count_events(events: Iterable[Event]) -> dict[int, Counts]:
    """Impressions and clicks per story, each reader counted once per story and kind."""
    return count_columns(columns_of(events))


def count_columns(cols: EventColumns) -> dict[int, Counts]:
    """`count_events` over columns, by story id in ascending order."""
    if not len(cols):
        return {}
    # One key per (story, reader, kind); each distinct key is one reader counted once.
    keys = _pair_keys(cols.stories * 2 + cols.positive, cols.readers)
    _, first = np.unique(keys, return_index=True)
    stories, kinds = cols.stories[first], cols.positive[first]
    ids, at = np.unique(stories, return_inverse=True)
    clicks = np.bincount(at, weights=kinds, minlength=len(ids)).astype(np.int64)
    imps = np.bincount(at, minlength=len(ids)) - clicks
    return {s: Counts(i, c) for s, i, c in zip(ids.tolist(), imps.tolist(), clicks.tolist(), strict=True)}


def ctr_prior(counts: Mapping[int, Counts]) -> float:
    """The click-through of a story we know nothing about: the global CTR of stories with
    impressions (a story's clicks past its impressions not counted), 0.05 without any,
    within 0.001..0.5. `ctr_table` smooths toward it, and the ranking measures a story's CTR
    against it (feed.FeedParams.ctr_prior)."""
    imps = sum(c.impressions for c in counts.values())
    clicks = sum(min(c.clicks, c.impressions) for c in counts.values())
    prior = clicks / imps if imps else 0.05
    return min(max(prior, 1e-3), 0.5)


def ctr_table(counts: Mapping[int, Counts], *, prior_strength: float = 20.0,
              prior: float | None = None) -> dict[int, float]:
    """Smoothed CTR per story, toward `prior` (default: `ctr_prior` of `counts`)."""
    prior = ctr_prior(counts) if prior is None else prior
    return {
        s: smoothed_ctr(c.clicks, c.impressions, prior_ctr=prior, prior_strength=prior_strength)
        for s, c in counts.items()
    }


def trending_prior(trending_head: Iterable[float]) -> float:
    """The trending a story the crowd reads lately has: the median of the head of trending (the
    scores of the stories most read lately), 0 without any. What a new story close to a
    reader's interest is credited with before the crowd has had the chance to read it
    (feed.FeedParams.trending_prior). The median, not the mean: one story read by every reader
    would lift every new story to half its score."""
    scores = [v for v in trending_head if v > 0]
    return float(np.median(scores)) if scores else 0.0


def trending_scores(
    events: Iterable[Event], *, now: datetime, half_life_h: float = 6.0
) -> dict[int, float]:
    """Decayed count of readers who clicked or read each story, as of `now`.

    One reader counts once per story (their latest positive event), so a reader refreshing a page
    cannot make a story trend. Events after `now` are not known yet and are ignored.
    """
    return trending_columns(columns_of(events), now=now, half_life_h=half_life_h)


def trending_columns(cols: EventColumns, *, now: datetime, half_life_h: float = 6.0) -> dict[int, float]:
    """`trending_scores` over columns, by story id in ascending order."""
    now_s = _epoch(now)
    keep = cols.positive & (cols.at <= now_s)
    stories, readers, at = cols.stories[keep], cols.readers[keep], cols.at[keep]
    if not len(stories):
        return {}
    order = np.lexsort((at, readers, stories))  # each (story, reader) run ends with its latest
    stories, readers, at = stories[order], readers[order], at[order]
    last = np.ones(len(stories), dtype=bool)
    last[:-1] = (stories[1:] != stories[:-1]) | (readers[1:] != readers[:-1])
    ids, where = np.unique(stories[last], return_inverse=True)
    decayed = 0.5 ** ((now_s - at[last]) / (half_life_h * 3600.0))
    return dict(zip(ids.tolist(), np.bincount(where, weights=decayed).tolist(), strict=True))


def copies_counted(cols: EventColumns, copies: Mapping[int, Sequence[int]], *, now: datetime,
                   half_life_h: float = 6.0) -> tuple[dict[int, float], dict[int, Counts]]:
    """The trending and counts of each story in `copies` ({story: its copies' ids, itself
    included}: feed.copy_sets) over the events of all its copies, each reader counted once:
    a reader of two copies is one reader of the story, and a reader shown both one impression,
    so its click-through is its copies' clicks over their impressions. Summed copy by copy, a
    reader counted twice. Each set is counted once, however many of its copies share it:
    the events of its copies are gathered under one code (a copy in two sets, whose copies
    are not all each other's, has its events gathered twice) and counted as a story is."""
    if not copies or not len(cols):
        return {}, {}
    sets: dict[tuple[int, ...], int] = {}
    code_of = {s: sets.setdefault(tuple(sorted(same)), len(sets)) for s, same in copies.items()}
    members = np.fromiter((m for same in sets for m in same), np.int64)
    codes = np.repeat(np.arange(len(sets), dtype=np.int64), [len(same) for same in sets])
    order = np.flatnonzero(np.isin(cols.stories, members))  # the copies' events, a few
    order = order[np.argsort(cols.stories[order], kind="stable")]
    lo = np.searchsorted(cols.stories[order], members, side="left")
    hi = np.searchsorted(cols.stories[order], members, side="right")
    n = hi - lo
    # The events of each (set, copy): runs lo..hi of `order`, one index array for them all.
    starts = np.repeat(lo - np.concatenate([[0], np.cumsum(n)[:-1]]), n)
    rows = order[np.arange(int(n.sum())) + starts]
    gathered = EventColumns(cols.readers[rows], np.repeat(codes, n), cols.at[rows], cols.positive[rows])
    trend = trending_columns(gathered, now=now, half_life_h=half_life_h)
    counts = count_columns(gathered)
    return ({s: trend.get(g, 0.0) for s, g in code_of.items()},
            {s: counts.get(g, Counts()) for s, g in code_of.items()})


def reading_histories(events: Iterable[Event]) -> dict[str, list[int]]:
    """Each reader's positively engaged stories in time order, each story once (first read)."""
    per: dict[str, list[tuple[datetime, int]]] = defaultdict(list)
    for e in events:
        if e.type != "impression":
            per[e.reader].append((e.at, e.story_id))
    out: dict[str, list[int]] = {}
    for reader, pairs in per.items():
        seen: set[int] = set()
        seq = []
        for _, sid in sorted(pairs):
            if sid not in seen:
                seen.add(sid)
                seq.append(sid)
        out[reader] = seq
    return out


class CoRead:
    """Directed item-to-item counts: readers who read X and then, within their next `window`
    reads, read Y. Order matters: it is what makes "read X, now read Y" predictive (next-read
    tests on MIND: sequential co-reads beat symmetric ones, see evaluate_feed).

    Memory is bounded by `max_neighbors` per story (the weakest links are dropped by `prune`,
    which `add_history` calls whenever a row grows past twice the bound).
    """

    def __init__(self, window: int = 10, max_neighbors: int | None = 200):
        self.window = window
        self.max_neighbors = max_neighbors
        self._next: dict[int, dict[int, float]] = defaultdict(dict)

    def add_history(self, history: Sequence[int], sign: float = 1.0) -> None:
        """Count one reader's ordered history; `sign=-1` takes a history back out (leave-one-out
        evaluation; only exact when nothing was pruned)."""
        for i, x in enumerate(history):
            row = self._next[x]
            for y in history[i + 1 : i + 1 + self.window]:
                if y == x:
                    continue
                v = row.get(y, 0.0) + sign
                if v > 0:
                    row[y] = v
                else:
                    row.pop(y, None)
            if self.max_neighbors and len(row) > 2 * self.max_neighbors:
                self._prune_row(x)

    def prune(self) -> None:
        if self.max_neighbors:
            for x in list(self._next):
                self._prune_row(x)

    def _prune_row(self, x: int) -> None:
        row = self._next[x]
        keep = sorted(row.items(), key=lambda kv: (-kv[1], kv[0]))[: self.max_neighbors]
        self._next[x] = dict(keep)

    def neighbors(self, x: int) -> Mapping[int, float]:
        return self._next.get(x, {})

    def __len__(self) -> int:
        return sum(len(r) for r in self._next.values())


class Neighbors(Protocol):
    def neighbors(self, x: int) -> Mapping[int, float]: ...


class CoReadTable:
    """`CoRead`'s counts frozen into arrays (each story's neighbours a run of `_ys`, strongest
    first): what the crowd keeps, ~20 bytes a link where a dict of dicts took ~100."""

    def __init__(self, rows: dict[int, tuple[int, int]], ys: np.ndarray, counts: np.ndarray):
        self._rows = rows
        self._ys = ys
        self._counts = counts

    def neighbors(self, x: int) -> Mapping[int, float]:
        span = self._rows.get(x)
        if span is None:
            return {}
        a, b = span
        return dict(zip(self._ys[a:b].tolist(), self._counts[a:b].tolist(), strict=True))

    def __len__(self) -> int:
        return len(self._ys)


def co_read_from_events(
    events: Iterable[Event], *, window: int = 10, max_neighbors: int | None = 200
) -> CoReadTable:
    return co_read_columns(columns_of(events), window=window, max_neighbors=max_neighbors)


def co_read_columns(cols: EventColumns, *, window: int = 10,
                    max_neighbors: int | None = 200) -> CoReadTable:
    """What `CoRead.add_history` counts over every reader's `reading_histories`, each story's
    neighbours cut to its `max_neighbors` strongest (ties: lower id first) once all is counted.
    (`CoRead` prunes a row while counting whenever it passes twice the bound, so its weaker
    links depend on the order readers come in; this cut does not.)"""
    keep = cols.positive
    stories, readers, at = cols.stories[keep], cols.readers[keep], cols.at[keep]
    order = np.lexsort((stories, at, readers))  # each reader's reads in time order
    stories, readers = stories[order], readers[order]
    keys = _pair_keys(readers, stories)
    _, first = np.unique(keys, return_index=True)  # a story counts at its first read
    first.sort()
    stories, readers = stories[first], readers[first]
    ids, codes = np.unique(stories, return_inverse=True)
    xs, ys = [], []
    for d in range(1, window + 1):  # the pairs (h[i], h[i + d]) of every history at once
        same = readers[d:] == readers[:-d]
        xs.append(codes[:-d][same])
        ys.append(codes[d:][same])
    n = max(len(ids), 1)
    pairs, counts = np.unique(np.concatenate(xs or [codes[:0]]) * n + np.concatenate(ys or [codes[:0]]),
                              return_counts=True)
    x, y = np.divmod(pairs, n)
    # Per story, strongest first; a stable sort keeps ties in the unique's order (lower id
    # first). One int64 key: a three-key lexsort of ~2M links took 0.25 s.
    top = int(counts.max()) if len(counts) else 0
    order = np.argsort(x * (top + 1) + (top - counts), kind="stable")
    x, y, counts = x[order], y[order], counts[order]
    starts = np.flatnonzero(np.diff(x, prepend=-1))
    if max_neighbors:
        rank = np.arange(len(x)) - np.repeat(starts, np.diff(np.append(starts, len(x))))
        kept = rank < max_neighbors
        x, y, counts = x[kept], y[kept], counts[kept]
        starts = np.flatnonzero(np.diff(x, prepend=-1))
    ends = np.append(starts[1:], len(x))[:len(starts)]
    rows = dict(zip(ids[x[starts]].tolist(), zip(starts.tolist(), ends.tolist(), strict=True),
                    strict=True))
    return CoReadTable(rows, ids[y], counts.astype(np.float64))


def co_read_scores(
    history: Sequence[int], index: Neighbors, *, recency_tau: float = 3.0
) -> dict[int, tuple[float, int]]:
    """Score of each story that readers read after the reader's own reads: sum over the reader's
    history of count(h -> y), weighted towards the most recent reads (exp(-age_in_reads/tau)).

    Returns {story: (score, anchor)} where anchor is the history story that contributed most
    ("readers of <anchor> also read this").
    """
    out: dict[int, float] = defaultdict(float)
    best: dict[int, tuple[float, int]] = {}
    n = len(history)
    for i, x in enumerate(history):
        w = math.exp(-(n - 1 - i) / recency_tau)
        for y, c in index.neighbors(x).items():
            v = w * c
            out[y] += v
            if y not in best or v > best[y][0]:
                best[y] = (v, x)
    own = set(history)
    return {y: (s, best[y][1]) for y, s in out.items() if y not in own}
