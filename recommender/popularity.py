"""What the crowd does: smoothed click-through, trending scores and co-reads. Pure.

Everything here is computed from the event log the product itself records (impressions,
clicks, reads); nothing is learned from outside data. No I/O: the caller passes events.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from recommender.profile import Event


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
    imps: dict[int, set[str]] = defaultdict(set)
    clicks: dict[int, set[str]] = defaultdict(set)
    for e in events:
        if e.type == "impression":
            imps[e.story_id].add(e.reader)
        else:
            clicks[e.story_id].add(e.reader)
    return {
        s: Counts(len(imps.get(s, ())), len(clicks.get(s, ())))
        for s in sorted(set(imps) | set(clicks))
    }


def ctr_table(counts: Mapping[int, Counts], *, prior_strength: float = 20.0) -> dict[int, float]:
    """Smoothed CTR per story, the prior being the global CTR of stories with impressions."""
    imps = sum(c.impressions for c in counts.values())
    clicks = sum(min(c.clicks, c.impressions) for c in counts.values())
    prior = clicks / imps if imps else 0.05
    prior = min(max(prior, 1e-3), 0.5)
    return {
        s: smoothed_ctr(c.clicks, c.impressions, prior_ctr=prior, prior_strength=prior_strength)
        for s, c in counts.items()
    }


def trending_scores(
    events: Iterable[Event], *, now: datetime, half_life_h: float = 6.0
) -> dict[int, float]:
    """Decayed count of readers who clicked or read each story, as of `now`.

    One reader counts once per story (their latest positive event), so a reader refreshing a page
    cannot make a story trend. Events after `now` are not known yet and are ignored.
    """
    latest: dict[tuple[int, str], datetime] = {}
    for e in events:
        if e.type == "impression" or e.at > now:
            continue
        key = (e.story_id, e.reader)
        if key not in latest or e.at > latest[key]:
            latest[key] = e.at
    half_life_s = half_life_h * 3600.0
    out: dict[int, float] = defaultdict(float)
    for (sid, _), at in latest.items():
        out[sid] += 0.5 ** ((now - at).total_seconds() / half_life_s)
    return dict(out)


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


def co_read_from_events(
    events: Iterable[Event], *, window: int = 10, max_neighbors: int | None = 200
) -> CoRead:
    index = CoRead(window=window, max_neighbors=max_neighbors)
    for _, history in sorted(reading_histories(events).items()):
        index.add_history(history)
    index.prune()
    return index


def co_read_scores(
    history: Sequence[int], index: CoRead, *, recency_tau: float = 3.0
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
