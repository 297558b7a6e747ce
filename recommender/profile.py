"""Reader profiles from events: decayed interests, affinities and a session signal. Pure.

A profile is rebuilt from the reader's events (impressions, clicks, reads) whenever it is
needed; it holds no state of its own and does no I/O: the caller passes the events, a way to
look up story vectors and the stories' category and source.

Why several interest vectors: a reader of politics and pop music has a mean vector that lands
between the two, close to neither (the "average reader" problem of single-vector profiles, see
Li et al., "Multi-Interest Network with Dynamic Routing", CIKM 2019). We cluster what the reader
engaged with into up to `max_interests` groups, each weighted by its decayed mass, so the feed
can serve every interest in proportion.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import numpy as np

from aggregator.names import name_key

EventType = Literal["impression", "click", "read"]
EVENT_TYPES = ("impression", "click", "read")


@dataclass(frozen=True)
class Event:
    """One reader feedback event, as `POST /v1/events` records it."""

    reader: str
    story_id: int
    type: EventType
    at: datetime  # timezone-aware UTC
    dwell_s: float | None = None  # time spent on the story, for reads when the client knows it


@dataclass(frozen=True)
class Preferences:
    """What the reader said explicitly: follows boost, mutes remove. Category and source
    names as their keys (`aggregator.names.name_key`, by `preferences_of`), matched without
    regard to case: a reader muting "Politics" means the operator's "politics"."""

    follow_categories: frozenset[str] = frozenset()
    mute_categories: frozenset[str] = frozenset()
    follow_sources: frozenset[str] = frozenset()
    mute_sources: frozenset[str] = frozenset()
    mute_topics: frozenset[str] = frozenset()  # lower-case words/phrases, matched on tags and title


@dataclass(frozen=True, eq=False)
class Interest:
    """One centre of the reader's attention: a unit vector, its share of the reader's mass,
    and the story that best represents it (for "because you read …")."""

    vector: np.ndarray
    weight: float  # share of the decayed positive mass, interests sum to 1
    anchor_story_id: int
    # The anchor's own unit vector: a reason names the anchor only for a story like it
    # (feed.FeedParams.reason_story_cos). None: not known, the interest's closeness alone.
    anchor_vector: np.ndarray | None = None


@dataclass(frozen=True, eq=False)
class Profile:
    reader: str
    interests: tuple[Interest, ...]
    # Share of decayed positive mass (sums to 1, or empty) by name key (`name_key`): stored
    # names keep the collector's or the import's spelling, and a reader of "Politics" and
    # "politics" stories has one affinity for the section, not two halves.
    category_affinity: Mapping[str, float]
    source_affinity: Mapping[str, float]
    session_vector: np.ndarray | None  # mean of what was read in the current session
    seen: frozenset[int]  # any event, impressions included
    read: frozenset[int]  # clicked or read
    n_events: int
    # Positively engaged story ids, oldest first (capped): what co-read lookups start from,
    # weighted towards the end because what one read last predicts what one reads next.
    history: tuple[int, ...] = field(default=())
    # Impressions of each story the reader was shown but never clicked or read, from an earlier
    # visit (ProfileParams.pass_over_after_s): passed over, a story sinks in their feed
    # (feed.FeedParams.skip_weight).
    passed_over: Mapping[int, int] = field(default_factory=dict)

    @property
    def is_cold(self) -> bool:
        return not self.interests


@dataclass(frozen=True)
class ProfileParams:
    half_life_days: float = 14.0
    max_interests: int = 5
    # Two groups whose stories are on average at least this close (cosine) are one interest.
    # MiniLM puts stories on one theme at ~0.4-0.7 and politics vs. pop music near 0.0-0.15.
    merge_cos: float = 0.35
    click_weight: float = 1.0
    read_weight: float = 2.0
    # A long read is a stronger signal than a bounce; capped so one open tab is not an obsession.
    dwell_full_s: float = 60.0
    dwell_max_bonus: float = 1.0
    session_window_s: float = 2 * 3600.0
    max_history: int = 50
    max_cluster_items: int = 300  # the heaviest stories clustered; keeps the O(n^2) step bounded
    # A showing counts as passed over once it is this old: another visit. A feed's page sends
    # its impressions as it loads, so with every showing counted, a reader who refreshed, or
    # came back from the article they opened, a minute later found the page they were
    # reading replaced, the stories they were about to read sunk (BBC stack over HTTP, a warm
    # reader who clicked one: 1 of the other 19 kept, 10-16 without the impressions). The 0.5 (feed.FeedParams.skip_weight) is measured on MIND showings a median
    # of 5 hours apart; the 124 of its 1,005 repeats under 30 minutes got 1 click (95%:
    # 0.1-4.4%, new stories 3.1%): too few to say a refresh is a pass. 30 minutes: the usual
    # end of a web session (the analytics tools' inactivity timeout).
    pass_over_after_s: float = 30 * 60.0


