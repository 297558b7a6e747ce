"""Related blocks for a stored story, a URL or caller text: the related flow's orchestrator.

Resolves the query article (stored story, stored URL, page fetched on the spot or the stored
story it names as its own address, or text), embeds it when needed, asks the engine for
ranked ids and returns cards. Pages fetched for callers go through the SSRF guard and a small
TTL cache, so a popular page is read once, and through one fetcher shared by every request, so
its per-host cap holds across them.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from aggregator.canonical import canonical_url, site_of, url_variants
from aggregator.dateline import time_from_lead
from aggregator.errors import (
    BlockedAddress,
    BodyTooLarge,
    FetchError,
    FetchTimeout,
    HTTPStatusError,
    NotFound,
    ParseError,
    StoreError,
    TakenDown,
    TidingsError,
    TooManyRedirects,
)
from aggregator.extract import read_article
from aggregator.model import Story
from aggregator.normalize import (
    MAX_AUTHOR_CHARS,
    MAX_SUMMARY_CHARS,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    plausible_time,
)
from aggregator.pagereader import READ_TIMEOUT_S
from aggregator.sponsored import marked
from aggregator.store import sort_time
from aggregator.textclean import truncate
from recommender.corpus import Corpus, StoryMeta, meta_of
from recommender.embed import Embedder, story_text
from recommender.engine import CandidateMeta, RelatedEngine
from recommender.reach import Reach, widest
from recommender.related import (
    Filters,
    Query,
    Ranked,
    RankParams,
    also_reported,
    site_passes,
)
from recommender.search import (
    RERANK_EXTRA,
    as_names,
    capitals,
    could_lift,
    merged,
    reranked,
    search_depths,
    search_params,
    searched,
    unindexed,
    with_spellings,
)
from recommender.weights import SourceWeights

# A block waits this long for the sites of its stories' copies, then goes without them.
COPY_SITES_TIMEOUT_S = 0.5
# How long a caller's page that could not be read is remembered (at most api.url_cache_s).
# The widget asks from every reader's browser, so without this each view of an unreadable
# article fetched the publisher's page again (8 s of a connection for a page that times out).
# A page that answered for itself (403/404, no article text, too big) keeps failing for a
# while: 5 minutes turns a page viewed every second into one fetch per 300 views, and a page
# fixed or published later still shows its block within minutes, not after the hour a good
# page is kept. A failure of the moment (timeout, refused connection, 5xx, 429) is retried
# sooner, after 30 s (or the server's Retry-After, up to the 5 minutes): two fetches a minute
# at most, which also spares a struggling site.
LASTING_FAILURE_TTL_S = 300.0
TRANSIENT_FAILURE_TTL_S = 30.0
# Statuses that say "not now" rather than "not this page" (RFC 9110 15.5.9, RFC 6585 4, RFC 8470).
_TRANSIENT_STATUSES = frozenset({408, 425, 429})


# Picks the rows a block shows of those ranked (`RelatedService._block`).
Shown = Callable[[list[tuple[StoryMeta, Ranked]]], list[tuple[StoryMeta, Ranked]]]
# A search's ranking at a depth (`RelatedService.search_ranking`, or the API's cached one).
Ranking = Callable[[int], Awaitable["Block"]]
# A search's query vector, embedded once for all its rankings (`RelatedService.query_vector`).
QueryVector = Callable[[], Awaitable[np.ndarray]]


class BadArticle(TidingsError):
    """The URL could be fetched but holds no readable article."""


@dataclass(frozen=True)
class Article:
    """The article a block is about: a stored story, or one read for this request only."""

    id: int | None
    url: str
    title: str
    summary: str
    text: str
    site: str
    source: str = ""
    category: str = ""
    author: str = ""
    image_url: str = ""
    published_at: datetime | None = None
    duplicate_of: int | None = None  # a stored syndicated copy: the story it copies
    tags: tuple[str, ...] = ()  # a stored story's (a page read on the spot has none)
    # A page read on the spot: the address it names as its own (rel=canonical, og:url),
    # canonical, when that is not a spelling of the URL asked for; else "".
    declared_url: str = ""
    amp_url: str = ""  # the same for the AMP spelling it names (rel=amphtml)
    read_from: str = ""  # a page read on the spot: the URL it was read from, after redirects
    # A stored story's age as ranking weighs its candidates' (`Card.ranked_at`): the event
    # window is measured from it. None: `published_at`. A story whose feed re-dates it each
    # round looked for coverage from "now", not from the days it came out.
    ranked_at: datetime | None = None


@dataclass(frozen=True)
class Block:
    article: Article
    related: list[tuple[StoryMeta, Ranked]]
    took_ms: float
    version: int  # the corpus version it was ranked on
    reach: Reach | None = None  # what later stories would change it (recommender/reach.py)


def failure_ttl_s(error: TidingsError, url_cache_s: float) -> float:
    """Seconds to answer a caller's URL with this failure before fetching it again."""
    if isinstance(error, HTTPStatusError):
        transient = error.status >= 500 or error.status in _TRANSIENT_STATUSES
        if transient and error.retry_after_s:
            ttl = min(max(error.retry_after_s, TRANSIENT_FAILURE_TTL_S), LASTING_FAILURE_TTL_S)
        else:
            ttl = TRANSIENT_FAILURE_TTL_S if transient else LASTING_FAILURE_TTL_S
    elif isinstance(error, (BadArticle, BodyTooLarge, BlockedAddress, TooManyRedirects)):
        ttl = LASTING_FAILURE_TTL_S
    else:  # timeouts, refused connections, DNS failures
        ttl = TRANSIENT_FAILURE_TTL_S
    # Never longer than a good page is kept: url_cache_s = 0 turns both caches off.
    return min(ttl, url_cache_s)


