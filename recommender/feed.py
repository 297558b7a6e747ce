"""Order a reader's feed: candidates in, a deterministic page of items with reasons out. Pure.

Order of work in `rank_feed`:
1. drop what the reader has read and whatever they muted (category, source, topic);
2. score every candidate: interest match (best of the reader's interests, plus the session),
   co-reads ("readers who read what you just read went on to read this"), trending, smoothed
   click-through, freshness, category/source affinity and follows, the operator's source weight;
3. serve the interests in proportion: each candidate belongs to its nearest interest, and each
   slot goes to the interest with the best head score plus a bonus for being behind its share
   (a soft Sainte-Laguë apportionment), so a reader of politics and pop music gets both; a
   follow the reader's reading does not serve is a group of its own, with its share of the page
   (a new reader's groups are the sections, and each followed source, a follow's three turns);
4. in the top of the list, at most `max_per_source` per source (a source the reader
   follows, or a story of a section they follow: its share holds it, or the reading serves
   the source and it has a follow's part of the page, `_follow_caps`), unless a story past
   that cap scores `source_cap_margin` above its group's best story that fits, follow
   bonuses aside (a reader with history: `_Top.clearly_preferred`), and one story per event (same `event_id`, or
   vectors closer than `same_event_cos`); what does not fit moves down, not out,
   except a copy of a story placed or shown (its headline, `copy_title_cos`; word for word,
   `copy_cos`, in the top), which is left out;
5. every `1/explore_share`-th slot goes to exploration: trending stories outside the sections
   the reader reads or follows, in an order seeded by reader and snapshot day.
The full order is a function of its inputs only (no clock, no randomness), so a cursor that
carries the offset and the snapshot time pages through it without gaps or repeats.
No I/O and no model: vectors arrive on the candidates; `candidates_for` only reads the index.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import groupby

import numpy as np

from aggregator.names import name_key
from aggregator.textclean import headline_key
from recommender.profile import Preferences, Profile, empty_profile


@dataclass(frozen=True, eq=False)
class FeedCandidate:
    id: int
    vector: np.ndarray  # unit row
    category: str = ""
    source: str = ""
    published_at: datetime | None = None
    # The crowd's figures: of the story and its copies on other sites, each reader once
    # (`copy_sets`, readers.compute_crowd).
    trending: float = 0.0  # decayed count of readers (popularity.trending_scores)
    ctr: float | None = None  # smoothed click-through (popularity.ctr_table), None: unknown
    impressions: int = 0  # readers it was shown to (popularity.Counts), for `new_story_credit`
    co_read: float = 0.0  # popularity.co_read_scores for this reader
    co_read_anchor: int | None = None  # the reader's story that led here
    source_weight: float = 1.0  # operator's [[source]] weight
    title: str = ""
    topics: tuple[str, ...] = ()  # tags, matched against muted topics
    event_id: int | None = None  # same-event cluster when known


@dataclass(frozen=True)
class FeedItem:
    id: int
    score: float
    reason: str
    because_of: int | None = None  # the story named in the reason, if any


@dataclass(frozen=True)
class FeedParams:
    """Weights chosen on the MIND sample (next-read, see evaluate_feed), on a flat plateau:
    interest x0.5, co-read x2, trending x2, balance 0 or x2, no exploration each moved HR@10
    by at most 0.011 from 0.340 (MRR 0.172-0.192). `balance` costs ~0.01 HR@10 there (pure
    score order: 0.351) and is what gives a two-interest reader both interests on one page."""

    interest_weight: float = 1.5  # x cosine with the nearest interest
    session_weight: float = 0.5  # x cosine with the current session
    co_read_weight: float = 1.0  # x log1p(co-read score)
    trending_weight: float = 0.5  # x log1p(trending)
    ctr_weight: float = 1.0  # x (smoothed ctr - prior); small unless impressions say otherwise
    # The CTR a story without evidence has: the one `ctr` was smoothed toward, set by the feed
    # service from the crowd (popularity.ctr_prior), so a story at the site's average gains or
    # loses nothing against one nobody was shown yet.
    ctr_prior: float = 0.05
    fresh_weight: float = 0.3  # x 0.5 ** (age / fresh_half_life_h)
    fresh_half_life_h: float = 24.0
    # A story too new for the crowd to have read it (younger than `new_story_h` and shown to
    # fewer than `fair_chance_impressions` readers, the `ctr_table` prior's strength) that is
    # close to one of the reader's interests (`reason_min_cos`) ranks with the trending the
    # crowd's stories have (`trending_prior`, set by the feed service from the crowd:
    # popularity.trending_prior) where its own is lower. Without it, the politics story
    # collected an hour ago, on a politics reader's main interest, ranked 136th in their feed,
    # below older ones that 20 readers had read (trending +1.5; freshness adds at most 0.3).
    # Only near an interest, so a new story unlike the reader's reads does not rise; and only
    # while new: a story the crowd had its chance at and passed over has earned its place.
    trending_prior: float = 0.0
    new_story_h: float = 12.0
    fair_chance_impressions: int = 20
    category_weight: float = 0.5  # x category affinity share
    source_affinity_weight: float = 0.3
    follow_weight: float = 0.5
    source_weight_weight: float = 0.5  # x log(operator weight): 2.0 -> +0.35, 0.5 -> -0.35
    # Apportionment: score bonus per slot an interest is behind its share (0 = pure score).
    balance: float = 0.5
    top_n: int = 20  # the constraints below hold in the first top_n positions
    max_per_source: int = 3
    # A warm reader's story past `max_per_source` takes its slot all the same when it scores
    # this much above the best story of its group the cap lets in (another source's, as a
    # rule). The cap is there for variety: where other sites have stories about as good, they
    # come in. Hard, it cut a reader's interest to 3 of 20 where one site covers it (a
    # politics-only reader of BBC, whose politics is one source, had 3 politics stories in
    # 15, the rest sections they never read). 0.5 is more than reading that site alone adds
    # (source affinity, at most 0.3), so a reader of one site still gets other sites' stories
    # on the same subjects, and less than a section read alone adds (category affinity 0.5
    # with the site's 0.3); one unit of score is about 1 in the log odds of the next read
    # (`skip_weight`): the held story's odds of being read are ~1.6x its rival's or more.
    # Past a follow's cap (`_follow_caps`, its part of the page) the same, by scores without
    # the follow's bonus (`follow_weight`, as large as the margin): held to its 7 of 20, a
    # politics-only BBC reader who followed bbc-politics had 7 of their first 15 from it, 14
    # not following it. A new reader's sections and trending keep the cap hard: no reading
    # to prefer by.
    source_cap_margin: float = 0.5
    same_event_cos: float = 0.8
    explore_share: float = 0.1
    # Cold start: trending and latest, each category in turn (a strong balance: every category
    # gets its turn whatever its scores).
    cold_balance: float = 2.0
    # A category the new reader follows takes this many turns to another's one (with the
    # strong balance above, a follow bonus on the score alone changed nothing: 4 of 20).
    cold_follow_share: float = 3.0
    cold_trending_weight: float = 1.0
    cold_fresh_weight: float = 1.0
    # A new reader's sections take turns with their news: a story this many days older than
    # the newest candidate (or than `now`, if sooner) takes no turn, and comes after the news
    # by its score. With equal turns, a section gone quiet (its source retired, or its feed
    # broken for months) had a quarter of a first page with stories two months old
    # ("latest in business" from October on a December page). Relative to the newest story,
    # so a corpus all of one old year still shows its sections in turn.
    cold_quiet_days: float = 7.0
    # A story the reader read, republished (another site, another id): under its headline at
    # this cosine or closer, or under any headline nearly word for word. The related block's
    # rule for the article itself (related.RankParams.self_title_cosine, README).
    copy_title_cos: float = 0.9
    copy_cos: float = 0.995
    # A story shown to the reader and passed over sinks by this, from the first showing on,
    # and no further with more. Measured on MIND (impression logs: 327 of 4,637 users seen in
    # more than one session): in a later impression, a story the user was shown once before
    # and did not click was clicked 18 times in 993 (1.8%), the new stories of the same
    # impressions 262 in 8,445 (3.1%): 0.58x (0.55x against each story's click rate with
    # other users; 95% over users 0.30-0.89; `tidings eval feed` prints the table,
    # evaluate_feed.skip_click_rates). Shown twice before: 0 clicks in 12, and never
    # more: nothing says a further showing costs more, so it does not. One unit of feed score
    # is 0.9-1.15 in log odds of the next read (the feed's own order on MIND next-read, 808
    # rows, a conditional logit on its scores), so 0.55x is 0.52-0.66; 0.5 (the 95% range
    # of the ratio alone spans 0.1-1.5). It was 0.25 x log2(times shown), nothing the first
    # time: the first showing is the one that counts. Without it, the story a reader skipped
    # on every visit kept its place at the top. A showing counts once it is from an earlier
    # visit, 30 minutes old (profile.ProfileParams.pass_over_after_s): a page's own impressions
    # replaced it on a refresh. On the MIND repeats that far apart: 17 clicks in 881, 0.62x.
    skip_weight: float = 0.5
    # "because you read …" only for a story this close (cosine) to that interest: a TV story
    # at 0.42 to a politics reader's asylum reads came "because you read" one of them. On
    # BBC, readers of 5 random stories of one section: a story of the other section is below
    # 0.31 at the 99th percentile, one of theirs above 0.45 at the 76th (1 in 4); the stories
    # that reach a page are the closest ones. Below, the reason names the section.
    reason_min_cos: float = 0.45
    # ... and only for a story this close (cosine) to the read it names, the interest's anchor.
    # An interest of a reader of many sections can be broad (at most five: `ProfileParams.
    # max_interests` merges the rest), its centre near stories unlike its anchor, which came
    # "because you read" a story of another section. On BBC with MiniLM two stories of
    # different sections are under 0.32 at the 99th percentile (of one section: 0.22 median,
    # 0.40 at the 90th). Below, the reason names the section. Not enough for a reader whose
    # reads all made one interest (1,280 BBC stories of five sections, 98% of the mass in one,
    # before `profile.cluster_interests` merged by Ward): "Calder fears for Scottish rugby" is
    # at 0.39 to "Brown hits back in Blair rift row".
    reason_story_cos: float = 0.3
    # Warm: the follows the reader's reading does not serve share this much of the page, evenly.
    # Their stories go to a group of their follow, not of their nearest interest, where the +0.5
    # of `follow_weight` never beat a politics reader's politics: after 3 or 25 politics reads,
    # following entertainment left 3 of 20 entertainment stories, as many as before. A follow
    # is served when its affinity (the reader's share of reads in that category, or from that
    # source) is at least its part of this share: a politics reader who follows politics sees
    # the same feed. Not by cosine to the interests: on BBC with MiniLM, the unread politics of
    # a reader of 3 or 25 politics stories has a median of 0.30 or 0.47, across
    # `reason_min_cos`; the tests' hashing embedder puts 95% of entertainment at 0.46 or more
    # to a politics interest. The soft balance gives a follow a little less than its share (its
    # stories match no interest): one follow has 6-8 of 20 on BBC with MiniLM, 5-7 in tests.
    warm_follow_share: float = 0.35


DEFAULT_PARAMS = FeedParams()


@dataclass(slots=True)
class _Scored:  # internal and never mutated; slots, not frozen, because it is made per candidate
    cand: FeedCandidate
    score: float
    group: int
    reason: str
    because_of: int | None


def rank_feed(
    profile: Profile,
    candidates: Sequence[FeedCandidate],
    *,
    prefs: Preferences = Preferences(),
    now: datetime,
    params: FeedParams = DEFAULT_PARAMS,
    k: int = 20,
    offset: int = 0,
    titles: Mapping[int, str] | None = None,
) -> list[FeedItem]:
    """The page [offset, offset + k) of the reader's feed as of `now` (the cursor's snapshot).

    A cold profile (no positive events) gets `cold_start`. `titles` names the stories that
    reasons cite ("because you read …"); without it reasons fall back to generic wording.
    """
    order = feed_order(profile, candidates, prefs=prefs, now=now, params=params, titles=titles,
                       limit=offset + k)
    return order[offset : offset + k]


def feed_order(
    profile: Profile,
    candidates: Sequence[FeedCandidate],
    *,
    prefs: Preferences = Preferences(),
    now: datetime,
    params: FeedParams = DEFAULT_PARAMS,
    titles: Mapping[int, str] | None = None,
    limit: int | None = None,
    served: Collection[int] = (),
) -> list[FeedItem]:
    """The ordered feed (rank_feed pages through it), its first `limit` items when given.

    The order is placed greedily, one position after the other, so the first `limit` are those
    of the whole order: a page asks for what it shows (and one more, to know whether there is
    a next page) instead of placing every candidate (~700, a fifth of a feed request).
    A copy of a story placed before it (another site's id for one story, `_Shown`) is left
    out, as is a copy of a story in `served` (the cursor's: what the earlier pages showed); the
    one placed trends with the readers of them all, as the crowd's recount counted them
    (`copy_sets`)."""
    pool = _eligible(profile, candidates, prefs)
    if not pool:
        return []
    labels = category_labels(pool)
    if profile.is_cold:
        sections, follows = _cold_groups(pool, prefs)
        scored = _passed_over(_score_cold(pool, prefs, now, params, labels, sections, follows,
                                          _quiet_before(pool, now, params)), profile, params)
        shares = _cold_shares(scored, follows.values(), params)
        explore: list[_Scored] = []
        balance = params.cold_balance
        margin = math.inf  # no reading to prefer a source's story by (`source_cap_margin`)
    else:
        scored = _passed_over(_score_warm(profile, pool, prefs, now, params, titles or {}, labels),
                              profile, params)
        shares = _warm_shares(profile, scored, params)
        explore = _exploration_pool(profile, prefs, scored, now, labels)
        balance = params.balance
        margin = params.source_cap_margin
    placed = _assemble(scored, shares, explore, params, balance, limit, served,
                       caps=_follow_caps(profile, prefs, params, pool), cap_margin=margin,
                       lift=_follow_lift(prefs, params, labels))
    return [FeedItem(s.cand.id, round(s.score, 6), s.reason, s.because_of) for s in placed]


def skip_penalty(times_shown: int, params: FeedParams) -> float:
    """What a story shown `times_shown` times on earlier visits and never clicked loses:
    `skip_weight` once it was shown at all (MIND: one unclicked showing roughly halves the next
    one's clicks; more showings are too few there to say more, FeedParams.skip_weight)."""
    return params.skip_weight if times_shown > 0 else 0.0


def _passed_over(scored: list[_Scored], profile: Profile, params: FeedParams) -> list[_Scored]:
    passed = profile.passed_over
    if not passed or not params.skip_weight:
        return scored
    return [_Scored(s.cand, s.score - skip_penalty(n, params), s.group, s.reason, s.because_of)
            if (n := passed.get(s.cand.id, 0)) > 0 else s for s in scored]


def cold_start(
    candidates: Sequence[FeedCandidate],
    *,
    reader: str = "",
    prefs: Preferences = Preferences(),
    now: datetime,
    params: FeedParams = DEFAULT_PARAMS,
    k: int = 20,
    offset: int = 0,
) -> list[FeedItem]:
    """Trending and latest across categories, for a reader we know nothing about yet."""
    return rank_feed(
        empty_profile(reader), candidates, prefs=prefs, now=now, params=params, k=k, offset=offset
    )


def rank_trending(
    candidates: Sequence[FeedCandidate],
    *,
    now: datetime,
    category: str | None = None,
    params: FeedParams = DEFAULT_PARAMS,
    k: int = 20,
    offset: int = 0,
) -> list[FeedItem]:
    """`GET /v1/trending?category=`: most readers lately, freshness breaking ties, at most
    `max_per_source` per source in the top. The category is named in any case."""
    key = None if category is None else name_key(category)
    pool = [c for c in candidates if key is None or name_key(c.category) == key]
    labels = category_labels(pool)
    scored = []
    for c in pool:
        fresh = _freshness(c, now, params)
        score = math.log1p(max(c.trending, 0.0)) + 0.1 * fresh + _ctr_term(c, params)
        where = f" in {label}" if (label := _label(c, labels)) else ""
        reason = f"trending{where}" if c.trending > 0 else f"latest{where}"
        scored.append(_Scored(c, score, 0, reason, None))
    placed = _assemble(scored, {0: 1.0}, [], params, 0.0)
    out = [FeedItem(s.cand.id, round(s.score, 6), s.reason) for s in placed]
    return out[offset : offset + k]


def copy_sets(titles: Sequence[str], vectors: np.ndarray, params: FeedParams = DEFAULT_PARAMS
              ) -> dict[int, list[int]]:
    """The copies of each story among these (the same story on another site: its headline at
    cosine `copy_title_cos` or closer, the rule by which a list shows one of them, `_Shown`),
    by position: {j: [positions of j's copies, j included]} for the stories that have any.
    `vectors` holds unit rows (a zero row, a story not embedded yet, is no one's copy). By
    headline first, then by vector: a cosine only within a headline's few stories.

    The crowd's recount credits each story with the distinct readers of its copies
    (`popularity.copies_counted`): a copy stored apart (not word for word, so not
    `duplicate_of`) has readers of its own, and counted alone, the one a list showed trended
    with a share of them (a wire story read by 45 readers on three sites ranked below a story
    40 had read). Pure."""
    by_title: dict[str, list[int]] = defaultdict(list)
    for j, title in enumerate(titles):
        if key := headline_key(title):
            by_title[key].append(j)
    out: dict[int, list[int]] = {}
    for js in by_title.values():
        if len(js) < 2:
            continue
        sims = vectors[js] @ vectors[js].T
        for a, j in enumerate(js):
            same = [js[b] for b in range(len(js)) if b == a or sims[a, b] >= params.copy_title_cos]
            if len(same) > 1:
                out[j] = same
    return out


def personalize_related(
    related: Sequence[tuple[int, float]],
    vectors: Mapping[int, np.ndarray],
    profile: Profile,
    *,
    tie_eps: float = 0.02,
) -> list[tuple[int, float]]:
    """A related block that knows the reader: drop what they read; among neighbours in the
    block (`related`, in its order) whose relevance falls in the same `tie_eps`-wide band, the
    one nearer the reader's interests goes first. The block's order still rules: personal
    taste only breaks (near-)ties. Sorted by relevance as a whole, the reader's block undid
    the diversifying (related.diversify), and a paraphrase it had moved down came back up
    beside the story it repeats."""
    kept = [(i, s) for i, s in related if i not in profile.read]

    def taste(i: int) -> float:
        v = vectors.get(i)
        if v is None or not profile.interests:
            return 0.0
        return max(float(v @ it.vector) * it.weight for it in profile.interests)

    out: list[tuple[int, float]] = []
    for _, ties in groupby(kept, key=lambda p: math.floor(p[1] / tie_eps)):
        out += sorted(ties, key=lambda p: (-taste(p[0]), -p[1], p[0]))
    return out


# --- candidates ------------------------------------------------------------------------------


MAX_READ_OVERFETCH = 2_000


def candidates_for(
    profile: Profile,
    vindex,
    *,
    per_interest_k: int = 50,
    session_k: int = 20,
    trending: Mapping[int, float] | None = None,
    n_trending: int = 50,
    fresh_ids: Sequence[int] = (),
    co_read: Mapping[int, object] | None = None,
    n_co_read: int = 100,
    newest_id: int | None = None,
) -> dict[int, str]:
    """Story ids worth ranking for this reader, each with where it came from
    ("interest:<i>", "session", "co_read", "trending", "fresh"); read stories are left out.

    `vindex` is a recommender.vindex.VectorIndex; `fresh_ids` the latest stories (newest
    first); `co_read` the output of popularity.co_read_scores; `newest_id` the highest story
    id a paged feed's snapshot holds. The caller loads the stories and builds
    FeedCandidates (`readers.FeedService`).
    """
    out: dict[int, str] = {}

    def shown(i: int) -> bool:  # a story this feed may show
        return i not in profile.read and (newest_id is None or i <= newest_id)

    def put(i: int, origin: str) -> None:
        if shown(i) and i not in out:
            out[i] = origin

    def nearest(hits, k: int, origin: str) -> None:
        # The k nearest the feed may show: the hits past them were asked for only in place of
        # read ones. All of them taken, a reader with 2,000 reads elsewhere had 2,050 of
        # each interest (and 2,020 of the session): ~12,000 candidates built and scored for
        # every page, where other readers have ~700.
        for i in (int(i) for i, _ in hits):
            if k <= 0:
                return
            if shown(i):
                put(i, origin)
                k -= 1

    # Over-fetch by the stories the reader read (they are dropped below), up to a bound: a
    # reader with 10,000 reads asked each interest for 10,050 neighbours, and building and
    # scoring them made the feed ~1.5x slower than the whole rest of the request.
    skip = min(len(profile.read), MAX_READ_OVERFETCH)
    if profile.interests and len(vindex):
        queries = np.stack([it.vector for it in profile.interests]).astype(np.float32)
        for g, hits in enumerate(vindex.search_many(queries, per_interest_k + skip)):
            nearest(hits, per_interest_k, f"interest:{g}")
    if profile.session_vector is not None and len(vindex):
        nearest(vindex.search(profile.session_vector, session_k + skip), session_k, "session")
    if co_read:
        best = sorted(co_read.items(), key=lambda kv: (-_first(kv[1]), kv[0]))[:n_co_read]
        for i, _ in best:
            put(int(i), "co_read")
    if trending:
        for i, _ in sorted(trending.items(), key=lambda kv: (-kv[1], kv[0]))[:n_trending]:
            put(int(i), "trending")
    for i in fresh_ids:
        put(int(i), "fresh")
    return out


def copies_of_read(
    candidates: Sequence[FeedCandidate],
    read: Sequence[tuple[str, np.ndarray]],
    params: FeedParams = DEFAULT_PARAMS,
) -> set[int]:
    """Ids of the candidates that are a story the reader read, republished: `read` holds the
    read stories' (title, unit vector). Dropped by id alone, the same story on another site
    came at the top of the reader's feed "because you read" it. Pure."""
    if not candidates or not read:
        return set()
    mat = np.stack([c.vector for c in candidates]).astype(np.float32)
    seen = np.stack([v for _, v in read]).astype(np.float32)
    sims = mat @ seen.T
    keys = [headline_key(t) for t, _ in read]
    out = set()
    for j in np.flatnonzero((sims >= params.copy_title_cos).any(axis=1)):  # a few, if any
        c = candidates[int(j)]
        key = headline_key(c.title)
        for r in np.flatnonzero(sims[j] >= params.copy_title_cos):
            if sims[j, r] >= params.copy_cos or (key and key == keys[r]):
                out.add(c.id)
                break
    return out


def _first(v: object) -> float:
    return float(v[0]) if isinstance(v, tuple) else float(v)  # type: ignore[arg-type]


# --- cursor ----------------------------------------------------------------------------------


# Ids a cursor may carry: a feed ranks at most ~1,000 candidates (`candidates_for`), so a
# reader paged to its end carries under this; more is not a cursor this API gave out.
MAX_CURSOR_IDS = 5_000
# Story ids are signed 64-bit in the database: a larger one in a hand-made cursor reached the
# query and failed there (a 500, "Python int too large to convert to SQLite INTEGER").
MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class FeedCursor:
    """Where a reader is in a feed: the snapshot time the order is computed for, the newest
    story id it may hold (stories stored later stay out of its pages: placed among them, each
    pushed the rest down and the next page repeated its last items), and what was shown.

    `served` is the ids the earlier pages showed, so a page is the first `k` of the order not
    yet shown. A position alone did not survive a change between two pages that the snapshot
    cannot freeze (trending and co-reads recounted, a story deleted by retention, an event
    that arrived late): the order shifted and the next page repeated or skipped stories.
    `offset` is the position of the first formats (before `served`), still honoured.
    """

    snapshot_at: datetime
    newest_id: int | None = None
    served: frozenset[int] = frozenset()
    offset: int = 0
    # Stories the crowd brought in (trending and co-read heads) not shown yet: kept as
    # candidates on later pages. The heads are recounted between pages too, and a story that
    # fell out of them between two pages was never shown at all (a gap).
    pinned: frozenset[int] = frozenset()


# Where `candidates_for` found a story, when the finding depends on the crowd's recount.
CROWD_ORIGINS = frozenset({"trending", "co_read"})


def pinned_candidates(found: Mapping[int, str], cursor: FeedCursor) -> tuple[list[int], frozenset[int]]:
    """A page's candidate ids (those found now, then the ones earlier pages pinned or showed)
    and the crowd's stories to pin for the pages after it. Pure. The stories shown stay
    candidates (never shown again: `page_of`) so that their copies stay out of later pages
    (`feed_order`'s `served`), also when the crowd no longer brings them in."""
    crowd = {i for i, origin in found.items() if origin in CROWD_ORIGINS}
    ids = [*found, *sorted(i for i in cursor.pinned | cursor.served if i not in found)]
    return ids, frozenset((cursor.pinned | crowd) - cursor.served)


def page_of(order: Sequence[FeedItem], cursor: FeedCursor, k: int) -> tuple[list[FeedItem], FeedCursor | None]:
    """The next page of `order` (computed with `limit=page_limit(cursor, k)`) and the cursor
    after it, None at the end. Pure."""
    rest = [it for it in order[cursor.offset:] if it.id not in cursor.served]
    page = rest[:k]
    if len(rest) <= k:
        return page, None
    shown = cursor.served.union(it.id for it in order[:cursor.offset]).union(it.id for it in page)
    return page, FeedCursor(cursor.snapshot_at, cursor.newest_id, frozenset(shown),
                            pinned=cursor.pinned - shown)


def page_limit(cursor: FeedCursor, k: int) -> int:
    # The shown ids lie anywhere in the order: past this many it holds k + 1 others (one
    # more than the page: is there a next one), or the order ends sooner.
    return cursor.offset + len(cursor.served) + k + 1


# A cursor ends in a check of the reader it was made for and a checksum of all before it.
# Without them a cursor cut short (by a client, a log, a copy and paste) still decoded into a
# valid-looking one with fewer ids, and paged on showing stories already shown; and reader B
# could page with reader A's cursor, skipping what A was shown. Not a signature (nothing is
# secret): a client can still make a cursor for its own feed, which only changes its own pages.
READER_CHECK_BYTES = 3  # a foreign cursor passes 1 time in 16.7 million
CHECKSUM_BYTES = 4  # a damaged one 1 time in 4.3 billion


class BadCursor(ValueError):
    """A cursor refused; the message is for the caller."""


NOT_OURS = "the cursor is not one this API gave out"


def _digest(data: bytes, size: int) -> bytes:
    return hashlib.blake2b(data, digest_size=size).digest()


def encode_cursor(cursor: FeedCursor, reader: str) -> str:
    """Opaque: "f4:<snapshot>:<newest id>:" then the shown ids, sorted, as LEB128 gaps (a page
    of 20 adds ~40-60 bytes), then a 0 byte and the pinned ids the same way, then a check of
    `reader` and a checksum of all before it (7 bytes), all base64url."""
    stamp = int(cursor.snapshot_at.timestamp())
    newest = -1 if cursor.newest_id is None else cursor.newest_id
    out = bytearray(f"f4:{stamp}:{newest}:".encode())
    _pack_ids(out, cursor.served)
    if cursor.pinned:
        out.append(0)  # no gap is 0: ids are sorted and distinct (see _pack_ids)
        _pack_ids(out, cursor.pinned)
    out += _digest(reader.encode(), READER_CHECK_BYTES)
    out += _digest(bytes(out), CHECKSUM_BYTES)
    return base64.urlsafe_b64encode(bytes(out)).decode().rstrip("=")


def _pack_ids(out: bytearray, ids: frozenset[int]) -> None:
    prev = -1  # every gap is then at least 1, id 0 included: 0 is free for the separator
    for i in sorted(ids):
        gap = i - prev
        prev = i
        while True:
            byte, gap = gap & 0x7F, gap >> 7
            out.append(byte | (0x80 if gap else 0))
            if not gap:
                break


def decode_cursor(cursor: str, reader: str) -> FeedCursor:
    """The cursor `encode_cursor` made for `reader`, or one of the earlier formats, which carry
    no check and are taken from any reader ("f1:<offset>:<snapshot>", "f2:<offset>:<snapshot>:
    <newest id>", "f3:" as "f4:" without the check). BadCursor (a ValueError) for anything
    else, saying why: cut short or changed, made for another reader, or not a cursor at all."""
    damaged = f"{NOT_OURS} (cut short or changed): pass `next` on as it came"
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except ValueError as e:  # binascii.Error: a length (cut short) or a character base64url has not
        raise BadCursor(damaged) from e
    tag, _, rest = raw.partition(b":")
    if tag == b"f4":
        rest, check = rest[:-CHECKSUM_BYTES], rest[-CHECKSUM_BYTES:]
        if (len(rest) < READER_CHECK_BYTES
                or _digest(raw[:len(raw) - CHECKSUM_BYTES], CHECKSUM_BYTES) != check):
            raise BadCursor(damaged)
        rest, made_for = rest[:-READER_CHECK_BYTES], rest[-READER_CHECK_BYTES:]
        if made_for != _digest(reader.encode(), READER_CHECK_BYTES):
            raise BadCursor("the cursor was made for another reader's feed: page with the "
                            "`next` of this reader's own feed")
    try:
        if tag in (b"f3", b"f4"):
            stamp, newest, packed = rest.split(b":", 2)
            stamp_s, newest_id = int(stamp), int(newest)
            if stamp_s < 0 or not -1 <= newest_id <= MAX_ID:
                raise ValueError("out of range")
            served, pinned = _unpack_ids(packed)
            return FeedCursor(_time(stamp_s), None if newest_id == -1 else newest_id, served,
                              pinned=pinned)
        numbers = [int(f) for f in rest.decode().split(":")]
        if (tag, len(numbers)) not in ((b"f1", 2), (b"f2", 3)) or min(numbers) < 0 or max(numbers) > MAX_ID:
            raise ValueError("bad cursor")
        offset, stamp, *newest_ids = numbers
        return FeedCursor(_time(stamp), newest_ids[0] if newest_ids else None, offset=offset)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadCursor(NOT_OURS) from e


def _unpack_ids(packed: bytes) -> tuple[frozenset[int], frozenset[int]]:
    """(served, pinned) from `_pack_ids`'s two lists."""
    lists: list[list[int]] = [[]]
    value = shift = count = 0
    prev = -1
    for byte in packed:
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte & 0x80:
            if shift > 63:
                raise ValueError("id too long")
            continue
        if value == 0:  # the separator: the pinned ids follow
            if len(lists) == 2:
                raise ValueError("a third list")
            lists.append([])
            prev, shift = -1, 0
            continue
        prev += value
        if prev > MAX_ID:
            raise ValueError("id out of range")
        lists[-1].append(prev)
        value = shift = 0
        count += 1
        if count > MAX_CURSOR_IDS:
            raise ValueError("too many ids")
    if shift:
        raise ValueError("cut short")
    served, *pinned = lists
    return frozenset(served), frozenset(pinned[0] if pinned else ())


def _time(stamp: int) -> datetime:
    try:
        return datetime.fromtimestamp(stamp, UTC)
    except (OverflowError, OSError, ValueError) as e:  # past year 9999: not a time we gave
        raise ValueError("bad cursor") from e


# --- scoring ---------------------------------------------------------------------------------


def mute_filter(prefs: Preferences) -> Callable[..., bool]:
    """muted(category, source, title, tags=()): whether the reader muted a story of that
    category or source, or one about a muted topic: a tag that is the topic (whatever its
    case), or a title or tag that names it as a whole word ("Love Island" in "Love Island
    final"). Each tag is matched on its own: a title ending "… love" and a tag "Island" do
    not make "love island"."""
    # Word edges as "no word character beside it", not \b: \b needs a word character inside
    # the topic too, so "C++" or "#MeToo" never matched inside a title. Topic and texts
    # folded as names are (`name_key`): lower() kept "Straße" from "STRASSE", and a title
    # spelled with a combining accent from the topic typed with the accented letter.
    topics = [re.compile(rf"(?<!\w){re.escape(name_key(t))}(?!\w)") for t in prefs.mute_topics if t.strip()]

    def muted(category: str, source: str, title: str, tags: Sequence[str] = ()) -> bool:
        if name_key(category) in prefs.mute_categories or name_key(source) in prefs.mute_sources:
            return True
        if topics:
            texts = [name_key(text) for text in (title, *tags)]
            return any(p.search(text) for text in texts for p in topics)
        return False

    return muted


def _eligible(
    profile: Profile, candidates: Sequence[FeedCandidate], prefs: Preferences
) -> list[FeedCandidate]:
    muted = mute_filter(prefs)
    out = []
    seen: set[int] = set()
    for c in candidates:
        if c.id in seen or c.id in profile.read:
            continue
        if muted(c.category, c.source, c.title, c.topics):
            continue
        seen.add(c.id)
        out.append(c)
    return out


def _freshness(c: FeedCandidate, now: datetime, params: FeedParams) -> float:
    if c.published_at is None:
        return 0.0
    age_h = max((now - c.published_at).total_seconds() / 3600.0, 0.0)
    return 0.5 ** (age_h / params.fresh_half_life_h)


def new_story_credit(c: FeedCandidate, match: float, now: datetime, params: FeedParams) -> float:
    """The trending a story is credited with on top of its own (`FeedParams.trending_prior`):
    the prior's edge over its own trending while it is too new for the crowd to have read it
    and `match` (its cosine to the reader's nearest interest) is at least `reason_min_cos`;
    else 0. A story without a time is not known to be new. Pure."""
    if (params.trending_prior <= c.trending or c.published_at is None
            or match < params.reason_min_cos or c.impressions >= params.fair_chance_impressions):
        return 0.0
    age_h = (now - c.published_at).total_seconds() / 3600.0
    return params.trending_prior - max(c.trending, 0.0) if age_h < params.new_story_h else 0.0


def _ctr_term(c: FeedCandidate, params: FeedParams) -> float:
    return 0.0 if c.ctr is None else params.ctr_weight * (c.ctr - params.ctr_prior)


def category_labels(cands: Sequence[FeedCandidate]) -> dict[str, str]:
    """How reasons name each section (by name key): the spelling most of `cands` carry, the
    first in code-point order on a tie. Stored names keep the collector's or the import's
    spelling, and one page said "new in Politics" and "trending in politics"."""
    counts = Counter(c.category for c in cands)
    out: dict[str, str] = {}
    for name, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        if key := name_key(name):
            out.setdefault(key, name.strip())
    return out


def _label(c: FeedCandidate, labels: Mapping[str, str]) -> str:
    """The candidate's category as reasons name it ("" for none)."""
    return labels.get(name_key(c.category), c.category.strip())


def _follow(c: FeedCandidate, prefs: Preferences, labels: Mapping[str, str]) -> str | None:
    if c.category and name_key(c.category) in prefs.follow_categories:
        return _label(c, labels)
    if c.source and name_key(c.source) in prefs.follow_sources:
        return c.source
    return None


def _follow_lift(prefs: Preferences, p: FeedParams, labels: Mapping[str, str]
                 ) -> Callable[[FeedCandidate], float]:
    """What a story's score owes to a follow (`follow_weight` in `_score_warm`)."""
    return lambda c: p.follow_weight if _follow(c, prefs, labels) else 0.0


def _score_warm(
    profile: Profile,
    pool: Sequence[FeedCandidate],
    prefs: Preferences,
    now: datetime,
    p: FeedParams,
    titles: Mapping[int, str],
    labels: Mapping[str, str],
) -> list[_Scored]:
    mat = np.stack([c.vector for c in pool]).astype(np.float32)
    centres = np.stack([it.vector for it in profile.interests]).astype(np.float32)
    sims = mat @ centres.T
    group = np.argmax(sims, axis=1)
    match = sims[np.arange(len(pool)), group]
    # Each candidate's cosine to the anchor of its interest (to the interest's centre where the
    # anchor's vector is unknown: `match`, which `reason_min_cos` already holds above it).
    anchors = np.stack([it.vector if it.anchor_vector is None else it.anchor_vector
                        for it in profile.interests]).astype(np.float32)
    like_anchor = np.einsum("ij,ij->i", mat, anchors[group])
    session = (
        mat @ profile.session_vector if profile.session_vector is not None else np.zeros(len(pool))
    )
    col = _columns(pool, now, p)
    # The four parts a reason can name, side by side (columns in _PARTS order).
    parts = np.stack(
        [
            p.interest_weight * match + p.session_weight * session,
            p.co_read_weight * np.log1p(col["co_read"]),
            p.trending_weight * np.log1p(col["trending"]),
            p.fresh_weight * col["fresh"],
        ],
        axis=1,
    )
    # Affinities are keyed by name key (profile.py): a "Politics" story is in a reader's
    # "politics" section.
    cat_aff = np.array([profile.category_affinity.get(name_key(c.category), 0.0) for c in pool])
    src_aff = np.array([profile.source_affinity.get(name_key(c.source), 0.0) for c in pool])
    followed = [_follow(c, prefs, labels) for c in pool]
    # A new story's expected crowd, out of `parts`: its reason is never "trending" for readers
    # it has not had yet.
    credit = np.array([new_story_credit(c, float(match[j]), now, p) for j, c in enumerate(pool)])
    score = (
        parts.sum(axis=1)
        + p.trending_weight * (np.log1p(col["trending"] + credit) - np.log1p(col["trending"]))
        + col["ctr"]
        + p.category_weight * cat_aff
        + p.source_affinity_weight * src_aff
        + p.follow_weight * np.array([f is not None for f in followed], dtype=np.float64)
        + col["source_weight"]
    )
    top_part = np.argmax(parts, axis=1)
    follow_groups = _unserved_follows(profile, prefs, p, pool)
    out = []
    for j, c in enumerate(pool):
        g = int(group[j])
        near = match[j] >= p.reason_min_cos and like_anchor[j] >= p.reason_story_cos
        own = _follow_group(c, follow_groups)
        reason, because = _reason(
            c,
            _PARTS[int(top_part[j])],
            float(parts[j, 0]),
            # The follow its group is for: a story of a followed section the reading serves,
            # from a followed source it does not, is there for the source.
            c.source if own is not None and own[0] == "source" else followed[j],
            profile.interests[g].anchor_story_id if near else None,
            titles,
            labels,
            # In its follow's group, a story unlike the reader's reads is there for the follow.
            math.inf if own is not None and not near else p.follow_weight,
        )
        out.append(_Scored(c, float(score[j]), g if own is None else own[1], reason, because))
    return out


def _unserved_follows(profile: Profile, prefs: Preferences, p: FeedParams,
                      pool: Sequence[FeedCandidate]) -> dict[tuple[str, str], int]:
    """The follows the reader's reading does not serve, as ("category" or "source", name key),
    each with its group (numbered after the interests'): those whose affinity is under
    `warm_follow_share` split over the reader's follows that have candidates (one without
    takes no share of the page, so it must not make the others' parts smaller either)."""
    mine = _present_follows(prefs, pool)
    each = p.warm_follow_share / max(len(mine), 1)
    affinity = {"category": profile.category_affinity, "source": profile.source_affinity}
    follows = [(kind, k) for kind, k in mine if affinity[kind].get(k, 0.0) < each]
    return {f: len(profile.interests) + i for i, f in enumerate(follows)}


def _present_follows(prefs: Preferences, pool: Sequence[FeedCandidate]) -> list[tuple[str, str]]:
    """The reader's follows that have stories among the candidates, as ("category" or
    "source", name key): the categories', then the sources', each in name order."""
    if not prefs.follow_categories and not prefs.follow_sources:
        return []  # most readers: no name keys to work out for each of ~700 candidates
    present = {("category", name_key(c.category)) for c in pool} | {
        ("source", name_key(c.source)) for c in pool}
    mine = [("category", k) for k in sorted(prefs.follow_categories)]
    mine += [("source", k) for k in sorted(prefs.follow_sources)]
    return [f for f in mine if f in present]


def _follow_caps(profile: Profile, prefs: Preferences, p: FeedParams,
                 pool: Sequence[FeedCandidate]) -> dict[tuple[str, str], int]:
    """How many stories of one source the top may hold, in place of `max_per_source`, for a
    story of a follow, by ("source" or "category", name key). A new reader's follow is held by
    its turns, so by nothing here. Once the reader has read, a follow may have the part of the
    top a follow gets (`warm_follow_share`, split between the follows): a followed section
    that one feed fills (a site's "business" feed, each BBC section) was held to 3 of 20 as
    any source, the same 3 as before the follow; uncapped, it took every slot its reader's
    interests could not fill from their own capped sources (15 of 20 on BBC). A source the
    reading serves has no group: its stories are in the reader's interests, and uncapped they
    filled them (a reader who reads and follows one big site had 9-12 of 20 from it). A
    section the reading serves keeps the cap: its sources are as many as ever."""
    if not prefs.follow_sources and not prefs.follow_categories:
        return {}
    if profile.is_cold:
        return dict.fromkeys([*(("source", k) for k in prefs.follow_sources),
                              *(("category", k) for k in prefs.follow_categories)], p.top_n)
    part = max(p.max_per_source,
               math.ceil(p.top_n * p.warm_follow_share / max(len(_present_follows(prefs, pool)), 1)))
    own = [f for f in _unserved_follows(profile, prefs, p, pool) if f[0] == "category"]
    return dict.fromkeys([*(("source", k) for k in prefs.follow_sources), *own], part)


def _follow_group(c: FeedCandidate, groups: Mapping[tuple[str, str], int]
                  ) -> tuple[str, int] | None:
    """The candidate's unserved follow, its category's before its source's, as (the kind
    followed, its group)."""
    if not groups:  # most readers: no name keys to work out for each of ~700 candidates
        return None
    for follow in (("category", name_key(c.category)), ("source", name_key(c.source))):
        if follow in groups:
            return follow[0], groups[follow]
    return None


def _warm_shares(profile: Profile, scored: Sequence[_Scored], p: FeedParams) -> dict[int, float]:
    """Each interest's share of the page (its weight); when follows have groups of their own
    (`_unserved_follows`, with candidates), they split `warm_follow_share` evenly and the
    interests the rest, in proportion."""
    shares = {g: it.weight for g, it in enumerate(profile.interests)}
    follows = sorted({s.group for s in scored} - shares.keys())
    if not follows:
        return shares
    rest = 1.0 - p.warm_follow_share
    return {g: w * rest for g, w in shares.items()} | dict.fromkeys(follows, p.warm_follow_share / len(follows))


_PARTS = ("interest", "co_read", "trending", "fresh")


def _columns(pool: Sequence[FeedCandidate], now: datetime, p: FeedParams) -> dict[str, np.ndarray]:
    """The candidate-only score terms as arrays (one pass over the candidates)."""
    return {
        "co_read": np.array([max(c.co_read, 0.0) for c in pool], dtype=np.float64),
        "trending": np.array([max(c.trending, 0.0) for c in pool], dtype=np.float64),
        "fresh": np.array([_freshness(c, now, p) for c in pool], dtype=np.float64),
        "ctr": np.array([_ctr_term(c, p) for c in pool], dtype=np.float64),
        "source_weight": p.source_weight_weight
        * np.log(np.maximum([c.source_weight for c in pool], 1e-3)),
    }


def _reason(
    c: FeedCandidate,
    top: str,
    interest: float,
    followed: str | None,
    anchor: int | None,
    titles: Mapping[int, str],
    labels: Mapping[str, str],
    follow_part: float,
) -> tuple[str, int | None]:
    if top == "co_read" and c.co_read_anchor is not None:
        t = titles.get(c.co_read_anchor)
        text = f"readers of “{t}” also read this" if t else "readers with your taste read this"
        return text, c.co_read_anchor
    if top in ("trending", "fresh") and (label := _label(c, labels)):
        return (f"trending in {label}" if top == "trending" else f"new in {label}"), None
    # `interest` is the weighted interest part of the score, not a cosine: against a fixed 0.3
    # (a cosine of 0.2), a followed film came "because you read" a basketball story it was
    # barely like. The follow is the reason while its own part of the score weighs more.
    if followed and interest < follow_part:
        return f"you follow {followed}", None
    if anchor is None:  # too far from the reader's interest to say it comes from their reads
        label = _label(c, labels)
        return (f"more in {label}" if label else "more to read"), None
    t = titles.get(anchor)
    return (f"because you read “{t}”" if t else "like stories you read"), anchor


def _cold_groups(pool: Sequence[FeedCandidate], prefs: Preferences
                 ) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
    """A new reader's groups: one a section, by name key (grouped by stored spelling, a section
    stored as "Politics" and "politics" took two turns of a new reader's feed), and one a
    followed source; and the follows' groups, as `_follow_group` reads them (a followed
    section's is its own). A followed source had no group: its stories took their sections'
    turns, and it had 3 of 30 stories, as an unfollowed one, where a followed section had 9."""
    cats = sorted({name_key(c.category) for c in pool})
    sections = {cat: i for i, cat in enumerate(cats)}
    follows = {f: sections[f[1]] if f[0] == "category" else len(cats) + i
               for i, f in enumerate(_present_follows(prefs, pool))}
    return sections, follows


# The group of a new reader's stories that take no turn (`cold_quiet_days`): its share is 0.
_QUIET = -1


def _quiet_before(pool: Sequence[FeedCandidate], now: datetime, p: FeedParams) -> datetime | None:
    """The time before which a new reader's story takes no turn (`cold_quiet_days`); None when
    no candidate has a time. Pure."""
    times = [c.published_at for c in pool if c.published_at is not None]
    return min(max(times), now) - timedelta(days=p.cold_quiet_days) if times else None


def _score_cold(
    pool: Sequence[FeedCandidate], prefs: Preferences, now: datetime, p: FeedParams,
    labels: Mapping[str, str], sections: Mapping[str, int], follows: Mapping[tuple[str, str], int],
    quiet_before: datetime | None = None,
) -> list[_Scored]:
    out = []
    for c in pool:
        trend = p.cold_trending_weight * math.log1p(max(c.trending, 0.0))
        fresh = p.cold_fresh_weight * _freshness(c, now, p)
        followed = _follow(c, prefs, labels)
        score = (
            trend
            + fresh
            + _ctr_term(c, p)
            + (p.follow_weight if followed else 0.0)
            + p.source_weight_weight * math.log(max(c.source_weight, 1e-3))
        )
        where = f" in {label}" if (label := _label(c, labels)) else ""
        if followed:
            reason = f"you follow {followed}"
        elif trend >= fresh and c.trending > 0:
            reason = f"trending{where}"
        else:
            reason = f"latest{where}"
        own = _follow_group(c, follows)  # a followed section's story: its section's group
        group = own[1] if own is not None else sections[name_key(c.category)]
        if quiet_before is not None and c.published_at is not None and c.published_at < quiet_before:
            group = _QUIET
        out.append(_Scored(c, score, group, reason, None))
    return out


def _cold_shares(scored: Sequence[_Scored], followed: Collection[int],
                 params: FeedParams) -> dict[int, float]:
    """Each group's share of a new reader's feed: equal, a followed section's or source's
    larger (`followed`: their groups); the stories that take no turn none (`_QUIET`)."""
    weight = {s.group: 0.0 if s.group == _QUIET else params.cold_follow_share
              if s.group in followed else 1.0 for s in scored}
    total = sum(weight.values())
    return {g: w / total for g, w in sorted(weight.items())}


def _exploration_pool(profile: Profile, prefs: Preferences, scored: Sequence[_Scored],
                      now: datetime, labels: Mapping[str, str]) -> list[_Scored]:
    """Stories outside the reader's categories, read or followed, and their followed sources,
    the popular ones first, shuffled by a seed of reader and day so exploration moves day by
    day but stays put while a reader pages through one snapshot."""
    # The reader's sections by name key: "Politics" is nothing different to a reader of
    # "politics"; nor is a section they follow, which they chose, nor a source they follow
    # (its stories are theirs by choice, in any section).
    known = profile.category_affinity.keys() | prefs.follow_categories
    pool = [s for s in scored if (key := name_key(s.cand.category)) and key not in known
            and not (prefs.follow_sources and name_key(s.cand.source) in prefs.follow_sources)]
    if not pool:
        return []
    day = now.strftime("%Y-%m-%d")
    seed = int.from_bytes(
        hashlib.blake2b(f"{profile.reader}|{day}".encode(), digest_size=8).digest(), "little"
    )
    ids = np.array([s.cand.id for s in pool], dtype=np.uint64)
    jitter = _mix64(ids ^ np.uint64(seed)).astype(np.float64) / 2.0**64
    trend = np.log1p(np.array([max(s.cand.trending, 0.0) for s in pool]))
    order = np.lexsort((ids, -(trend + jitter)))
    out = []
    for j in order:
        s = pool[int(j)]
        label = _label(s.cand, labels)
        where = f"trending in {label}" if s.cand.trending > 0 else label
        out.append(_Scored(s.cand, s.score, s.group, f"something different: {where}", None))
    return out


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a well-spread, platform-independent hash of 64-bit ints."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


# --- assembly --------------------------------------------------------------------------------


class _Top:
    """Constraint state for the first top_n positions."""

    def __init__(self, params: FeedParams, caps: Mapping[tuple[str, str], int] | None = None,
                 lift: Callable[[FeedCandidate], float] | None = None):
        self.params = params
        self.caps = caps or {}  # `_follow_caps`: a follow's cap, for `max_per_source`
        self.lift = lift or (lambda c: 0.0)  # a story's follow bonus, for `clearly_preferred`
        self.per_source: dict[str, int] = {}
        self.events: set[int] = set()
        self.vectors: np.ndarray | None = None  # placed rows, preallocated to top_n
        self.n = 0

    def source_cap(self, c: FeedCandidate) -> int:
        """The stories of `c`'s source the top may hold when `c` is placed: the larger of its
        follows' caps (its source's, its section's), else `max_per_source`."""
        cap = self.params.max_per_source
        if not self.caps:
            return cap
        return max(self.caps.get(("source", name_key(c.source or "")), cap),
                   self.caps.get(("category", name_key(c.category or "")), cap))

    def fits(self, c: FeedCandidate) -> bool:
        return not self.over_cap(c) and self.new_event(c)

    def over_cap(self, c: FeedCandidate) -> bool:
        """Whether `c`'s source has its cap's stories in the top already."""
        n = self.per_source.get(c.source, 0) if c.source else 0
        return n >= self.params.max_per_source and n >= self.source_cap(c)

    def clearly_preferred(self, s: _Scored, rivals: Sequence[_Scored], margin: float) -> bool:
        """Whether `s`, held by its source's cap, scores `margin` above the best of `rivals`
        (its group's queue, best last) that the top takes: the slot is its group's, and
        nothing else of the group comes near. None fitting: held, as ever (the slot goes to
        another group). Scores are compared without their follow bonus (`lift`): past a
        follow's cap as past `max_per_source`, so that following the one site a reader reads
        never gets them fewer of its stories (held to the follow's 7 of 20, a politics-only
        BBC reader who followed bbc-politics had 7 of their first 15 from it, 14 not
        following it), nor, the bonus counted, all of them: `follow_weight` is as large as
        the margin, and the follow's cap is there so that a big site followed and read does
        not fill the page (`_follow_caps`)."""
        if math.isinf(margin) or not self.new_event(s.cand):
            return False
        for r in reversed(rivals):
            if self.fits(r.cand):
                return s.score - self.lift(s.cand) >= r.score - self.lift(r.cand) + margin
        return False

    def new_event(self, c: FeedCandidate) -> bool:
        """Whether `c` is of no event the top holds (`event_id`, `same_event_cos`)."""
        if c.event_id is not None and c.event_id in self.events:
            return False
        if self.n and self.vectors is not None:
            if float((self.vectors[: self.n] @ c.vector).max()) >= self.params.same_event_cos:
                return False
        return True

    def copy_of(self, c: FeedCandidate) -> bool:
        """Whether `c` is word for word a placed story (`copy_cos`), under any headline."""
        return bool(self.n and self.vectors is not None
                    and float((self.vectors[: self.n] @ c.vector).max()) >= self.params.copy_cos)

    def take(self, c: FeedCandidate) -> None:
        if c.source:
            self.per_source[c.source] = self.per_source.get(c.source, 0) + 1
        if c.event_id is not None:
            self.events.add(c.event_id)
        if self.vectors is None:
            self.vectors = np.zeros((max(self.params.top_n, 1), len(c.vector)), dtype=np.float32)
        if self.n < len(self.vectors):
            self.vectors[self.n] = c.vector
            self.n += 1


class _Shown:
    """The stories placed so far (or those the earlier pages showed), to keep a copy of one of
    them (the same wire story on another site, another id, under its headline at cosine
    `copy_title_cos` or closer) out of the rest of the feed: `_Top` only moved copies past the
    top, so the second page of a feed began with the first page's headlines again. A story is
    never a copy of itself: a shown story stays in the order (`page_of` skips it by id), and
    its copy is left out though the crowd's recount between the pages now ranks the copy
    first. By headline first, then by vector: a cosine to every placed story for every
    candidate cost a deep page (460 shown) 30 ms more; a copy under another headline, word
    for word, is held out of the top by `_Top.copy_of`."""

    def __init__(self, params: FeedParams, shown: Sequence[FeedCandidate] = ()):
        self.params = params
        self.ids: set[int] = set()
        self.by_title: dict[str, list[np.ndarray]] = {}
        for c in shown:
            self.take(c)

    def copy_of_placed(self, c: FeedCandidate) -> bool:
        if c.id in self.ids or not (same := self.by_title.get(headline_key(c.title))):
            return False
        return any(float(v @ c.vector) >= self.params.copy_title_cos for v in same)

    def take(self, c: FeedCandidate) -> None:
        if c.id not in self.ids:
            self.ids.add(c.id)
            if key := headline_key(c.title):
                self.by_title.setdefault(key, []).append(c.vector)


def _better_held(s: _Scored, deferred: Sequence[_Scored], top: _Top,
                 rivals: Sequence[_Scored], margin: float) -> _Scored:
    """`s`, clearly preferred past its source's cap, or the best story of its source and
    group held back earlier that scores above it and is clearly preferred now: it was held
    by a rival since placed, and `s` took a top slot while its source's better story went
    below the top."""
    better = [d for d in deferred if d.group == s.group and d.cand.source == s.cand.source
              and d.score > s.score and top.clearly_preferred(d, rivals, margin)]
    return max(better, key=lambda d: (d.score, -d.cand.id), default=s)


def _assemble(
    scored: Sequence[_Scored],
    shares: Mapping[int, float],
    explore: Sequence[_Scored],
    p: FeedParams,
    balance: float,
    limit: int | None = None,
    served: Collection[int] = (),
    caps: Mapping[str, int] | None = None,
    cap_margin: float = math.inf,
    lift: Callable[[FeedCandidate], float] | None = None,
) -> list[_Scored]:
    """The placed order. `caps`: the follows' caps in the top (`_follow_caps`), in place of
    `max_per_source`: held to it, a followed source or a one-feed section had 3 of 20 stories
    whatever its share, as any other. `cap_margin`: how far above its group's best story
    that fits a story past its source's cap takes its slot all the same
    (`FeedParams.source_cap_margin`; inf: never), by scores without `lift` (a story's follow
    bonus, `_Top.clearly_preferred`)."""
    by_score = sorted(scored, key=lambda s: (-s.score, s.cand.id))
    queues: dict[int, list[_Scored]] = {}
    for s in by_score:
        queues.setdefault(s.group, []).append(s)
    for q in queues.values():
        q.reverse()  # pop() from the end = best first
    total = sum(shares.get(g, 0.0) for g in queues) or 1.0
    share = {g: shares.get(g, 0.0) / total for g in queues}
    taken = dict.fromkeys(queues, 0)
    explore_q = list(reversed(explore))
    every = round(1.0 / p.explore_share) if p.explore_share > 0 and explore_q else 0
    placed_ids: set[int] = set()
    top = _Top(p, caps, lift)
    shown = _Shown(p)
    # Copies of what the earlier pages showed are placed as ever and left out of the order
    # after: dropped instead, they shifted the balance of the pages' groups, and the order's
    # other stories with it (pages of an unchanged feed no longer matched one whole order).
    earlier = _Shown(p, [s.cand for s in scored if s.cand.id in served]) if served else None
    hidden: set[int] = set()
    deferred: list[_Scored] = []
    out: list[_Scored] = []
    n_main = 0
    n = len(scored) if limit is None else min(len(scored), max(limit, 0))

    def next_main() -> _Scored | None:
        nonlocal n_main
        while True:
            live = [g for g, q in queues.items() if q]
            if not live:
                return None
            # A group without a share (a new reader's stories that are no news) comes after
            # the others: by the balance alone, it won each slot that the sections left with
            # stories, far ahead of their shares once the others ran out, could not.
            live = [g for g in live if share[g] > 0] or live
            g = max(
                live,
                key=lambda g: (
                    queues[g][-1].score + balance * (share[g] * (n_main + 1) - taken[g]),
                    -queues[g][-1].cand.id,
                ),
            )
            s = queues[g].pop()
            if s.cand.id in placed_ids:
                continue
            if shown.copy_of_placed(s.cand):
                placed_ids.add(s.cand.id)  # out of the feed, not down it
                continue
            taken[g] += 1
            n_main += 1
            return s

    while len(out) - len(hidden) < n:
        pos = len(out)
        if pos == p.top_n and deferred:
            # Past the top: what the constraints held back comes back in score order.
            for s in deferred:
                taken[s.group] -= 1
                n_main -= 1
                queues[s.group].append(s)
            for q in queues.values():
                q.sort(key=lambda s: (s.score, -s.cand.id))
            deferred = []
        pick = None
        if every and (pos + 1) % every == 0:
            x = len(explore_q) - 1
            while x >= 0:  # best first; what does not fit waits for a later slot
                s = explore_q[x]
                if s.cand.id in placed_ids or shown.copy_of_placed(s.cand) or (
                        pos < p.top_n and top.copy_of(s.cand)):
                    explore_q.pop(x)
                elif pos >= p.top_n or top.fits(s.cand):
                    pick = explore_q.pop(x)
                    break
                x -= 1
        while pick is None:
            s = next_main()
            if s is None:
                break
            if pos < p.top_n and not top.fits(s.cand):
                if top.copy_of(s.cand):
                    placed_ids.add(s.cand.id)  # out of the feed, not down it (_Shown)
                    continue
                if not (top.over_cap(s.cand)
                        and top.clearly_preferred(s, queues[s.group], cap_margin)):
                    deferred.append(s)
                    continue
                held = _better_held(s, deferred, top, queues[s.group], cap_margin)
                if held is not s:  # it takes the slot, `s` waits in its place
                    deferred[deferred.index(held)] = s
                    s = held
            pick = s
        while pick is None and deferred:  # fewer candidates than top_n and all the rest held back
            s = deferred.pop(0)
            if s.cand.id not in placed_ids and not shown.copy_of_placed(s.cand):
                pick = s
        if pick is None:
            break
        placed_ids.add(pick.cand.id)
        shown.take(pick.cand)
        if pos < p.top_n:
            top.take(pick.cand)
        if earlier is not None and earlier.copy_of_placed(pick.cand):
            hidden.add(pick.cand.id)
        out.append(pick)
    return [s for s in out if s.cand.id not in hidden] if hidden else out