def empty_profile(reader: str) -> Profile:
    return Profile(reader, (), {}, {}, None, frozenset(), frozenset(), 0, ())


def event_weight(event: Event, params: ProfileParams = ProfileParams()) -> float:
    """Positive strength of one event before decay: impression 0 < click < read (more with dwell)."""
    if event.type == "click":
        return params.click_weight
    if event.type == "read":
        bonus = 0.0
        if event.dwell_s is not None and event.dwell_s > 0:
            bonus = params.dwell_max_bonus * min(event.dwell_s / params.dwell_full_s, 1.0)
        return params.read_weight + bonus
    return 0.0


def decay(age_s: float, half_life_s: float) -> float:
    """Exponential decay; events from the future (clock skew) count as now."""
    return 0.5 ** (max(age_s, 0.0) / half_life_s)


def build_profile(
    reader: str,
    events: Iterable[Event],
    vectors: Callable[[Sequence[int]], np.ndarray],
    story_meta: Mapping[int, tuple[str, str]],
    *,
    now: datetime,
    half_life_days: float | None = None,
    max_interests: int | None = None,
    params: ProfileParams = ProfileParams(),
    read_ids: Iterable[int] = (),
) -> Profile:
    """The profile of `reader` as of `now` from their events (others' events are ignored).

    `vectors(ids)` returns unit rows for the ids it is given, in order; `story_meta` maps a story
    id to (category, source) as stored, and the affinities are keyed by their name keys;
    stories missing from it only lose their affinity contribution.
    Events after `now` are ignored, so a profile can be rebuilt as of any past moment.
    `read_ids` are stories the reader clicked or read beyond `events`: a caller bounds the events
    to bound the work, and what fell outside must still count as read (`read`, `seen`), though
    it shapes no interest.
    """
    half_life_s = (half_life_days or params.half_life_days) * 86400.0
    max_k = max_interests or params.max_interests
    mine = sorted(
        (e for e in events if e.reader == reader and e.at <= now),
        key=lambda e: (e.at, e.story_id),
    )
    earlier = frozenset(read_ids)
    seen = frozenset(e.story_id for e in mine) | earlier
    read = frozenset(e.story_id for e in mine if e.type in ("click", "read")) | earlier
    passed: dict[int, int] = {}
    passed_before = now - timedelta(seconds=params.pass_over_after_s)
    for e in mine:
        if e.type == "impression" and e.story_id not in read and e.at <= passed_before:
            passed[e.story_id] = passed.get(e.story_id, 0) + 1

    # Per story: the strongest decayed signal (a click then a read of one story is one story,
    # not two) and the time of its last positive event.
    mass: dict[int, float] = {}
    last_at: dict[int, datetime] = {}
    for e in mine:
        w = event_weight(e, params)
        if w <= 0:
            continue
        d = w * decay((now - e.at).total_seconds(), half_life_s)
        mass[e.story_id] = max(mass.get(e.story_id, 0.0), d)
        last_at[e.story_id] = e.at
    if not mass:
        return Profile(reader, (), {}, {}, None, seen, read, len(mine), (), passed)

    history = tuple(sorted(last_at, key=lambda s: (last_at[s], s)))[-params.max_history :]
    cats: dict[str, float] = {}
    srcs: dict[str, float] = {}
    for sid, m in mass.items():
        meta = story_meta.get(sid)
        if meta is None:
            continue
        category, source = name_key(meta[0]), name_key(meta[1])
        if category:
            cats[category] = cats.get(category, 0.0) + m
        if source:
            srcs[source] = srcs.get(source, 0.0) + m

    heavy = sorted(mass, key=lambda s: (-mass[s], s))[: params.max_cluster_items]
    vecs = _unit_rows(np.asarray(vectors(heavy), dtype=np.float32))
    # A story without a vector yet (not embedded) comes back as a zero row: it still counts for
    # affinities and history, but cannot shape an interest.
    keep = np.linalg.norm(vecs, axis=1) > 0 if len(heavy) else np.zeros(0, dtype=bool)
    heavy = [s for s, k in zip(heavy, keep, strict=True) if k]
    vecs = vecs[keep]
    weights = np.array([mass[s] for s in heavy], dtype=np.float64)
    interests = cluster_interests(heavy, vecs, weights, max_k, params.merge_cos)

    session_ids = [
        s for s in history if (now - last_at[s]).total_seconds() <= params.session_window_s
    ]
    session_vector = None
    if session_ids:
        pos = {s: i for i, s in enumerate(heavy)}
        rows = [vecs[pos[s]] for s in session_ids if s in pos]
        if rows:
            session_vector = _unit(np.mean(rows, axis=0))

    return Profile(
        reader=reader,
        interests=interests,
        category_affinity=_shares(cats),
        source_affinity=_shares(srcs),
        session_vector=session_vector,
        seen=seen,
        read=read,
        n_events=len(mine),
        history=history,
        passed_over=passed,
    )