def detached(error: BaseException) -> BaseException:
    """A copy of `error` (its type, message and attributes) without its traceback and the
    exceptions it was raised from. The failure cache keeps these: the error itself held the
    frames it was raised through, with their locals, so each remembered URL kept its whole
    fetched page (up to api.fetch_max_bytes, the body read for an article that was not there)
    or its TLS connection's buffers (~256 kB): 512 of them held ~130 MB to 1.5 GB."""
    copy = type(error).__new__(type(error), *error.args)  # no __init__: any signature
    copy.__dict__.update(error.__dict__)
    return copy


def article_of(s: Story) -> Article:
    return Article(s.id, s.url, s.title, s.summary, s.text, s.site, s.source, s.category,
                   s.author, s.image_url, s.published_at or s.collected_at, s.duplicate_of,
                   s.tags, ranked_at=sort_time(s.published_at, s.collected_at))


def declared_elsewhere(declared: str, canonical: str) -> str:
    """An address a page declares (`extract.Article.canonical_url`, `amp_url`), canonical, when
    it is not `canonical` nor a spelling `stored_at` already tried for it; else "" (nothing
    more to look up: most pages name themselves)."""
    try:
        declared = canonical_url(declared) if declared else ""
    except ValueError:  # a host that IDNA refuses, a port out of range
        return ""
    return "" if declared in (canonical, *url_variants(canonical)) else declared


def also_known_as(art: Article) -> list[str]:
    """The other addresses of a page read on the spot that may be a stored story's: the one it
    declares (`declared_url`), then the one it was read from when the caller's URL redirected
    there (a renamed slug, a short link on the publisher's own site, http to https with
    another path). A redirected page that named no address of its own was ranked as a fresh
    read, the stored story itself among its related stories, and its takedown was no bar:
    its page was read and shown through any address that redirects to it."""
    redirected = declared_elsewhere(art.read_from, art.url)
    return [a for a in dict.fromkeys((art.declared_url, redirected)) if a]


