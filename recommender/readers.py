"""The personalized-feed flow: a reader's events -> profile -> candidates -> ranked page.

The orchestrator for feeds (the pure parts live in profile, popularity and feed). What the
crowd does (trending, click-through, co-reads) is computed from the event log the product
records, cached for a few seconds so a burst of feed requests reads the log once.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from aggregator.names import name_key
from aggregator.sponsored import marked
from aggregator.store import EventLog, Store, calls_limited, within_call_limit
from aggregator.textclean import headline_key
from recommender.corpus import Corpus, StoryMeta
from recommender.feed import (
    FeedCandidate,
    FeedCursor,
    FeedItem,
    FeedParams,
    candidates_for,
    copies_of_read,
    copy_sets,
    decode_cursor,
    encode_cursor,
    feed_order,
    mute_filter,
    page_limit,
    page_of,
    personalize_related,
    pinned_candidates,
    rank_trending,
)
from recommender.popularity import (
    CoReadTable,
    co_read_columns,
    co_read_scores,
    copies_counted,
    count_columns,
    ctr_prior,
    ctr_table,
    event_columns,
    trending_columns,
    trending_prior,
)
from recommender.profile import Event, Preferences, Profile, build_profile, empty_profile
from recommender.weights import SourceWeights

log = logging.getLogger("tidings.feed")

TRENDING_HEAD = 500  # trending stories any feed or trending list may draw from
# Newest stories a followed category or source brings into a feed's candidates, and how many
# follows of each kind are read (one indexed query each, per feed page).
FOLLOW_CANDIDATES = 50
FOLLOWS_READ = 10
# A new reader's feed shows every section in turn (`feed.cold_start`), but it can only turn to
# sections among its candidates: after a busy hour in one section, the latest 200 stories were
# all of it. So a cold feed also draws on the newest stories of each category (at most
# SECTIONS_READ categories, one indexed query each, per snapshot: a first page after a new
# story was stored reads them again). With more categories, those with the newest stories
# (`sections_to_read`).
SECTION_HEAD = 20
SECTIONS_READ = 24
SECTION_SNAPSHOTS_KEPT = 16
# The stories whose copies on other sites the recount looks for (feed.copy_sets): the head of
# trending, which is all a feed or trending list draws from the crowd (TRENDING_HEAD, and the
# categories' heads), and the newest stories shown (highest ids: stored last), whose readers
# shown the new-story credit weighs while they are new (feed.new_story_credit: a story shown
# and read by none trends with nothing). Every story's headline keyed at each recount cost
# ~0.35 s at 85k stories, against a ~0.5 s recount; an older story below the trending head
# has few readers, and its copies' few go uncounted with it.
COPIES_HEAD = 5_000
TRENDING_HEADS_KEPT = 64  # categories whose trending head is kept between recounts
# Most of the API's time a crowd recount may take: a recount costs more as the event log grows
# (~4 s at 200k events of 30 days), so past the TTL it waits this many times its own last cost.
CROWD_SHARE = 0.1
PROFILE_EVENTS = 2_000  # newest clicks and reads a profile's interests are built from (CPU)
PAGES_READ = 200  # latest pages (events' `page`) whose articles count as read: 1,600 URLs, 4 queries
PREF_KEYS = ("follow_categories", "mute_categories", "follow_sources", "mute_sources", "mute_topics")


@dataclass(frozen=True)
class Crowd:
    """What all readers did lately, as of `at`."""

    at: datetime
    trending: dict[int, float]
    ctr: dict[int, float]
    co_read: CoReadTable
    trending_top: dict[int, float]  # the head of `trending`, sorted once instead of per request
    ctr_prior: float = 0.05  # what `ctr` was smoothed toward (popularity.ctr_prior)
    impressions: dict[int, int] = dataclasses.field(default_factory=dict)  # readers shown each story
    trending_prior: float = 0.0  # popularity.trending_prior of `trending_top`
    # The copies of the heads' stories on other sites ({story: its copies, the one a list
    # shows first}, `compute_crowd`), and those not first of their own set, which no head holds.
    copies: Mapping[int, Sequence[int]] = dataclasses.field(default_factory=dict)
    hidden: frozenset[int] = frozenset()


@dataclass(frozen=True)
class FeedPage:
    reader: str
    items: list[tuple[StoryMeta, FeedItem]]
    next: str | None


def compute_crowd(log: EventLog, now: datetime, originals: Mapping[int, int] | None = None,
                  gone: Collection[int] = (),
                  copies_among: Callable[[Sequence[int]], Mapping[int, Sequence[int]]] | None = None
                  ) -> Crowd:
    """Trending, smoothed CTR and co-reads from the event log's columns, an event of a story
    stored as a copy (`originals`: copy id -> original id) counted for its original. Counted
    under the copy's id, which no feed or trending list holds, the clicks of readers who read
    a wire story on a syndicating site were lost: a story read on five sites trended as if read
    on one. A reader of two copies counts once, as every count here is per reader. The events
    of stories no longer stored (`gone`: kept for the readers' exports) count for nothing: a
    story taken down held a place at the head of trending.

    A story stored apart on other sites (not word for word: its own id, its own readers) is
    credited with the distinct readers, impressions and clicks of all its copies
    (`copies_among`: the copies among the ids given, feed.copy_sets over their headlines and
    vectors, asked of the heads only, see COPIES_HEAD), each set in the order a list shows its
    copies (the first is the one shown). With its copies' figure, every copy of a story read
    on five sites sat in the head of trending: five of its TRENDING_HEAD places (pushing other
    stories out, though a list shows one copy, `feed._Shown`) and five times its weight in the
    median of `trending_prior`. The head holds the first copy of each set only.
    Pure but for `copies_among`."""
    ids = [originals.get(i, i) for i in log.story_ids] if originals else log.story_ids
    cols = event_columns(log.readers, ids, log.at_s, log.types).without(gone)
    trending = trending_columns(cols, now=now)
    counts = count_columns(cols)
    prior = ctr_prior(counts)  # of the stories, before their copies' readers are shared out
    out: frozenset[int] = frozenset()
    copies: Mapping[int, Sequence[int]] = {}
    if copies_among is not None:
        newest_shown = sorted(i for i, c in counts.items() if c.impressions)[-COPIES_HEAD:]
        heads = dict.fromkeys([*_head(trending, COPIES_HEAD), *newest_shown])
        copies = copies_among(list(heads)) if heads else {}
        grouped_trending, grouped_counts = copies_counted(cols, copies, now=now)
        trending.update((i, v) for i, v in grouped_trending.items() if v > 0)
        counts.update(grouped_counts)
        out = not_shown(copies)
    top = {i: trending[i] for i in trending_order(trending, out)[:TRENDING_HEAD]}
    return Crowd(now, trending, ctr_table(counts, prior=prior), co_read_columns(cols), top, prior,
                 {i: c.impressions for i, c in counts.items() if c.impressions},
                 trending_prior(top.values()), copies, out)


def trending_order(trending: Mapping[int, float], hidden: Collection[int]) -> list[int]:
    """The ids of `trending`, most read first (ties: the lower id), without `hidden` (the
    copies a list does not show first, `not_shown`): the one order the overall head and each
    category's are cut from. A category's head was cut from all of them: a story on four
    sites took four of its places, and pushed out stories a list would have shown. Pure."""
    return [i for i, _ in sorted(((i, v) for i, v in trending.items() if i not in hidden),
                                 key=lambda kv: (-kv[1], kv[0]))]


def not_shown(copies: Mapping[int, Sequence[int]]) -> frozenset[int]:
    """The stories in `copies` ({story: its copies, itself included, the one a list shows
    first}) that are not the first of their own set. In one order for all sets (as
    `FeedService._copies_among` gives them), a story whose copies are not all each other's
    leads, copy by copy to the first of each, to one that is first of its own: no story is
    left out with all its copies. Pure."""
    return frozenset(i for i, same in copies.items() if same and same[0] != i)


def stand_ins(dropped: Iterable[int], copies: Mapping[int, Sequence[int]], fits: Collection[int]) -> list[int]:
    """For each story in `dropped` (left out of a reader's list: they muted its site,
    source or topic), the first of its copies (`copies`: {story: its copies, in the order a
    list shows them}) among `fits` (those the reader may be shown), each once. The heads
    hold the first copy of a story only: without one in its place, a reader who muted the
    site of that copy lost the whole story, though it ran on sites they did not mute. Pure."""
    out: dict[int, None] = {}
    for i in dropped:
        if (first := next((c for c in copies.get(i, ()) if c in fits), None)) is not None:
            out[first] = None
    return list(out)


def may_show(c: FeedCandidate, profile: Profile, muted: Callable[..., bool]) -> bool:
    """Whether a `reader=` list may show the reader this story: not read, not muted. Pure."""
    return c.id not in profile.read and not muted(c.category, c.source, c.title, c.topics)


def _head(scores: Mapping[int, float], n: int) -> list[int]:
    """The ids of the `n` highest positive scores, in no order. Pure."""
    ids = np.fromiter(scores.keys(), np.int64, len(scores))
    values = np.fromiter(scores.values(), np.float64, len(scores))
    if len(ids) > n:
        keep = np.argpartition(-values, n)[:n]
        ids, values = ids[keep], values[keep]
    return ids[values > 0].tolist()


def crowd_due(age_s: float, ttl_s: float, last_cost_s: float, share: float = CROWD_SHARE) -> bool:
    """Whether a crowd computed `age_s` ago is recounted: after `ttl_s`, and no sooner than the
    last recount's cost allows (recounts take at most `share` of the time). Pure."""
    return age_s >= max(ttl_s, last_cost_s / share)


def snapshot_time(now: datetime) -> datetime:
    """A feed's snapshot: the whole second at or after `now`. Up, not down: the profile leaves
    out events after the snapshot, and rounded down that dropped the current second's, so a
    story read a moment ago came back at the top of the reader's feed. Pure."""
    whole = now.replace(microsecond=0)
    return whole if whole == now else whole + timedelta(seconds=1)


def sections_to_read(newest: Mapping[str, datetime | None], limit: int = SECTIONS_READ) -> list[str]:
    """The name keys of the `limit` sections whose newest story is the newest, from each stored
    category name and its newest story's time (`MetaTable.category_newest`): the spellings of
    one section are one, with the newest of their times. Chosen as the first names in
    alphabetical order, a 25th section was never read however busy it was, while a section
    quiet for months took a query. Pure."""
    latest: dict[str, datetime] = {}
    for name, at in newest.items():
        key = name_key(name)
        if key:  # stories without a category are among the latest 200 anyway
            when = at or datetime.min.replace(tzinfo=UTC)
            latest[key] = max(when, latest.get(key, when))
    return sorted(latest, key=lambda k: (-latest[k].timestamp(), k))[:limit]


def preferences_of(raw: dict | None) -> Preferences:
    """Category and source names as their keys; topics in lower case (matched on text).
    A blank name is none: a form's empty field (`"mute_categories": [""]`) muted every story
    stored without a category, as if "" were a section."""
    raw = raw or {}
    return Preferences(**{k: frozenset(str(v).lower() if k == "mute_topics" else name_key(str(v))
                                       for v in raw.get(k, ()) if str(v).strip()) for k in PREF_KEYS})


def stored_preferences(raw: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """What a reader's preferences are stored (and read back) as: each list sorted, each name
    once, in the first spelling given, without surrounding space, blanks left out. Stored as
    sent, `["Politics", " POLITICS "]` was read back as two follows of one section (and took
    two of the list's places), and `[""]` as a follow of nothing. Pure."""
    out: dict[str, list[str]] = {}
    for k in PREF_KEYS:
        first: dict[str, str] = {}
        for name in raw.get(k, ()):
            if key := name_key(name):
                first.setdefault(key, name.strip())
        out[k] = sorted(first.values())
    return out


def follow_mute_conflicts(prefs: Mapping[str, Sequence[str]]) -> list[str]:
    """The names `prefs` both follows and mutes, of one kind ("category X", "source Y"), as
    the follow spells them; none is a valid set. Stored both, the mute won in silence: the
    reader saw none of a section they had just followed, and a PUT replaces the whole set, so
    there is no "latest choice" in it to keep. Pure."""
    out = []
    for kind, kinds in (("category", "categories"), ("source", "sources")):
        muted = {name_key(n) for n in prefs.get(f"mute_{kinds}", ())}
        out += [f"{kind} {n!r}" for n in prefs.get(f"follow_{kinds}", ()) if name_key(n) in muted]
    return out


def unknown_follows(prefs: Mapping[str, Sequence[str]], *, categories: Iterable[str],
                    sources: Iterable[str]) -> dict[str, list[str]]:
    """The follows in `prefs` that match no category or source in `categories` / `sources`
    (the names known now), as given, under their key; only keys with any. They are kept (a
    reader may follow a section before its first story), but a client may warn of a typo
    ("poltics"), which was accepted in silence. Pure."""
    known = {"follow_categories": {name_key(c) for c in categories},
             "follow_sources": {name_key(s) for s in sources}}
    out: dict[str, list[str]] = {}
    for key, names in known.items():
        if missing := [n for n in prefs.get(key, ()) if name_key(n) not in names]:
            out[key] = missing
    return out


def _said_failed(task: asyncio.Task) -> None:
    """A recount that failed, said once, in one line: no request may be waiting for it (a
    stale crowd is served meanwhile), and unread, asyncio logged it with a traceback."""
    if not task.cancelled() and task.exception() is not None:
        log.warning("feed.crowd_recount_failed: %s; the crowd as last counted is served",
                    str(task.exception()).splitlines()[0] if str(task.exception())
                    else type(task.exception()).__name__)


class FeedService:
    def __init__(self, store: Store, corpus: Corpus, *, page_size: int = 20,
                 max_per_source: int = 3, exploration_share: float = 0.1, history_days: int = 30,
                 source_weights: SourceWeights | dict[str, float] | None = None, crowd_ttl_s: float = 10.0,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.store = store
        self.corpus = corpus
        self.page_size = page_size
        self.params = FeedParams(max_per_source=max_per_source, explore_share=exploration_share)
        self.history_days = history_days
        self.source_weights = SourceWeights.of(source_weights)
        self.crowd_ttl_s = crowd_ttl_s
        self.clock = clock
        self._crowd: tuple[float, Crowd] | None = None
        self._crowd_cost_s = 0.0  # wall time of the last recount
        self._refreshing: asyncio.Task | None = None
        self._heads_of: Crowd | None = None  # the crowd `_heads` were cut from
        self._heads: dict[str, list[int]] = {}
        self._sections: dict[int | None, list[int]] = {}  # section heads by snapshot newest id

    # ------------------------------------------------------------ inputs

    async def crowd(self) -> Crowd:
        """What the crowd did lately. Served stale while a fresh copy is computed in the
        background, so no feed request waits for the event log to be read and counted."""
        hit = self._crowd
        if hit is None:
            # The first count, which the requests wait for: each for at most its database
            # limit (api.database_timeout_s), while the count goes on aside for the next ones.
            # Counted in the request, a log slower to read than the limit was cut every time,
            # and no feed was ever served; and each request that came before it ended made
            # a count of its own.
            return await within_call_limit(self._recount())
        if crowd_due(time.monotonic() - hit[0], self.crowd_ttl_s, self._crowd_cost_s):
            self._recount()
        return hit[1]

    def _recount(self) -> asyncio.Task:
        """The recount under way, else a new one, in the background."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh_aside())
            self._refreshing.add_done_callback(_said_failed)
        return self._refreshing

    async def _refresh_aside(self) -> Crowd:
        # Started by a feed request, whose database limit the task would inherit: it may
        # rightly read long, and goes on whether or not a request still waits.
        with calls_limited(None):
            return await self._refresh()

    async def _refresh(self) -> Crowd:
        started = time.monotonic()
        now = self.clock()
        since = now - timedelta(days=self.history_days)
        log = await self.store.recent_events(since, types=("impression", "click", "read"))
        originals, gone = await self._stored(set(log.story_ids))
        crowd = await asyncio.to_thread(compute_crowd, log, now, originals, gone,  # CPU off the event loop
                                        self._copies_among)
        done = time.monotonic()
        self._crowd, self._crowd_cost_s = (done, crowd), done - started
        return crowd

    async def profile(self, reader: str, now: datetime) -> tuple[Profile, Preferences]:
        info = await self.store.reader(reader)
        prefs = preferences_of(info["preferences"] if info else None)
        since = now - timedelta(days=self.history_days)
        # Clicks and reads apart from impressions: a widget posts an impression a page view,
        # and 2,000 of them pushed every read out of a shared limit (read stories came back,
        # the reader went cold).
        engaged = await self.store.reader_events(reader, since=since, types=("click", "read"),
                                                 limit=PROFILE_EVENTS)
        records = [*engaged, *await self.store.reader_events(reader, since=since, types=("impression",))]
        if not records:
            return empty_profile(reader), prefs
        # Interests come from the newest events only (bounded CPU), but every story clicked or
        # read in the window stays read: past 2,000 clicks and reads, the older ones fell out of
        # `read` and came back in the reader's feed and related blocks. Asked only when the
        # limit was reached: below it, `engaged` holds them all.
        read_ids = (await self.store.reader_story_ids(reader, since=since, until=now)
                    if len(engaged) >= PROFILE_EVENTS else set())
        # A later page of a feed builds the profile as of the first page's snapshot (its order
        # holds), which left out what was read since: a story read between two pages (in a
        # related block, on another device) came on the next page. Read, it stays out; it
        # shapes no interest until the next feed.
        read_ids = {*read_ids, *(e.story_id for e in engaged if e.at > now)}
        # The articles the reader's blocks were shown under (the widget's `page`) are stories
        # they had open: the article they clicked away from came back in their feed, third,
        # "because you read" the story they clicked. Read, they stay out (they shape no
        # interest: a page view says less than a click), from the next page of a feed on too,
        # as a read is. The latest PAGES_READ of them: a few a visit, 8 spellings each looked up.
        newest_first = sorted((e for e in records if e.page), key=lambda e: e.at, reverse=True)
        read_ids |= await self.store.stories_at(list(dict.fromkeys(e.page for e in newest_first))[:PAGES_READ])
        # A story the reader read on a site that runs it word for word is stored as a copy
        # (`duplicate_of`), which no index holds: the read shaped no interest and left the
        # original, the same story, to come at the top of their feed. It is a read of the
        # original.
        # A story deleted since (its events stay, for the reader's export) has no vector or
        # card: it shapes no interest and is never shown.
        originals, _ = await self._stored({e.story_id for e in records} | read_ids)
        read_ids |= {originals[i] for i in read_ids if i in originals}
        events = [Event(e.reader, originals.get(e.story_id, e.story_id), e.type, e.at, e.dwell_s)
                  for e in records]
        meta = {i: (m.category, m.source) for i in {e.story_id for e in events}
                if (m := self.corpus.meta.get(i)) is not None}
        profile = build_profile(reader, events, self._vectors, meta, now=now, read_ids=read_ids)
        return profile, prefs

    def _params(self, crowd: Crowd) -> FeedParams:
        """The ranking's parameters, a story's click-through measured against the crowd's own
        average: against a fixed 5%, on a site whose readers click 30% of what they are
        shown, a story shown five times and never clicked (smoothed to 24%) ranked above the
        stories nobody had seen yet, and on one with 1% every story shown lost to them."""
        return replace(self.params, ctr_prior=crowd.ctr_prior, trending_prior=crowd.trending_prior)

    async def _stored(self, ids) -> tuple[dict[int, int], set[int]]:
        """The stories among `ids` stored as copies of another (`duplicate_of`), each with its
        original, and the ids no longer stored (deleted after their events). Only the ids the
        corpus lacks are asked about (copies, stories not embedded yet, deleted ones):
        usually none, and no query."""
        unknown = [i for i in ids if i not in self.corpus.meta]
        if not unknown:
            return {}, set()
        stories = await self.store.get_stories(unknown)
        return ({i: s.duplicate_of for i, s in stories.items() if s.duplicate_of is not None},
                set(unknown) - stories.keys())

    def _copies_among(self, ids: Sequence[int]) -> dict[int, list[int]]:
        """The copies of each story among `ids` (feed.copy_sets), by id. Called by the
        recount's thread: the cards are read under the meta table's lock, and the vectors
        under the index's lock, as a related block's are."""
        cards = self.corpus.meta.cards_off_thread(ids)
        # Vectors only for the headlines two of them share (a few in a thousand, where a
        # story's copies are): 5,000 vectors read from the index took as long as the cards.
        keys = [headline_key(c.title) for c in cards]
        shared = Counter(keys)
        cards = [c for c, key in zip(cards, keys, strict=True) if shared[key] > 1]
        known = [c.id for c in cards]
        if len(known) < 2:
            return {}
        vecs = self._vectors(known)  # one not embedded yet: a zero row, no one's copy
        sets = copy_sets([c.title for c in cards], vecs, self.params)
        # Each set in the order a trending list shows its copies (their trending and
        # click-through are the set's): the freshest first, one no list shows (a source
        # weighted 0, paid content) last, so the head keeps the copy the lists show.
        order = {c.id: (self.source_weights.excluded(c.source) or marked(c.tags),
                        -(c.ranked_at.timestamp() if c.ranked_at else float("-inf")), c.id)
                 for c in cards}
        return {known[j]: sorted((known[i] for i in same), key=order.__getitem__)
                for j, same in sets.items()}

    def _vectors(self, ids) -> np.ndarray:
        """The stories' vectors: all at once, or, when one is not embedded yet, row by row
        with a zero row for it (which build_profile and copy_sets skip)."""
        if len(ids):
            try:
                return self.corpus.vindex.get(np.asarray(ids, dtype=np.int64))
            except KeyError:
                pass
        out = np.zeros((len(ids), self.corpus.dim), dtype=np.float32)
        for row, i in enumerate(ids):
            try:
                out[row] = self.corpus.vindex.get(np.asarray([i], dtype=np.int64))[0]
            except KeyError:
                pass  # not embedded yet: a zero row, which build_profile skips
        return out

    def _candidates(self, ids, crowd: Crowd, co_read: dict) -> list[FeedCandidate]:
        # Cards, not a StoryMeta per id: a feed weighs ~700 candidates, and building each one's
        # StoryMeta was a quarter of the request (feed benchmark's data, 100k stories).
        # A source weighted 0 is out of feeds and trending ("0 keeps its stories out"), and so
        # is paid content: a feed is not to be padded with adverts.
        cards = [c for c in self.corpus.meta.cards(ids)
                 if not self.source_weights.excluded(c.source) and not marked(c.tags)]
        if not cards:
            return []
        known = [c.id for c in cards]
        vecs = self._vectors(known)
        out = []
        for row, c in enumerate(cards):
            i = c.id
            co = co_read.get(i)
            out.append(FeedCandidate(
                id=i, vector=vecs[row], category=c.category, source=c.source, published_at=c.ranked_at,
                trending=crowd.trending.get(i, 0.0), ctr=crowd.ctr.get(i),
                impressions=crowd.impressions.get(i, 0),
                co_read=co[0] if co else 0.0, co_read_anchor=co[1] if co else None,
                source_weight=self.source_weights.get(c.source, 1.0), title=c.title, topics=c.tags,
                event_id=i,
            ))
        return out

    def _without_copies(self, cands: list[FeedCandidate], profile: Profile,
                        titles: Mapping[int, str]) -> list[FeedCandidate]:
        """`cands` without the copies of what the reader read lately (their last
        `ProfileParams.max_history` stories): the same story on another site is no news to
        them. Older reads are left out by id only (a bounded cost: one product a read)."""
        recent = [i for i in profile.history if i in titles]
        if not recent:
            return cands
        read = list(zip((titles[i] for i in recent), self._vectors(recent), strict=True))
        copies = copies_of_read(cands, read, self.params)
        return [c for c in cands if c.id not in copies] if copies else cands

    def _trending_in(self, crowd: Crowd, key: str) -> list[int]:
        """The head of `crowd.trending` within one category (by its key: however the caller
        spells it, one entry), kept until the crowd is recounted (a few categories are asked
        for; the category is the caller's, so the cache is small)."""
        if self._heads_of is not crowd:
            self._heads_of, self._heads = crowd, {}
        head = self._heads.get(key)
        if head is None:
            ranked = trending_order(crowd.trending, crowd.hidden)  # a story once, as in the overall head
            cats = self.corpus.meta.categories(ranked)
            # The spellings of the category among them, each folded once (not once a story).
            spellings = {c for c in set(cats) if c is not None and name_key(c) == key}
            head = [i for i, c in zip(ranked, cats, strict=True) if c in spellings][:TRENDING_HEAD]
            if len(self._heads) < TRENDING_HEADS_KEPT:
                self._heads[key] = head
        return head

    async def _followed_ids(self, prefs: Preferences, newest: int | None) -> list[int]:
        """The newest stories of each category and source the reader follows. A follow only
        lifted the candidates that happened to be there: a new reader following politics got
        a feed of entertainment when the latest 200 stories were all entertainment."""
        ids: list[int] = []
        for field, follows in (("category", prefs.follow_categories), ("source", prefs.follow_sources)):
            for name in sorted(follows)[:FOLLOWS_READ]:  # the store matches them in any case
                ids += await self.store.latest_ids(FOLLOW_CANDIDATES, newest_id=newest, **{field: name})
        return ids

    async def _section_heads(self, newest: int | None) -> list[int]:
        """The newest stories of each category (see SECTION_HEAD) up to the snapshot's newest
        story, kept per snapshot: every page of a feed draws on the same heads (heads read
        later, without the bound, lost the stories newer ones pushed out: a page could skip
        them), and the cold feeds opened between two stored stories share one read."""
        heads = self._sections.get(newest)
        if heads is None:
            heads = []
            # One query a section, however many spellings of it were stored.
            for category in sections_to_read(self.corpus.meta.category_newest()):
                heads += await self.store.latest_ids(SECTION_HEAD, category=category, newest_id=newest)
            if len(self._sections) >= SECTION_SNAPSHOTS_KEPT:
                self._sections.pop(next(iter(self._sections)))  # the oldest read
            self._sections[newest] = heads
        return heads

    async def _fresh_ids(self, n: int = 200) -> list[int]:
        return await self.store.latest_ids(n)

    # ------------------------------------------------------------ outputs

    async def feed(self, reader: str, *, k: int | None = None, cursor: str | None = None) -> FeedPage:
        k = k or self.page_size
        # The cursor keeps the snapshot time in whole seconds: the first page must use the same
        # time as the next ones, or freshness shifts the order and pages repeat items.
        if cursor:
            at = decode_cursor(cursor, reader)  # BadCursor: cut short, or another reader's
        else:
            at = FeedCursor(snapshot_time(self.clock()), await self.store.newest_story_id())
        now, newest = at.snapshot_at, at.newest_id
        profile, prefs = await self.profile(reader, now)
        crowd = await self.crowd()
        co = co_read_scores(profile.history, crowd.co_read) if profile.history else {}
        fresh = [*await self._followed_ids(prefs, newest), *await self.store.latest_ids(200, newest_id=newest)]
        if profile.is_cold:
            fresh += await self._section_heads(newest)
        found = candidates_for(profile, self.corpus.vindex, trending=crowd.trending_top, co_read=co,
                               fresh_ids=fresh, newest_id=newest)
        ids, pinned = pinned_candidates(found, at)
        at = replace(at, pinned=pinned)
        # The titles reasons may cite: the recent reads (copies, co-reads) and each interest's
        # anchor ("because you read …"), which is the heaviest read of its interest, often
        # older than the last `ProfileParams.max_history`: past 50 reads, the reasons of a
        # reader's interests all said "like stories you read".
        cited = [*profile.history, *(it.anchor_story_id for it in profile.interests)]
        titles = {i: m.title for i in cited if (m := self.corpus.meta.get(i))}
        cands = self._candidates(ids, crowd, co)
        # feed_order leaves out what the reader muted; a story muted on one site, on another.
        cands = self._without_copies([*cands, *self._stand_ins(cands, crowd, profile, mute_filter(prefs))],
                                     profile, titles)
        order = feed_order(profile, cands, prefs=prefs, now=now, params=self._params(crowd), titles=titles,
                           limit=page_limit(at, k), served=at.served)
        page, after = page_of(order, at, k)
        nxt = encode_cursor(after, reader) if after else None
        return FeedPage(reader, [(self.corpus.meta[it.id], it) for it in page if it.id in self.corpus.meta], nxt)

    async def trending(self, *, category: str | None = None, k: int = 20,
                       reader: str | None = None) -> list[tuple[StoryMeta, FeedItem]]:
        """Most read lately across readers. With `reader`, without what that reader muted or
        already read: a site's trending box for a signed-in reader showed the very topics they
        had muted."""
        crowd = await self.crowd()
        key = name_key(category or "") or None  # "Politics" is "politics"; blank is no filter
        if key:
            # The category's own head and newest: filtered from the global ones, a quiet
            # section had a handful (or nothing, after a busy hour elsewhere).
            ids = list(dict.fromkeys([*self._trending_in(crowd, key),
                                      *await self.store.latest_ids(200, category=key)]))
        else:
            ids = list(dict.fromkeys([*crowd.trending_top, *await self._fresh_ids()]))
        cands = self._candidates(ids, crowd, {})
        if reader:
            profile, prefs = await self.profile(reader, self.clock())
            muted = mute_filter(prefs)
            cands = [*(c for c in cands if may_show(c, profile, muted)),
                     *self._stand_ins(cands, crowd, profile, muted)]
            titles = {i: m.title for i in profile.history if (m := self.corpus.meta.get(i))}
            cands = self._without_copies(cands, profile, titles)
        items = rank_trending(cands, now=self.clock(), category=key, params=self._params(crowd), k=k)
        return [(self.corpus.meta[it.id], it) for it in items if it.id in self.corpus.meta]

    def _stand_ins(self, cands: list[FeedCandidate], crowd: Crowd, profile: Profile,
                   muted: Callable[..., bool]) -> list[FeedCandidate]:
        """In place of each story among `cands` that the reader `muted` (its site, source or
        topic), its copy on another site that they did not (`stand_ins`): none of a story
        they read on any site."""
        def fits(c: FeedCandidate) -> bool:
            return may_show(c, profile, muted)

        dropped = [c.id for c in cands if c.id in crowd.copies and not fits(c)
                   and profile.read.isdisjoint(crowd.copies[c.id])]
        if not dropped:
            return []
        have = {c.id for c in cands if fits(c)}
        others = {o for i in dropped for o in crowd.copies[i] if o not in have}
        extra = {c.id: c for c in self._candidates(sorted(others), crowd, {}) if fits(c)}
        return [extra[i] for i in stand_ins(dropped, crowd.copies, extra.keys() | have) if i in extra]

    async def rerank_related(self, reader: str, related: list[tuple[StoryMeta, object]]) -> list:
        """A related block that knows the reader: read and muted stories out, ties broken by
        interests."""
        profile, prefs = await self.profile(reader, self.clock())
        muted = mute_filter(prefs)
        related = [(m, r) for m, r in related if not muted(m.category, m.source, m.title, m.tags)]
        pairs = [(m.id, r.score) for m, r in related]
        vecs = {i: v for i, v in zip([p[0] for p in pairs], self._vectors([p[0] for p in pairs]), strict=True)}
        order = personalize_related(pairs, vecs, profile)
        by_id = {m.id: (m, r) for m, r in related}
        return [by_id[i] for i, _ in order]