def cluster_interests(
    ids: Sequence[int],
    vecs: np.ndarray,
    weights: np.ndarray,
    max_interests: int,
    merge_cos: float,
) -> tuple[Interest, ...]:
    """Greedy agglomerative clustering by Ward's criterion on the mass-weighted stories.

    While there are more than `max_interests` groups, or two groups whose stories are on
    average at least `merge_cos` alike (the mean cosine between their stories, weighted by
    mass: the dot product of the groups' mean vectors), merges the pair whose merge adds the
    least spread (Ward: m_a m_b / (m_a + m_b) x |mean_a - mean_b|^2). Deterministic: ties
    break on position (ids sorted by mass).

    Not by the cosine between the groups' centres (centroid linkage, until 2026-11): the
    centre of many stories of one section is closer to another section's than their stories
    are to each other (on BBC with MiniLM: sections' centres at 0.2-0.47, their stories at
    0.04 median), so the merged groups pulled each other in and a reader of 50 or 1,280
    stories of all five sections had 92-98% of their mass in one interest and a story each
    in the others ("Calder fears for Scottish rugby" came "because you read 'Brown hits back
    in Blair rift row'"). Ward merges a stray story into its section before two sections
    into one: 93% of that reader's stories are nearest an interest of their section's
    majority, the largest interest holds 21-29% (tests/recommender/test_feed_quality.py).
    """
    n = len(ids)
    if n == 0:
        return ()
    sums = vecs.astype(np.float64) * weights[:, None]
    masses = weights.astype(np.float64).copy()
    members: list[list[int]] = [[i] for i in range(n)]
    means = sums / masses[:, None]
    dot = means @ means.T  # between two groups: their stories' mean cosine
    alive = np.ones(n, dtype=bool)
    groups = n
    while groups > 1:
        pair = alive[:, None] & alive[None, :]
        np.fill_diagonal(pair, False)
        if groups <= max_interests and np.where(pair, dot, -np.inf).max() < merge_cos:
            break
        sq = np.diag(dot)
        spread = (masses[:, None] * masses[None, :] / (masses[:, None] + masses[None, :])
                  * (sq[:, None] + sq[None, :] - 2.0 * dot))
        a, b = divmod(int(np.argmin(np.where(pair, spread, np.inf))), n)
        a, b = min(a, b), max(a, b)
        sums[a] += sums[b]
        masses[a] += masses[b]
        members[a].extend(members[b])
        alive[b] = False
        groups -= 1
        means[a] = sums[a] / masses[a]
        row = means @ means[a]
        dot[a, :] = row
        dot[:, a] = row
    total = float(masses[alive].sum()) or 1.0
    out = []
    for i in np.flatnonzero(alive):
        centre = _unit(sums[i])
        # The anchor is the heaviest member most like the centre: the story that "explains" it.
        anchor = max(members[i], key=lambda j: (weights[j] * (1.0 + float(vecs[j] @ centre)), -j))
        out.append(Interest(centre, float(masses[i]) / total, int(ids[anchor]),
                            vecs[anchor].astype(np.float32)))
    out.sort(key=lambda it: (-it.weight, it.anchor_story_id))
    return tuple(out)


def vectors_from_index(vindex) -> Callable[[Sequence[int]], np.ndarray]:
    """A `vectors` lookup over a recommender.vindex.VectorIndex that returns a zero row for a
    story the index does not hold (not embedded yet, or expired) instead of raising."""

    def lookup(ids: Sequence[int]) -> np.ndarray:
        arr = np.asarray(list(ids), dtype=np.int64)
        try:
            return np.asarray(vindex.get(arr), dtype=np.float32)
        except KeyError:
            out = np.zeros((len(arr), vindex.dim), dtype=np.float32)
            for row, sid in enumerate(arr):
                try:
                    out[row] = vindex.get(np.array([sid], dtype=np.int64))[0]
                except KeyError:
                    pass
            return out

    return lookup


def _shares(d: Mapping[str, float]) -> dict[str, float]:
    total = sum(d.values())
    if total <= 0:
        return {}
    return {k: v / total for k, v in sorted(d.items())}


def _unit(v: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(v))
    if norm == 0 or math.isnan(norm):
        return np.zeros_like(v, dtype=np.float32)
    return (v / norm).astype(np.float32)


def _unit_rows(m: np.ndarray) -> np.ndarray:
    if m.size == 0:
        return m.astype(np.float32)
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (m / norms).astype(np.float32)