def spellings_vouched(art: Article) -> list[Article]:
    """A page read on the spot, as the article of the other spellings its own site names for
    it: the address it declares (an AMP page or a share link naming its canonical page), and
    its AMP page (a canonical page's rel="amphtml"), each as a read of that spelling gives it.
    Only addresses on the site the page was read from (its host, with or without "www."): a
    page believed for another site's address would answer for that site's article with its
    own text (a page on evil.example naming a news site's article), and a subdomain may be
    another publisher's (a blog host's users)."""
    site = site_of(art.read_from)
    out = []
    if art.declared_url and site_of(art.declared_url) == site:
        out.append(dataclasses.replace(art, url=art.declared_url, declared_url="", amp_url=""))
    if art.amp_url and site_of(art.amp_url) == site:
        out.append(dataclasses.replace(art, url=art.amp_url, amp_url="",
                                       declared_url=art.declared_url or art.url))
    return out if site else []


@dataclass
class SharedRead:
    """A page's fetch and read under way, and how many callers wait for it."""

    task: asyncio.Task
    waiting: int = 0


class TTLCache:
    """A small LRU with expiry for pages read on the spot."""

    def __init__(self, ttl_s: float, size: int = 512, clock: Callable[[], float] = time.monotonic):
        self.ttl_s, self.size, self.clock = ttl_s, size, clock
        self._items: OrderedDict[str, tuple[float, object]] = OrderedDict()

    def get(self, key: str):
        hit = self._items.get(key)
        if hit is None or hit[0] < self.clock():
            self._items.pop(key, None)
            return None
        self._items.move_to_end(key)
        return hit[1]

    def put(self, key: str, value: object, ttl_s: float | None = None) -> None:
        self._items[key] = (self.clock() + (self.ttl_s if ttl_s is None else ttl_s), value)
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


