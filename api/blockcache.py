"""The app's cache of serialized related blocks, and when a cached block may still be served.

A block is kept with the versions it was ranked at (the corpus's, the sources' weights') and its
reach (recommender/reach.py). A lookup after the corpus changed asks whether any change since
could alter the block: a story that would join its candidate pool, or one of its pool removed
or edited. If none could, the block is served and its version moved on, so the next lookup
checks only what came after. An edit of the sources' weights re-ranks every block. The fast
path (api/fastpath.py) keeps its recorded answers by the same rule.

A block is ranked once however many requests miss it at the same time (`Flights`): the burst
of views of a popular article right after a new story invalidated its block ranked it once
per request, each taking a core for tens of milliseconds, and every one of them slower.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from recommender.reach import Reach, still_good

Versions = tuple[int, int]  # (corpus version, source weights version)


@dataclass(slots=True)
class CachedBlock:
    body: bytes
    etag: str
    version: Versions
    reach: Reach | None


Fresh = Callable[[Versions, Reach | None], Versions | None]


def freshness(now: Callable[[], Versions], corpus) -> Fresh:
    """`fresh(then, reach)`: the versions now if a block ranked at `then` may still be served,
    else None. `corpus` may be None (a process without an index serves no blocks to keep)."""

    def fresh(then: Versions, reach: Reach | None) -> Versions | None:
        current = now()
        if then[1] != current[1]:  # the sources' weights were edited: every block re-ranks
            return None
        if corpus is None:
            return current if then == current else None
        return current if still_good(reach, then[0], current[0], corpus.journal,
                                     corpus.lexical) else None

    return fresh


# What one cache may hold in answers' bytes besides its count of entries. A block is 2-60 kB
# (k=5 to k=50; the fragment's words add up to 100 kB more at k=50), so 2,048 entries could
# reach ~320 MB each, ~640 MB for the app's cache and the fast path's together, filled by
# anyone asking for many URLs or words. 64 MiB still holds 2,048 blocks of common sizes.
MAX_BYTES = 64 * 1024 * 1024


class FreshCache:
    """Entries by request key, least recently used out first, each kept while `fresh` says
    nothing since could change it, within `size` entries and `max_bytes` of answers and keys.
    An entry has `version` and `reach` (the app's blocks and the fast path's recorded
    answers)."""

    def __init__(self, fresh: Fresh, size: int = 2048, max_bytes: int = MAX_BYTES):
        self.fresh = fresh
        self.size = size
        self.max_bytes = max_bytes
        self.nbytes = 0
        self._items: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()  # key -> (entry, bytes)

    def get(self, key: tuple) -> Any:
        return self.look_up(key)[0]

    def look_up(self, key: tuple) -> tuple[Any, bool]:
        """The entry of `key` (None if there is none to serve), and whether one was held but
        dropped as stale: a change since could alter it (an operator tells "the collection
        keeps invalidating" from "never asked before, or pushed out by newer entries")."""
        found = self._items.get(key)
        if found is None:
            return None, False
        hit = found[0]
        now = self.fresh(hit.version, hit.reach)
        if now is None:
            self._drop(key)
            return None, True
        hit.version = now  # checked up to now: the next lookup checks only later changes
        self._items.move_to_end(key)
        return hit, False

    def put(self, key: tuple, entry: Any, nbytes: int) -> None:
        """`nbytes`: the entry's answer; the key's own length is added (a URL of 2,000
        characters is part of what an entry holds)."""
        self._drop(key)
        nbytes += len(repr(key))
        self._items[key] = (entry, nbytes)
        self.nbytes += nbytes
        while self._items and (len(self._items) > self.size or self.nbytes > self.max_bytes):
            _, (_, dropped) = self._items.popitem(last=False)
            self.nbytes -= dropped

    def _drop(self, key: tuple) -> None:
        found = self._items.pop(key, None)
        if found is not None:
            self.nbytes -= found[1]

    def __len__(self) -> int:
        return len(self._items)


def weak_etag(identity: bytes) -> str:
    """A weak ETag of the bytes that decide it: the same in every worker process and for every
    recomputation that gives the same answer, so a revalidation gets its 304."""
    return 'W/"' + hashlib.sha256(identity).hexdigest()[:20] + '"'


class BlockCache(FreshCache):
    """The app's serialized blocks."""

    def put_block(self, key: tuple, body: bytes, version: Versions, reach: Reach | None,
                  identity: bytes | None = None) -> CachedBlock:
        """`identity`: the bytes that decide the ETag (`weak_etag`) when the body holds
        incidental parts (a block's took_ms)."""
        entry = CachedBlock(body, weak_etag(body if identity is None else identity), version, reach)
        self.put(key, entry, len(body))
        return entry


@dataclass(slots=True)
class CachedRanking:
    """A search's ranking at one depth (`RelatedService.search_ranking`: a Block)."""

    block: Any
    version: Versions
    reach: Reach | None


# A search's rankings kept (`RankingCache`): each ~5-20 kB at depth 20 (its cards' texts and a
# pool of ~1 kB), up to ~70 kB at 80, so a few MB for the searches asked again with another k
# (and never past `MAX_BYTES`).
SEARCH_RANKINGS = 512


class RankingCache(FreshCache):
    """The app's searches as ranked, by query, filters and depth, kept by the blocks' rule: the
    answer for each k is cut from them, so a page of 20 after one of 10 (or a box of 5) ranks
    nothing, and every k shows the same first stories however the answers' cache turns."""

    def __init__(self, fresh: Fresh, size: int = SEARCH_RANKINGS):
        super().__init__(fresh, size)

    def put_ranking(self, key: tuple, block: Any, version: Versions) -> CachedRanking:
        entry = CachedRanking(block, version, block.reach)
        self.put(key, entry, ranking_bytes(block))
        return entry


def ranking_bytes(block: Any) -> int:
    """About what a ranking holds: its cards' texts and its reach's pool."""
    held = sum(len(m.title) + len(m.summary) + len(m.url) + len(m.image_url) + 200
               for m, _ in block.related)
    return held + (block.reach.pool.nbytes if block.reach is not None else 0)


class LeaderGone(Exception):
    """The ranking a request waited for failed for a reason of its leader's own (its client's
    limit, its cancellation): the waiter asks again rather than answer with it."""


class Flight:
    """One ranking under way for a cache key: its entry or its failure once `done`."""

    __slots__ = ("done", "entry", "error")

    def __init__(self) -> None:
        self.done = asyncio.Event()
        self.entry: Any = None
        self.error: BaseException | None = None


class Flights:
    """The rankings under way, by cache key (single flight): the first request to miss a key
    ranks it (`lead`), those that miss it meanwhile wait for that ranking (`join`).

    A leader's failure is never kept: its flight ends with it, and the next request to miss
    ranks again. `shared(error)` says whether a failure is the key's (the page could not be
    read, the database is away: its waiters get the same error, as they would have got it
    ranking themselves) or the leader's own (its client over a rate limit, its task cancelled:
    its waiters ask again, `LeaderGone`)."""

    def __init__(self, shared: Callable[[BaseException], bool]):
        self.shared = shared
        self._under_way: dict[tuple, Flight] = {}

    def under_way(self, key: tuple) -> Flight | None:
        return self._under_way.get(key)

    def __len__(self) -> int:
        return len(self._under_way)

    async def lead(self, key: tuple, rank: Callable[[], Awaitable[Any]]) -> Any:
        """`rank()`'s entry, which the requests that join meanwhile get too. A request that
        ranks while another's flight is under way (it joined too often, `MAX_JOINS`) ranks on
        its own, unseen by others."""
        flight = Flight()
        mine = self._under_way.setdefault(key, flight) is flight
        try:
            flight.entry = await rank()
            return flight.entry
        except BaseException as e:  # cancelled too: the waiters must not wait for ever
            flight.error = e
            raise
        finally:
            if mine:
                del self._under_way[key]
            flight.done.set()

    async def join(self, flight: Flight) -> Any:
        """The entry `flight` ranks, or its failure if it is the key's, else LeaderGone. The
        wait is the leader's ranking, started earlier under the same limits (each database
        call's `api.database_timeout_s`, a page's fetch and read): a joined request waits no
        longer than ranking itself could have taken. A waiter cancelled leaves the flight as
        it is (an Event's wait, not the leader's task)."""
        await flight.done.wait()
        if flight.error is None:
            return flight.entry
        if self.shared(flight.error):
            raise flight.error
        raise LeaderGone() from None


# How many flights a request waits for before it ranks on its own: one leader's own failure
# (a rate-limited client first in a burst) costs its waiters one more wait, not an error; two
# in a row end the waiting, so no request waits behind a string of failing leaders.
MAX_JOINS = 2


async def cached_or_ranked(cache: FreshCache, flights: Flights, key: tuple,
                           rank: Callable[[], Awaitable[Any]], count: Callable[[str], None]) -> Any:
    """The entry of `key`: cached; else the one a request under way is ranking, waited for;
    else the one `rank` ranks (and caches). `count` is told once how it was answered: "hit",
    "joined" (by another request's ranking: its entry, or its failure when that is the key's),
    "miss" (this request ranked: misses count rankings, failed ones too) or "stale" (it ranked
    because the entry the cache held could no longer be served, `FreshCache.look_up`)."""
    joins = 0
    stale = False
    while True:
        hit, dropped = cache.look_up(key)
        if hit is not None:
            count("hit")
            return hit
        stale = stale or dropped
        flight = flights.under_way(key)
        if flight is None or joins == MAX_JOINS:
            count("stale" if stale else "miss")
            return await flights.lead(key, rank)
        joins += 1
        try:
            entry = await flights.join(flight)
        except LeaderGone:
            continue  # the leader's own failure: ask again (the cache, another flight)
        except Exception:
            count("joined")
            raise
        count("joined")
        return entry