class RelatedService:
    def __init__(
        self,
        corpus: Corpus,
        embedder: Embedder,
        store,
        *,
        fetcher_factory: Callable[[], object] | None = None,
        url_cache_s: float = 3600,
        page_read_timeout_s: float = READ_TIMEOUT_S,
        url_deadline_s: float | None = None,
        source_weights: SourceWeights | dict[str, float] | None = None,
        default_max_age_days: float | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        own_pages: dict[str, bytes] | None = None,
        rank_params: RankParams | None = None,
    ):
        self.corpus = corpus
        self.rank_params = rank_params or RankParams()  # the operator's [related] settings
        # Pages this API serves itself, by canonical URL (the demo's sample article, whose
        # address is made up): read from here as a fetched page would be, never fetched.
        self.own_pages = dict(own_pages or {})
        self.embedder = embedder
        self.store = store
        self.fetcher_factory = fetcher_factory
        self.url_cache_s = url_cache_s
        self.page_read_timeout_s = page_read_timeout_s
        self.url_deadline_s = url_deadline_s
        self.pages = TTLCache(url_cache_s)
        # Pages that failed, apart from the good ones: a run of bad URLs (a crawler, a typo'd
        # embed) must not push the popular good pages out.
        self.failures = TTLCache(url_cache_s)
        self.source_weights = SourceWeights.of(source_weights)
        self.default_max_age_days = default_max_age_days
        self.clock = clock
        self._inflight: dict[str, SharedRead] = {}
        self._turns: dict[str, tuple[asyncio.Lock, list[int]]] = {}  # by client (`_turn`)
        self._fetcher = None  # made from fetcher_factory on first use (_shared_fetcher)
        self._fetcher_made = asyncio.Lock()

    def engine(self) -> RelatedEngine:
        return RelatedEngine(self.corpus.vindex, self.corpus.lexical, self._meta)

    def _meta(self, ids: list[int]) -> dict[int, CandidateMeta]:
        # Ids removed from the database since they were indexed are simply not returned.
        # A source weighted 0 is left out like a removed story: "0 keeps its stories out".
        # So is paid content ("[Sponsor] …"): a publisher does not want another site's advert
        # under their article, nor a search to answer with one.
        weights = self.source_weights
        return {c.id: CandidateMeta(title=c.title, summary=c.summary, url=c.url, site=c.site,
                                    source=c.source, category=c.category, published_at=c.ranked_at,
                                    source_weight=weights.get(c.source, 1.0),
                                    image_url=c.image_url)
                for c in self.corpus.meta.cards(ids)
                if not weights.excluded(c.source) and not marked(c.tags)}

    # ------------------------------------------------------------ entry points

    async def for_story(self, story_id: int, *, k: int, filters: Filters) -> Block:
        seen = self.corpus.version  # before the article is read (see `_block`)
        meta = self.corpus.meta.get(story_id)
        if meta is not None:  # indexed: the corpus has all but the texts (a light query)
            texts = await self.store.get_story_texts(story_id)
            if texts is not None:
                art = Article(meta.id, meta.url, meta.title, texts[0], texts[1], meta.site,
                              meta.source, meta.category, meta.author, meta.image_url, meta.when,
                              tags=meta.tags, ranked_at=meta.ranked_at)
                return await self._block(art, k=k, filters=filters, seen=seen)
        story = await self.store.get_story(story_id)
        if story is None:
            raise NotFound(f"no story with id {story_id}")
        return await self._block(article_of(story), k=k, filters=filters, seen=seen)

    async def for_text(self, title: str, text: str, *, url: str | None = None, k: int,
                       filters: Filters, published_at: datetime | None = None,
                       before_embed: Callable[[], None] | None = None) -> Block:
        """`before_embed` is called (and may raise) only when the text is to be embedded: not
        when `url` is a stored story."""
        canonical = ""
        if url:
            canonical = canonical_url(url)
            seen = self.corpus.version  # before the article is read (see `_block`)
            stored = await self.stored_at(canonical)
            if stored is not None:
                return await self._block(article_of(stored), k=k, filters=filters, seen=seen)
        if before_embed is not None:
            before_embed()
        # The caller's time is checked as a feed's is (naive = UTC; a time in the future or
        # before 1995 is unknown); without one, the dateline.
        now = self.clock()
        art = Article(None, canonical, title.strip(), "", text.strip(),
                      site_of(canonical) if canonical else "",
                      published_at=plausible_time(published_at, now) or time_from_lead(text, now))
        return await self._block(art, k=k, filters=filters)

    async def search(self, query: str, *, k: int, filters: Filters,
                     before_embed: Callable[[], None] | None = None,
                     ranking: Ranking | None = None) -> Block:
        """The stories that answer `query` (`recommender.search.normal_query`), best first:
        the first `k` of its rankings at `search_depths(k)` (`search.merged`), with their
        copies' sites, and each story's reason saying which of its words it carries.
        `ranking(depth)` gives a ranking (the API's keeps them: a page of 20 after one of 10
        ranks nothing); without it each is ranked here (`search_ranking`). `before_embed` is
        called (and may raise) before the embedding, as for `for_text`."""
        t0 = time.perf_counter()
        if ranking is None:
            vector = self.query_vector(query, before_embed)

            def ranking(depth: int):
                return self.search_ranking(query, depth=depth, filters=filters, vector=vector)
        layers = [await ranking(depth) for depth in search_depths(k)]
        rows = await self._with_copies(merged([b.related for b in layers], k))
        spelt = with_spellings(query, self.corpus.lexical.spellings)
        rows = [(m, searched(r, spelt, m.title, m.summary)) for m, r in rows]
        reaches = [b.reach for b in layers if b.reach is not None]
        return Block(layers[0].article, rows, (time.perf_counter() - t0) * 1000,
                     min(b.version for b in layers), widest(reaches) if reaches else None)

    def query_vector(self, query: str, before_embed: Callable[[], None] | None = None
                     ) -> QueryVector:
        """`query`'s vector for one search's rankings, embedded when the first of them asks
        for it and kept for the others: a page past 20 is ranked at two or three depths, and
        each embedded the query again (three embeddings for k=50, charged as one). None is
        embedded when every ranking is cached. `before_embed` is called (and may raise) before
        the embedding, as for `for_text`."""
        held: list[np.ndarray] = []

        async def vector() -> np.ndarray:
            if not held:
                if before_embed is not None:
                    before_embed()
                held.append(await self._vector(self._search_article(query)))
            return held[0]

        return vector

    def _search_article(self, query: str) -> Article:
        """The query as a caller's text with neither body nor time (its capitals words as
        names, `search.as_names`)."""
        return Article(None, "", as_names(with_spellings(query, self.corpus.lexical.spellings)),
                       "", "", "")

    async def search_ranking(self, query: str, *, depth: int, filters: Filters,
                             vector: QueryVector | None = None) -> Block:
        """The `depth` best stories for `query` by the search's parameters, without their
        copies' sites or reasons (which change no order: `search` adds them to those shown).
        `vector`: the search's `query_vector` (without it, the query is embedded here)."""
        art = self._search_article(query)
        if vector is None:
            vector = self.query_vector(query)
        # Ranked past the depth: a story with the query's words side by side in its title may
        # be lifted over those above it (`reranked`).
        extra = RERANK_EXTRA if could_lift(query) else 0
        return await self._block(art, k=depth + extra, filters=filters,
                                 params=search_params(self.rank_params), vector=await vector(),
                                 written=(*capitals(query), *unindexed(
                                     query, self.corpus.lexical.corpus_stop_word)),
                                 copies=False,
                                 shown=lambda rows: reranked(rows, query, depth,
                                                             lambda m: (m.title, m.summary)))

    async def for_url(self, url: str, *, k: int, filters: Filters,
                      before_fetch: Callable[[], None] | None = None, client: str = "") -> Block:
        """`before_fetch` is called (and may raise) only when the page is really to be fetched:
        not for a stored story, a page read lately, or a fetch already under way. `client`
        names the caller whose turn a page fetched for it takes in the page reader."""
        canonical = canonical_url(url)  # ValueError for junk: the API answers 400
        seen = self.corpus.version  # before the article is read (see `_block`)
        stored = await self.stored_at(canonical)
        if stored is None:
            # A page taken down (a legal request, a retraction) is read for no one: its title,
            # summary and image went out as the article of a block the caller asked by its URL
            # (fetched afresh, or from the page cache of a read before the takedown).
            await self.refuse_taken_down(canonical)
            art = await self.read_page(url, canonical, before_fetch, client)
            # An AMP, mobile or share-link spelling of a collected story names the story's
            # address: its block is the stored story's (its vector, its copies), not one of a
            # fresh read. Looked up at each call, not kept with the page: a story collected
            # after the page was read is found, one taken down is not. The page may name any
            # address, on any host, and is believed all the same: the address only picks which
            # stored story's block answers (public: anyone may ask for it by its URL), it is
            # never fetched, and the answer is kept under the caller's URL only.
            for address in also_known_as(art):
                await self.refuse_taken_down(address)  # its AMP, share or redirected spelling
                stored = await self.stored_at(address)
                if stored is not None:
                    break
            if stored is None:
                return await self._block(art, k=k, filters=filters, seen=seen)
        return await self._block(article_of(stored), k=k, filters=filters, seen=seen)

    async def refuse_taken_down(self, canonical: str) -> None:
        if await self.store.taken_down_any_spelling(canonical):
            raise TakenDown(f"{canonical} was taken down")

    async def stored_at(self, canonical: str):
        """The story stored under this URL, else under another spelling of it (`url_variants`):
        a widget on the http page of a story collected as https, or with a trailing slash the
        feed did not give, fetched the page anew (seconds, or a failure where the site refuses
        us) for a story we had."""
        return await self.store.get_story_by_any_spelling(canonical)

    async def read_page(self, url: str, canonical: str,
                        before_fetch: Callable[[], None] | None = None,
                        client: str = "") -> Article:
        """Fetch and read a page once, however many requests ask for it at the same time.

        A page read is kept under its canonical URL (every spelling of it reads the same
        article), but a failure and a fetch in flight under the spelling that was fetched: a
        spelling that canonicalizes to an article yet cannot be fetched itself (a soft hyphen
        in the host, which IDNA drops) was remembered for the article, which then failed for
        every caller for minutes, with a message naming that other spelling."""
        hit = self.pages.get(canonical)
        if hit is not None:
            return hit  # type: ignore[return-value]
        failed = self.failures.get(url)
        if failed is not None:
            # The same error, so the caller gets the same answer; a copy, as the one raised
            # takes this raise's frames with it (`detached`).
            raise detached(failed)  # type: ignore[arg-type]
        shared = self._inflight.get(url)
        if (shared is None and before_fetch is not None and self.fetcher_factory is not None
                and canonical not in self.own_pages):
            # Refused before the caller is charged (`before_fetch`) when the URL itself is
            # (http://10.0.0.1/, http://[::1]/): no fetch, nothing to limit. Charged, each
            # such refusal spent a real fetch's token of the client's minute.
            (await self._shared_fetcher()).check_url_as_written(url)
            shared = self._inflight.get(url)  # a fetch another caller began meanwhile
        if shared is None:
            if before_fetch is not None:
                before_fetch()
            # The fetch is a task of its own, not the first caller's: that caller cancelled
            # (its client gone, the server stopping), every other caller waiting for the page
            # got its CancelledError. Now only the last caller to go stops it: a page
            # nobody waits for is not fetched and read for no one.
            shared = self._inflight[url] = SharedRead(
                asyncio.create_task(self._read_once(url, canonical, client)))
        shared.waiting += 1
        try:
            return await asyncio.shield(shared.task)
        finally:
            shared.waiting -= 1
            if not shared.waiting and not shared.task.done():
                shared.task.cancel()
                if self._inflight.get(url) is shared:  # the next caller starts a fetch anew
                    del self._inflight[url]

    async def _read_once(self, url: str, canonical: str, client: str) -> Article:
        """`read_page`'s fetch, shared by the callers of `url`: the page kept, or its failure."""
        try:
            art = await self._fetch_article(url, canonical, client)
        except (FetchError, BadArticle) as e:  # the page's failure, not a bug of ours
            self.failures.put(url, detached(e), failure_ttl_s(e, self.url_cache_s))
            raise
        finally:
            shared = self._inflight.get(url)
            if shared is not None and shared.task is asyncio.current_task():
                del self._inflight[url]
        self.pages.put(canonical, art)
        # Kept for the spellings its own site names too: the canonical page of an AMP or
        # share-link spelling read first (or the AMP page of a canonical one) is the same
        # article, and was fetched again when asked for, each fetch charged to the caller. A
        # read of that spelling itself, when kept, is not replaced.
        for spelling in spellings_vouched(art):
            if self.pages.get(spelling.url) is None:
                self.pages.put(spelling.url, spelling)
        return art

    async def _shared_fetcher(self):
        """The one fetcher of every caller's page, made on first use (in the serving loop, which
        its session belongs to) and kept until `close`. A fetcher per request capped nothing
        across requests: N readers of N pages of one site opened N connections to it at once,
        whatever collect.per_host_limit said."""
        async with self._fetcher_made:
            if self._fetcher is None:
                fetcher = self.fetcher_factory()
                await fetcher.__aenter__()
                self._fetcher = fetcher
        return self._fetcher

    async def close(self) -> None:
        fetcher, self._fetcher = self._fetcher, None
        if fetcher is not None:
            await fetcher.close()

    async def _fetch_article(self, url: str, canonical: str, client: str = "") -> Article:
        own = self.own_pages.get(canonical)
        if own is not None:
            return await self._read(own, canonical, url)
        if self.fetcher_factory is None:
            raise FetchError("fetching pages is disabled")
        # Each step has its limit (the fetch, the read), but not the waits before them: for
        # the site's connection slot behind other callers' fetches, for the page reader behind
        # other pages. A caller waits this long at most, whatever is queued.
        try:
            async with asyncio.timeout(self.url_deadline_s):
                return await self._fetch_and_read(url, canonical, client)
        except TimeoutError as e:
            raise FetchTimeout(f"{url} could not be fetched and read within "
                               f"{self.url_deadline_s:g} s") from e

    async def _fetch_and_read(self, url: str, canonical: str, client: str) -> Article:
        fetcher = await self._shared_fetcher()
        res = await fetcher.fetch(url)
        async with self._turn(client):
            return await self._read(res.body, canonical, url, res.final_url)

    @contextlib.asynccontextmanager
    async def _turn(self, client: str) -> AsyncIterator[None]:
        """A client's turn in the page reader: one of its pages in the reader's queue at a
        time. The reader reads one page after another, up to page_read_timeout_s each, so one
        client's four slow pages at once (its related_url_reads_at_once) held it for a minute,
        and every other publisher's page queued behind them failed its deadline. Taking turns,
        another client's page waits for one page of that client at most."""
        entry = self._turns.get(client)
        if entry is None:
            entry = self._turns[client] = (asyncio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if not users[0]:  # not kept for every client ever seen
                del self._turns[client]

    async def _read(self, body: bytes, canonical: str, url: str,
                    final_url: str | None = None) -> Article:
        try:
            # The caller waits for it: before the collector's article pages (a round reads dozens).
            page = await read_article(body, final_url or canonical, self.page_read_timeout_s,
                                      urgent=True)
        except ParseError as e:
            # An empty page, a PDF, plain text: the caller's URL holds no article, which is
            # their input's problem (a 4xx), not ours (ParseError reached the API as a 500).
            raise BadArticle(f"no readable article at {url}: {e}") from e
        if not page.title and not page.text:
            raise BadArticle(f"no readable article at {url}")
        # Cut as the collector cuts a page it stores (normalize, collect.merge_article). Kept
        # whole, a page of 3 MB of text was ranked whole: ~0.7 s of the event loop for every
        # block of it (each k and filter another, none charged once the page was cached), and
        # the page cache held 512 such pages (1.5 GB); its <title> went out at 10,000 characters.
        text = truncate(page.text, MAX_TEXT_CHARS)
        # The page's time is checked as the collector checks a stored page's (`merge_article`):
        # a 2062 or 1970 article:published_time was the block's own time, its "same event"
        # window decades away from every candidate's.
        now = self.clock()
        return Article(None, canonical,
                       truncate(page.title or page.description[:120], MAX_TITLE_CHARS),
                       truncate(page.description, MAX_SUMMARY_CHARS), text,
                       page.site_name or site_of(canonical),
                       author=truncate(page.author, MAX_AUTHOR_CHARS), image_url=page.image_url,
                       published_at=plausible_time(page.published_at, now) or time_from_lead(text, now),
                       declared_url=declared_elsewhere(page.canonical_url, canonical),
                       amp_url=declared_elsewhere(page.amp_url, canonical),
                       read_from=final_url or canonical)

    # ------------------------------------------------------------ the block

    async def _vector(self, art: Article) -> np.ndarray:
        if art.id is not None:
            try:
                return self.corpus.vindex.get(np.asarray([art.id], dtype=np.int64))[0]
            except KeyError:
                pass  # not embedded yet: embed now
        text = story_text(art.title, art.summary, art.text)
        return (await asyncio.to_thread(self.embedder.encode, [text]))[0]

    async def _block(self, art: Article, *, k: int, filters: Filters,
                     params: RankParams | None = None, seen: int | None = None,
                     written: tuple[str, ...] = (), shown: Shown | None = None,
                     copies: bool = True, vector: np.ndarray | None = None) -> Block:
        """`seen`: the corpus version before `art` was read from the store. The block is
        kept as ranked at it, so a cache checks the changes since: a takedown of the story
        applied while its article was read (or embedded) ends the block. Taken after, it
        counted as already seen, and the block of a story gone was served from the cache.
        `written`: `Query.written`. `shown`: the rows to show of those ranked, picked by their
        scores. `copies`: whether to look up the copies' sites of the rows (`_with_copies`):
        a search's ranking does not, as it holds 20 or more stories to show k. `vector`:
        `art`'s, already embedded (a search's, `query_vector`)."""
        t0 = time.perf_counter()
        if filters.max_age_days is None and self.default_max_age_days:
            filters = Filters(filters.category, filters.site, filters.exclude_site,
                              self.default_max_age_days)
        if vector is None:
            vector = await self._vector(art)
        query = Query(title=art.title, text=art.text or art.summary, vector=vector,
                      published_at=art.ranked_at or art.published_at, url=art.url, id=art.id,
                      site=art.site, category=art.category,
                      same_as=frozenset() if art.duplicate_of is None else frozenset({art.duplicate_of}),
                      written=written)
        version = self.corpus.version if seen is None else seen
        ranked, reach, shown_as = await self._ranked(query, k, filters, params or self.rank_params)
        rows = [(shown_as.get(r.id) or self.corpus.meta[r.id], r) for r in ranked
                if r.id in self.corpus.meta]
        if shown is not None:
            rows = shown(rows)
        if copies:
            rows = await self._with_copies(rows)
        return Block(art, rows, (time.perf_counter() - t0) * 1000, version, reach)

    async def _with_copies(self, rows: list[tuple[StoryMeta, Ranked]]
                           ) -> list[tuple[StoryMeta, Ranked]]:
        """`rows` with the sites of their syndicated copies (`_copy_sites`) in "also"."""
        copies = await self._copy_sites([m.id for m, _ in rows])
        return [(m, also_reported(r, m.site, copies[m.id]) if m.id in copies else r)
                for m, r in rows]

    async def _ranked(self, query: Query, k: int, filters: Filters, params: RankParams
                      ) -> tuple[list[Ranked], Reach, dict[int, StoryMeta]]:
        """The ranking, and the card to show for a story a site filter keeps only by its copy.
        A story syndicated word for word on sites A and B is stored once with B's linked copy,
        which no index holds: `exclude_site=A` dropped B's copy with A's story, and `site=B`
        never showed it. Pool stories the filter leaves out are ranked again with their
        copies' sites (only when one passes: a block without such a story is ranked once)."""
        engine = self.engine()
        ranked, reach = engine.related_with_reach(query, k=k, filters=filters, now=self.clock(),
                                                  params=params)
        if not (filters.site or filters.exclude_site):
            return ranked, reach, {}
        itself = {query.id, *query.same_as}  # never ranked: its copies change nothing
        left_out = [c.id for c in self.corpus.meta.cards(reach.pool.tolist())
                    if c.id not in itself and not site_passes(c.site, filters)]
        kept = {root: [(sid, site) for sid, site in copies if site_passes(site, filters)]
                for root, copies in (await self._copies(left_out)).items()}
        kept = {root: copies for root, copies in kept.items() if copies}
        if not kept:
            return ranked, reach, {}
        ranked, reach = engine.related_with_reach(
            query, k=k, filters=filters, now=self.clock(), params=params,
            copy_sites={root: tuple(site for _, site in copies) for root, copies in kept.items()})
        shown = {r.id: kept[r.id][0][0] for r in ranked if r.id in kept}
        try:
            stories = await self.store.get_stories(shown.values()) if shown else {}
        except (StoreError, OSError, SQLAlchemyError):
            return [r for r in ranked if r.id not in shown], reach, {}
        return ([r for r in ranked if r.id not in shown or shown[r.id] in stories], reach,
                {root: meta_of(stories[sid]) for root, sid in shown.items() if sid in stories})

    async def _copies(self, ids: list[int]) -> dict[int, list[tuple[int, str]]]:
        """`store.copies_of`, or none when the database is slow or away (the block is served
        as the index ranks it)."""
        if not ids:
            return {}
        try:
            return await asyncio.wait_for(self.store.copies_of(ids), COPY_SITES_TIMEOUT_S)
        except (TimeoutError, StoreError, OSError, SQLAlchemyError):
            return {}

    async def _copy_sites(self, ids: list[int]) -> dict[int, set[str]]:
        """The sites of the syndicated copies linked to these stories: exact copies are not
        indexed, so the ranking's "also reported by" never saw them. A block is still served
        without them when the database is slow or away (a block by text needs nothing else
        from it)."""
        if not ids:
            return {}
        now = self.store.copy_sites_now(ids)
        if now is not None:  # SQLite: no task, no hop to the driver's thread
            return now
        try:
            return await asyncio.wait_for(self.store.copy_sites(ids), COPY_SITES_TIMEOUT_S)
        except (TimeoutError, StoreError, OSError, SQLAlchemyError):
            return {}
