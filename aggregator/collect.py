"""The collection flow: due sources -> fetch -> parse -> normalize -> (full text) -> store.

The one orchestrator that knows every step of collecting. Decisions come from pure modules
(schedule, normalize, parse); I/O is the fetcher's and the store's. A source's failure is
recorded on its row and logged, never raised past `collect_source`: the round goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import socket
import time
from collections.abc import Awaitable, Callable, Container, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import TypeVar
from urllib.parse import urlsplit

from aggregator.canonical import page_key
from aggregator.errors import FetchError, HTTPStatusError, ParseError, TidingsError
from aggregator.extract import read_article
from aggregator.fetch import Fetcher, FetchPolicy, FetchResult, Validators
from aggregator.images import better_image
from aggregator.model import ParsedDocument, SourceSpec, StoryDraft
from aggregator.netguard import AddressGuard
from aggregator.normalize import (
    MAX_AUTHOR_CHARS,
    MAX_SUMMARY_CHARS,
    MAX_TEXT_CHARS,
    MAX_TITLE_CHARS,
    content_hash,
    first_of_each_link,
    plausible_time,
    story_texts,
)
from aggregator.parse import MAX_ITEMS
from aggregator.parsepool import (
    Parsed,
    ParsePool,
    default_workers,
    drafts_from,  # noqa: F401  (re-exported: benchmarks, callers)
    parse_and_normalize,
)
from aggregator.schedule import FetchOutcome, ScheduleBounds, next_check_at
from aggregator.settings import CollectSettings
from aggregator.store import (
    FetchRecord,
    SourceState,
    Store,
    driver_reason,
    retry_while_busy,
    utcnow,
)
from aggregator.textclean import truncate
from aggregator.urlsecrets import masked_secrets

log = logging.getLogger("tidings.collect")
# Child sitemaps of a sitemap index read per round, newest first: a news site's index lists a
# sitemap per day (or per thousand stories), and the new stories are in the newest.
CHILD_SITEMAPS = 3
# Article pages `sources check` reads of a full_text source: a sample, for a quick dry run.
CHECK_SAMPLE = 3
# A full_text source's feed is read whole, not asked for a 304, while its links wait for their
# pages (`PagesRead.left`). An article page that always failed (a dead link, a page the
# extractor cannot read) kept it so until the item left the feed: the whole feed downloaded
# every round. A page stops holding it after PAGE_TRIES failed rounds in a row, or at once
# when its server refused it for good (`refused_for_good`); it is still tried again whenever
# the feed changes. The rounds are counted on the source's row (`page_failures`), not in the
# collector's memory: a cron of `tidings collect --once` started each round at 0, and its
# failing pages held the feed back for ever (so did collectors side by side, each counting
# its own rounds). At most PAGE_FAILURES_KEPT URLs a source, in the document's order (one
# left out is only tried PAGE_TRIES more times).
PAGE_TRIES = 3
PAGE_FAILURES_KEPT = 1_000
# A plain sitemap's link has no date until its page is read, so retention's filter
# (`within_retention`) passed it, and a page published before `[retention] stories_days`
# was read, stored, deleted by retention within the hour, and read again the next round:
# a wasted page fetch every round, for ever, per old link of an archive. Such a page is
# now not stored, and marked on the source's `page_failures` beside the failed pages'
# counts (positive) by its publication time negated (unix seconds; a plausible time is
# after 1995, so the mark is below 0): not fetched again while the document lists it and
# its time is before the horizon. The time, not a flag: a longer `stories_days` (or 0)
# has the page read again. At most OLD_PAGES_KEPT marks a source, one document's items:
# an archive's sitemap lists thousands.
OLD_PAGES_KEPT = MAX_ITEMS
T = TypeVar("T")
# Which of some canonical URLs are stories already (`Store.stored_urls`).
Stored = Callable[[Iterable[str]], Awaitable[set[str]]]


@dataclass(frozen=True)
class SourceReport:
    name: str
    ok: bool
    status: int | None = None
    items: int = 0
    new: int = 0
    updated: int = 0
    duplicates: int = 0
    not_modified: bool = False
    error: str | None = None
    problems: tuple[str, ...] = ()
    elapsed_s: float = 0.0
    left_out: int = 0  # usable items the source's keep/block rules left out
    recovered_after: int = 0  # failed fetches in a row that this success ended


@dataclass(frozen=True)
class SourceCheck:
    """A dry run's findings (`Collector.check`): `drafts` the usable items (the first
    `read_in_full` of them, of a full_text source, with their pages read as a sample);
    `untitled` the links left without a title because their pages were not read;
    `left_out` the usable items the source's keep/block rules left out; `repeated` the
    items that were a link listed earlier in the document, merged into its first copy."""

    doc: ParsedDocument
    drafts: list[StoryDraft]
    read_in_full: int = 0
    untitled: int = 0
    left_out: int = 0
    repeated: int = 0


@dataclass
class RoundReport:
    sources: list[SourceReport] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def new(self) -> int:
        return sum(r.new for r in self.sources)

    @property
    def failed(self) -> int:
        return sum(not r.ok for r in self.sources)


def policy_from(settings: CollectSettings) -> FetchPolicy:
    return FetchPolicy(
        user_agent=settings.user_agent,
        connect_timeout_s=settings.connect_timeout_s,
        total_timeout_s=settings.total_timeout_s,
        max_body_bytes=settings.max_body_bytes,
        per_host_limit=settings.per_host_limit,
        global_limit=settings.global_limit,
    )


def own_host(spec: SourceSpec) -> str:
    """The one host a source's fetches may reach at a private address (if the operator's
    file names it): its feed's. Another source's intranet host is not one for this feed."""
    return urlsplit(spec.url).hostname or ""


def bounds_from(settings: CollectSettings) -> ScheduleBounds:
    return ScheduleBounds(
        min_interval_s=settings.min_interval_s,
        max_interval_s=settings.max_interval_s,
        max_backoff_s=settings.max_backoff_s,
        jitter_ratio=settings.jitter_ratio,
    )


def pages_deadline_s(settings: CollectSettings) -> float:
    """How long after its fetch began a source's listing pages may still be read. Each page
    has its own fetch timeout (`total_timeout_s`), so ten slow ones took ten times that, past
    the source's claim (`lease_s`): another collector then took the source and fetched it
    too. Half the claim: the other half is for its article pages and its store."""
    return settings.lease_s / 2


def merge_article(draft: StoryDraft, article, now: datetime) -> StoryDraft:
    """Fill a feed item's gaps from its page: the page's body wins, the feed's metadata stays
    (but for a feed image that says it is a thumbnail: `images.better_image`).
    An untitled draft (a plain sitemap's link) takes the page's title and publication time, else one derived from
    its text as `normalize` derives one. The page's time is checked as a feed's is
    (`plausible_time` at `now`): an article:published_time of 1970 was stored as is, sorted
    last and deleted by the next retention run, and one of 2062 shown on the story's card. The body hash is the page's body's, as `normalize`
    hashes a feed's: kept from the listing, a plain sitemap's stories had none (nor had a
    teaser's), and their copies under other URLs were never linked. The page's fields are
    cut as `normalize` cuts a feed's: a long page's 500,000 characters of text, and an
    og:description of 3,000, were stored whole."""
    text = truncate(article.text, MAX_TEXT_CHARS) if article.text else draft.text
    summary = draft.summary or truncate(article.description or "", MAX_SUMMARY_CHARS)
    title = draft.title
    page_time = plausible_time(article.published_at, now)
    published_at = draft.published_at or page_time
    if not title:
        # A link without a title is a plain sitemap's <loc>, whose date is <lastmod>: when
        # the page last changed, not when it was published. An old article edited today
        # came in as today's story; the page's own publication time is the better one.
        published_at = page_time or draft.published_at
        title, summary, _ = story_texts(article.title or "", summary, text)
        title, summary = truncate(title, MAX_TITLE_CHARS), truncate(summary, MAX_SUMMARY_CHARS)
    return replace(
        draft,
        title=title,
        text=text,
        author=draft.author or truncate(article.author or "", MAX_AUTHOR_CHARS),
        # the page's share image over a feed thumbnail (the BBC's 240 px ones), see images.py
        image_url=better_image(draft.image_url, article.image_url or "",
                               feed_width_px=draft.image_width_px),
        published_at=published_at,
        summary=summary,
        content_hash=content_hash(text or summary),
    )


def within_retention(drafts: Iterable[StoryDraft], now: datetime,
                     keep_days: int) -> tuple[list[StoryDraft], int]:
    """The drafts retention would keep (`[retention] stories_days`; 0 keeps all), and how
    many it would not: those published before its horizon. Stored, such an item was deleted
    by the next retention run and stored again as new by the next round that read the feed
    (a weekly blog's feed holds months of items): new ids, embedded again, every hour (pure)."""
    drafts = list(drafts)
    if not keep_days:
        return drafts, 0
    horizon = now - timedelta(days=keep_days)
    kept = [d for d in drafts if d.published_at is None or d.published_at >= horizon]
    return kept, len(drafts) - len(kept)


def carried_urls(parsed: Parsed) -> set[str] | None:
    """Every link the fetched document lists (pure): what the source carries, for the store
    to tell a story that moved to a new URL (`store.moved_stories`). Not the batch stored:
    a full_text source's links stored with their text are not read again (`titled` drops
    them), nor stored are links past retention, waiting for their page, or left out by the
    source's rules, and such a story taken for moved handed its URL to a copy of it (a
    page's print variant). The document as read: a sitemap index's older children and a
    listing's pages past the first stored story are not, as a feed's older items are not.
    None when a child sitemap the round chose failed: its links are still carried, only not
    read, and a copy of one of its stories in another child took the story's URL as moved."""
    if parsed.partial:
        return None
    return {d.url for d in parsed.drafts} | set(parsed.left_out_urls)


def titled(drafts: Iterable[StoryDraft]) -> list[StoryDraft]:
    """The drafts that can be stories: untitled ones (kept for full-text reading, see
    `normalize`) that reading did not complete are dropped."""
    return [d for d in drafts if d.title]


@dataclass(frozen=True)
class PagesRead:
    """What reading a full_text source's article pages came to: how many were fetched,
    why each that failed did (`"URL: reason"`), and how many of the document's links still
    want their page read (`left`: past the round's `full_text_limit`, or failed and to be
    tried again next round, `page_waits`); `failed_rounds`: the failed rounds in a row of the
    pages still unread, to store on the source (`failed_rounds_after`)."""

    tried: int = 0
    failures: tuple[str, ...] = ()
    left: int = 0
    failed_rounds: Mapping[str, int] = field(default_factory=dict)

    @property
    def read(self) -> int:
        return self.tried - len(self.failures)

    @property
    def problem(self) -> str | None:
        """The source's problem when pages failed, else None. Each failure was logged at
        INFO alone (`collect.page_failed`): a source whose every page answered 404 looked as
        good as one whose pages were read, and `sources check` said "3 read in full" of it."""
        if not self.failures:
            return None
        return f"{len(self.failures)} of {self.tried} article pages not read ({self.failures[0]})"


def refused_for_good(e: BaseException) -> bool:
    """Whether a page's fetch failed with a status that asking again will not change: a 4xx
    such as 404 Not Found or 410 Gone. Not 408 Request Timeout, 425 Too Early, 429 Too Many
    Requests, nor 403 Forbidden: bot walls and rate limiters answer 403 for a while, then
    serve the page, which waited for the feed's next change (for good, on a static sitemap)."""
    return (isinstance(e, HTTPStatusError) and 400 <= e.status < 500
            and e.status not in (403, 408, 425, 429))


def page_waits(e: BaseException, failed_rounds: int) -> bool:
    """Whether a page that failed (`failed_rounds` in a row, this one included) still holds its
    feed's validators back, to be tried next round (pure)."""
    return failed_rounds < PAGE_TRIES and not refused_for_good(e)


def failed_rounds_after(urls: Iterable[str], before: Mapping[str, int], failed: Container[str],
                        tried: Container[str]) -> dict[str, int]:
    """The failed rounds in a row of a source's unread pages (`urls`, the document's links not
    stored with a text yet) after a round (pure): one more for a page that failed, as they were
    for one not tried this round (past `full_text_limit`); none for a page read, nor for one the
    document no longer lists (so the count stays as small as the document)."""
    after: dict[str, int] = {}
    for url in urls:
        if url in failed:
            after[url] = before.get(url, 0) + 1
        elif url not in tried and url in before:
            after[url] = before[url]
        if len(after) == PAGE_FAILURES_KEPT:
            break
    return after


def page_marks(marks: Mapping[str, int]) -> tuple[dict[str, int], dict[str, datetime]]:
    """A source's `page_failures` split (pure): its pages' failed rounds in a row, and the
    publication times of the pages that were older than retention keeps (`OLD_PAGES_KEPT`)."""
    failed = {url: n for url, n in marks.items() if n > 0}
    old = {url: datetime.fromtimestamp(-n, UTC) for url, n in marks.items() if n < 0}
    return failed, old


def too_old(published: Mapping[str, datetime], now: datetime, keep_days: int) -> set[str]:
    """The pages, of those marked old (`page_marks`), still before retention's horizon
    (pure); none when retention keeps all (0)."""
    if not keep_days:
        return set()
    horizon = now - timedelta(days=keep_days)
    return {url for url, at in published.items() if at < horizon}


def old_marks(urls: Iterable[str], published: Mapping[str, datetime]) -> dict[str, int]:
    """The old pages' marks to store (`page_marks`) from their publication times, for the
    document's links (`urls`) in its order, at most OLD_PAGES_KEPT (pure): no mark outlives
    its link in the document."""
    after: dict[str, int] = {}
    for url in urls:
        if url in published:
            after[url] = -int(published[url].timestamp())
            if len(after) == OLD_PAGES_KEPT:
                break
    return after


def none_usable(item_count: int, problems: Iterable[str], full_text: bool) -> str:
    """The error of a source whose every item was unusable (pure): it is not "ok" with no
    stories, it is a source that cannot give any, and the operator should hear why."""
    if full_text:
        why = "no title in the listing, and none from their article pages"
    else:
        why = next(iter(problems), "") or "no usable link, title or summary"
    return f"{item_count} items, none usable: {why}"


class Collector:
    """Runs collection rounds against the store; one aiohttp session per round."""

    def __init__(
        self,
        store: Store | None,  # None: a collector that only checks (`check`)
        settings: CollectSettings,
        *,
        resolver_factory: Callable[[], object] | None = None,
        clock: Callable[[], datetime] = utcnow,
        rng: random.Random | None = None,
        owner: str | None = None,
        parse_workers: int | None = None,
        keep_days: int = 0,
    ):
        self.store = store
        self.settings = settings
        # `[retention] stories_days`: items published before it are not stored (see
        # `within_retention`).
        self.keep_days = keep_days
        self.policy = policy_from(settings)
        self.bounds = bounds_from(settings)
        self.clock = clock
        self.rng = rng or random.Random()
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        # Processes that parse and normalize beside the event loop (0: threads only).
        self.parse_workers = default_workers() if parse_workers is None else parse_workers
        # Tests map real host names to the loopback test site through a resolver.
        self.resolver_factory = resolver_factory
        # Called with each SourceReport (metrics); must not raise or block.
        self.listeners: list[Callable[[SourceReport], None]] = []
        # Called as soon as a source's new or changed stories are committed, before the
        # source's own record is written (the indexer's wake-up); must not raise or block.
        # The report comes later: the record queues behind the round's other writes (on
        # SQLite ~40 ms on the ingest benchmark's first source, while the model idled).
        self.stored: list[Callable[[], None]] = []
        # The parse workers a long-running collector keeps across rounds (see `start`).
        self._keep_pool = False
        self._kept_pool: ParsePool | None = None
        # Claims and stores under way (`_settled`): an interrupted round waits for them.
        self._writes: set[asyncio.Future] = set()

    async def start(self) -> None:
        """For a collector that runs round after round: keep parse workers across rounds, and
        spawn them now (one for a store of fewer than `MIN_SOURCES_FOR_POOL` sources; a later
        round of more gets a bigger pool), so no round pays for starting them and its first
        stories do not wait for it. Without a call, each round that parses starts and stops
        its own."""
        self._keep_pool = True
        pool = self._parse_pool(len(await self.store.list_sources()))
        if pool.workers:
            self._kept_pool = pool
            await pool.start()

    async def close(self) -> None:
        if self._kept_pool is not None:
            pool, self._kept_pool = self._kept_pool, None
            await pool.close()

    def _parse_pool(self, sources: int) -> ParsePool:
        # One worker below MIN_SOURCES_FOR_POOL sources, `parse_workers` from it.
        return ParsePool(self.parse_workers, sources, self.settings.parse_timeout_s)

    async def _round_pool(self, sources: int) -> contextlib.AbstractAsyncContextManager[ParsePool]:
        """The kept pool (one started for fewer sources replaced), or a pool for this round
        only. A kept pool's crashes are counted per round (see `ParsePool.new_round`)."""
        pool = self._parse_pool(sources)
        kept = self._kept_pool
        if kept is not None and kept.workers < pool.workers:
            await kept.close()
            self._kept_pool = kept = None
        if kept is not None:
            kept.new_round()
        elif not (self._keep_pool and pool.workers):
            return pool
        else:
            self._kept_pool = kept = pool  # spawned by its first body
        return contextlib.nullcontext(kept)

    def _fetcher(self, source_urls: Iterable[str]) -> Fetcher:
        resolver = self.resolver_factory() if self.resolver_factory else None
        return Fetcher(self.policy, resolver=resolver, guard=self._guard(source_urls))

    def _guard(self, source_urls: Iterable[str]) -> AddressGuard | None:
        """What the fetches of a round may reach: any address on the hosts the operator named
        (the sources'), public addresses only elsewhere. Article links and redirects come
        from publishers: without it a feed could have the collector read 169.254.169.254 (a
        cloud's metadata service) or an intranet page as an article, and serve its text.
        Any port: a publisher's links name the ports its site uses."""
        if not self.settings.public_links_only:
            return None
        return AddressGuard(frozenset(h for u in source_urls if (h := urlsplit(u).hostname)),
                            web_ports_only=False)

    async def run_round(self, *, name: str | None = None, force: bool = False,
                        progress: Callable[[SourceReport], None] | None = None) -> RoundReport:
        """Fetch every due source once (or just `name`; `force` ignores the schedule).

        Interrupted (Ctrl-C, SIGTERM, a shutdown), it hands back the sources it claimed and
        has not fetched, as an indexer hands back its stories: the next round, or another
        collector, takes them at once instead of after `lease_s`."""
        try:
            return await self._round(name, force, progress)
        except (asyncio.CancelledError, KeyboardInterrupt):
            await self._hand_back()
            raise

    async def _round(self, name: str | None, force: bool,
                     progress: Callable[[SourceReport], None] | None) -> RoundReport:
        started = time.perf_counter()
        scheduled = not force and name is None
        # A scheduled round claims as it goes, a window of `global_limit` sources at a time:
        # a claim's lease then only has to cover the fetches in flight (not the whole round),
        # a crash orphans only those, and collectors running side by side share the round.
        window = self.settings.global_limit if scheduled else 1_000_000
        states = await self._settled(self.store.claim_due_sources(
            self.clock(), owner=self.owner, lease_s=self.settings.lease_s, name=name,
            due_only=scheduled, limit=window,
        ))
        report = RoundReport()
        if not states:
            return report
        urls = await self.store.source_urls()
        async with self._fetcher(urls) as fetcher, await self._round_pool(len(states)) as pool:
            async def one(state: SourceState) -> None:
                r = await self.collect_source(fetcher, state, pool)
                report.sources.append(r)
                for listener in self.listeners:
                    listener(r)
                if progress:
                    progress(r)

            if not scheduled:
                await asyncio.gather(*(one(s) for s in states))
            else:
                await self._windowed(states, one, window)
        report.elapsed_s = time.perf_counter() - started
        return report

    async def _windowed(self, states: list[SourceState], one, window: int) -> None:
        """Run `one` on the claimed sources, claiming more due ones as slots free up; stops
        when none is due (or one comes round again: that is the next round's)."""
        seen = {s.id for s in states}
        pending = {asyncio.create_task(one(s)) for s in states}
        more = True
        try:
            while pending:
                _, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                room = window - len(pending)
                if not more or room < max(1, window // 4):
                    continue
                try:
                    fresh = await self._settled(self.store.claim_due_sources(
                        self.clock(), owner=self.owner, lease_s=self.settings.lease_s, limit=room))
                except Exception as e:  # the database is away: finish what is in flight
                    log.warning("collect.claim_failed error=%s: %s", type(e).__name__, driver_reason(e))
                    fresh = []
                more = bool(fresh) and not any(s.id in seen for s in fresh)
                seen.update(s.id for s in fresh)
                pending |= {asyncio.create_task(one(s)) for s in fresh}
        finally:
            for t in pending:
                t.cancel()
            # Their ends (a store under way finishes, see `_settled`) before the round's: an
            # interrupted round hands back what is still claimed only after that.
            await asyncio.gather(*pending, return_exceptions=True)

    async def collect_source(self, fetcher: Fetcher, state: SourceState,
                             pool: ParsePool | None = None) -> SourceReport:
        """Collect one source; never raises, so one source can never end the round.

        When even recording the failure fails (the database is away), the report says so and
        the source's lease runs out, so it is retried by the next round.
        """
        try:
            return await self._collect(fetcher, state, pool)
        except Exception as e:
            # The driver's first line: SQLAlchemy's text goes on with the statement and its
            # parameters, the source's whole batch of stories.
            reason = f"{type(e).__name__}: {driver_reason(e)}"
            log.error("collect.unrecorded source=%s error=%s", state.spec.name, reason)
            return SourceReport(state.spec.name, False, error=reason)

    async def _collect(self, fetcher: Fetcher, state: SourceState,
                       pool: ParsePool | None = None) -> SourceReport:
        spec = state.spec
        t0 = time.perf_counter()
        now = self.clock()
        try:
            parsed, result = await self._read(fetcher, spec, Validators(state.etag, state.last_modified),
                                              now, pool, self.store.stored_urls)
        except (FetchError, ParseError) as e:
            return await self._failed(state, e, t0)
        except Exception as e:  # a bug in a parser must not stop the round: record it, log it loud
            log.exception("collect.bug source=%s", spec.name)
            return await self._failed(state, e, t0)

        if parsed is None:  # 304 Not Modified
            outcome = FetchOutcome(ok=True, not_modified=True, max_age_s=result.max_age_s,
                                   last_interval_s=state.interval_s)
            recovered = await self._record(state, outcome, result, t0, items=0, new=0)
            return SourceReport(spec.name, True, result.status, not_modified=True,
                                elapsed_s=time.perf_counter() - t0, recovered_after=recovered)

        doc, unread, pages = parsed.doc, 0, PagesRead()
        page_failures: Mapping[str, int] = {}  # none kept: not a full_text source (any more)
        # Before their pages are read: an old item's page is not read every round either.
        drafts, past = within_retention(parsed.drafts, now, self.keep_days)
        if spec.full_text and drafts:
            failed_before, old_before = page_marks(state.page_failures)
            # Pages found older than retention keeps in an earlier round: not read again,
            # nor waiting for their page (`pages.left`), see OLD_PAGES_KEPT.
            skipped = too_old(old_before, now, self.keep_days)
            drafts = [d for d in drafts if d.url not in skipped]
            drafts, unread, pages = await self._with_full_text(fetcher, spec, drafts,
                                                               failed_before=failed_before)
            if pages.problem:
                doc = replace(doc, problems=(*doc.problems, pages.problem))
            # Again once read: a plain sitemap's link is dated by its page. A page marked
            # old but read again (a longer `stories_days`) loses its mark unless still old.
            read = drafts
            drafts, read_past = within_retention(read, now, self.keep_days)
            past += len(skipped) + read_past
            kept = {d.url for d in drafts}
            old = {url: old_before[url] for url in skipped}
            old.update((d.url, d.published_at) for d in read if d.url not in kept)
            page_failures = {**pages.failed_rounds,
                             **old_marks((d.url for d in parsed.drafts), old)}
        if pages.left:
            # No validators kept while links wait for their pages: the next round's 304 read
            # none of them, and a static sitemap longer than `full_text_limit` gave its first
            # 20 stories and no more (its untitled links are stored only once read), nor were
            # failed pages tried again, until the document changed. A page that keeps failing
            # stops waiting (`page_waits`): else the whole feed was read every round.
            result = replace(result, etag=None, last_modified=None)
        drafts = titled(drafts)
        # Items the rules left out were usable: a source whose every item they left out
        # works (it has nothing wanted this time), it has not failed; nor one whose items
        # are all older than retention keeps.
        if parsed.item_count and not drafts and not unread and not parsed.left_out and not past:
            return await self._failed(
                state, ParseError(none_usable(parsed.item_count, doc.problems, spec.full_text)), t0)
        try:
            res = await self._settled(self.store.upsert_stories(
                drafts, now, source_id=state.id, carried=carried_urls(parsed)))
        except Exception as e:  # the store refused (busy, down): recorded on the source, if it can be
            return await self._failed(state, e, t0)
        if res.new_ids or res.updated_ids:
            for wake in self.stored:
                wake()
        outcome = FetchOutcome(
            ok=True, new_stories=len(res.new_ids), max_age_s=result.max_age_s, ttl_s=doc.ttl_s,
            # Those past retention too: they still tell how often the source publishes.
            item_times=tuple({d.published_at for d in (*drafts, *parsed.drafts) if d.published_at}),
        )
        recovered = await self._record(state, outcome, result, t0, items=parsed.item_count,
                                       new=len(res.new_ids), kind=doc.kind,
                                       page_failures=page_failures)
        if doc.problems:
            log.info("collect.problems source=%s problems=%s", spec.name,
                     masked_secrets("; ".join(doc.problems[:5])))
        log.info("collect.ok source=%s items=%d new=%d updated=%d left_out=%d past_retention=%d",
                 spec.name, parsed.item_count, len(res.new_ids), len(res.updated_ids),
                 parsed.left_out, past)
        return SourceReport(spec.name, True, result.status, parsed.item_count, len(res.new_ids),
                            len(res.updated_ids), res.duplicates, problems=doc.problems,
                            elapsed_s=time.perf_counter() - t0, left_out=parsed.left_out,
                            recovered_after=recovered)

    async def _settled(self, write: Awaitable[T]) -> T:
        """`write` (a claim, a store of stories) run to its end even if the round is
        interrupted meanwhile. Cancelled mid-statement, SQLAlchemy drops the connection
        instead of rolling it back, and SQLite's write lock stayed held past the driver's
        busy timeout (see `Indexer.run`): the hand-back then failed. And a claim the database
        made must be there to hand back. `_hand_back` waits for the writes under way."""
        task = asyncio.ensure_future(write)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        return await asyncio.shield(task)

    async def _hand_back(self) -> None:
        """Release this collector's source claims (the round was interrupted), once its
        writes under way are done: claims are per process (`owner`), and whatever it still
        holds it will not fetch. A release that fails is logged: those sources then wait for
        their lease (at most `lease_s`)."""
        if self._writes:
            await asyncio.wait(set(self._writes))
        try:
            n = await retry_while_busy(lambda: self.store.release_source_claims(self.owner))
        except Exception as e:  # the database may be what failed
            log.warning("collect.release_failed %s; the sources are fetched once their claim "
                        "runs out (at most %d s)", str(e).splitlines()[0][:200],
                        self.settings.lease_s)
            return
        if n:
            log.info("collect.released sources=%d", n)

    async def _read(self, fetcher: Fetcher, spec: SourceSpec, validators: Validators,
                    now: datetime, pool: ParsePool | None = None, stored: Stored | None = None):
        """The source's document and its fetch result (None for a 304). `stored`: which of
        some URLs are stories already, where a listing's further pages stop (None: read all
        the pages configured, as `check` shows them)."""
        started_s = time.monotonic()
        result = await fetcher.fetch(spec.url, validators, own_host=own_host(spec))
        if result.not_modified:
            return None, result
        parsed = await self._parse(result, spec, spec.kind, now, pool)
        if parsed.doc.next_url and spec.selectors is not None and spec.selectors.pages > 1:
            parsed = await self._read_pages(fetcher, spec, parsed, result.final_url, now, pool,
                                            stored, started_s)
        if parsed.doc.child_urls and not parsed.drafts:
            parsed = await self._read_children(fetcher, spec, parsed, now, pool)
            # No validators kept for an index: its 304 says nothing of its children (today's
            # grows all day in an index that changes once a day), and on a 304 no child was
            # read, so a static index's new stories waited for its next change.
            result = replace(result, etag=None, last_modified=None)
        # One draft per link: the first copy, newest in a feed and across children (see
        # `first_of_each_link`); a full_text source read the page of each copy.
        drafts = first_of_each_link(parsed.drafts)
        return replace(parsed, drafts=tuple(drafts), repeated=len(parsed.drafts) - len(drafts)), result

    @staticmethod
    async def _parse(result: FetchResult, spec: SourceSpec, kind: str, now: datetime,
                     pool: ParsePool | None) -> Parsed:
        # Parsing and normalizing are CPU work: in worker processes during a round (they run
        # beside the event loop), else in a thread (it does not stall the loop either).
        args = (result.body, result.final_url, result.content_type, kind, spec.selectors, spec, now)
        if pool is not None:
            return await pool.run(*args)
        return await asyncio.to_thread(parse_and_normalize, *args)

    async def _read_children(self, fetcher: Fetcher, spec: SourceSpec, index: Parsed,
                             now: datetime, pool: ParsePool | None) -> Parsed:
        """The stories of a sitemap index: its newest `CHILD_SITEMAPS` children, read each
        round (an index changes when a child does, so its own 304 says nothing of them). A
        child that fails is a problem of the source; all of them failing is its failure. An
        index inside a child is not followed: no loops, and a bounded round."""
        chosen = index.doc.child_urls[:CHILD_SITEMAPS]  # newest first (sitemap.py)
        problems, drafts, items, left_out, errors = list(index.doc.problems), [], 0, 0, []
        left_out_urls: list[str] = []
        for url in chosen:
            try:
                result = await fetcher.fetch(url, Validators(), own_host=own_host(spec))
                if result.not_modified:
                    raise FetchError(f"{url} answered 304 Not Modified to a request without validators")
                child = await self._parse(result, spec, "sitemap", now, pool)
            except (FetchError, ParseError) as e:
                errors.append(e)
                problems.append(f"child sitemap {url}: {e}")
                continue
            if child.doc.child_urls:
                problems.append(f"child sitemap {url} is itself an index: not followed")
            problems.extend(f"{url}: {p}" for p in child.doc.problems)
            drafts.extend(child.drafts)
            items += child.item_count
            left_out += child.left_out
            left_out_urls.extend(child.left_out_urls)
        if errors and len(errors) == len(chosen):
            raise errors[0]
        left = len(index.doc.child_urls) - len(chosen)
        if left:
            problems.append(f"{left} older child sitemaps not read")
        doc = replace(index.doc, problems=tuple(problems))
        return Parsed(doc, items, tuple(drafts), left_out, left_out_urls=tuple(left_out_urls),
                      partial=bool(errors))

    async def _read_pages(self, fetcher: Fetcher, spec: SourceSpec, first: Parsed, first_url: str,
                          now: datetime, pool: ParsePool | None, stored: Stored | None,
                          started_s: float) -> Parsed:
        """A listing with the pages after it, by their rel=next links, up to the source's
        `pages` in all: a new source's backfill, and a round's stories past the first page
        when more came out since the last round than one page shows. Not past a page holding
        a stored story (`stored`): the later ones hold older stories still. Only on the
        listing's own host, and where robots.txt allows (the site's pager named them, not
        the operator); no page twice. A page that fails is a problem; those read stay. None
        read past `MAX_ITEMS` items, as one document keeps: ten pages of 5,000 were one batch
        of 50,000 stories, more parameters than PostgreSQL takes in a statement (32,767), and
        the source failed every round, storing nothing. Nor one that could end past
        `pages_deadline_s` after the source's fetch began (`started_s`, monotonic)."""
        hosts = {urlsplit(spec.url).hostname, urlsplit(first_url).hostname}
        # By `page_key`: a pager's "next" to "#more" of the page read, or to it with tracking
        # parameters, named a page read already, and it was fetched again.
        seen, page = {page_key(spec.url), page_key(first_url)}, first
        problems, drafts = list(first.doc.problems), list(first.drafts)
        items, left_out, left_out_urls = first.item_count, first.left_out, list(first.left_out_urls)
        for _ in range(spec.selectors.pages - 1 if spec.selectors else 0):
            url = page.doc.next_url
            if not url or page_key(url) in seen:
                break
            if urlsplit(url).hostname not in hosts:
                problems.append(f"next page {url} is on another host: not followed")
                break
            if stored is not None and await stored(d.url for d in page.drafts):
                break
            if len(drafts) >= MAX_ITEMS:
                problems.append(f"next page {url} not read: {len(drafts)} items read already")
                break
            spent_s = time.monotonic() - started_s
            if spent_s + self.settings.total_timeout_s > pages_deadline_s(self.settings):
                problems.append(
                    f"next page {url} not read: {spent_s:.1f} s into the source's "
                    f"{self.settings.lease_s} s claim, and a page may take "
                    f"{self.settings.total_timeout_s:g} s (pages stop at half the claim)")
                break
            seen.add(page_key(url))
            try:
                result = await fetcher.fetch_page(url, own_host=own_host(spec))
                page = await self._parse(result, spec, "html", now, pool)
            except (FetchError, ParseError) as e:
                problems.append(f"next page {url}: {e}")
                break
            problems.extend(f"{url}: {p}" for p in page.doc.problems)
            drafts.extend(page.drafts)
            items += page.item_count
            left_out += page.left_out
            left_out_urls.extend(page.left_out_urls)
        return Parsed(replace(first.doc, problems=tuple(problems)), items, tuple(drafts), left_out,
                      left_out_urls=tuple(left_out_urls))

    async def check(self, spec: SourceSpec, source_urls: Iterable[str] = ()) -> SourceCheck:
        """Dry run for `tidings sources check`: fetch and parse once, store nothing. A
        full_text source has the pages of its first `CHECK_SAMPLE` items read, not all.

        `source_urls`: the sources file's, whose hosts are trusted with any address, as a
        round trusts the configured sources' (the store's, once a collector applied that
        file); none: only `spec`'s host is. It reads no database, so a check needs none (it
        made an empty one in a mistyped data dir)."""
        async with self._fetcher([spec.url, *source_urls]) as fetcher:
            parsed, _ = await self._read(fetcher, spec, Validators(), self.clock())
            if parsed is None:  # nothing was asked conditionally, so there is nothing to reuse
                raise FetchError(f"{spec.url} answered 304 Not Modified to a request without "
                                 "validators: no feed to check")
            doc, drafts, pages = parsed.doc, list(parsed.drafts), PagesRead()
            if spec.full_text and drafts:
                # The rest are not dropped: they were cut to the sample, and `usable` said
                # 3 of a feed whose every item is usable.
                sample, _, pages = await self._with_full_text(fetcher, spec, drafts[:CHECK_SAMPLE],
                                                              only_new=False)
                drafts = sample + drafts[CHECK_SAMPLE:]
                if pages.problem:
                    doc = replace(doc, problems=(*doc.problems, pages.problem))
            return SourceCheck(doc, titled(drafts), read_in_full=pages.read,
                               untitled=len(drafts) - len(titled(drafts)), left_out=parsed.left_out,
                               repeated=parsed.repeated)

    async def _with_full_text(self, fetcher: Fetcher, spec: SourceSpec, drafts: list[StoryDraft],
                              only_new: bool = True, failed_before: Mapping[str, int] | None = None,
                              ) -> tuple[list[StoryDraft], int, PagesRead]:
        """`drafts` with their article pages read (at most `full_text_limit` pages, those of
        stories not stored with a text yet), how many untitled drafts were not read:
        already stored, or left for a later round by the limit, and the pages that failed.
        `failed_before`: the failed rounds in a row of the source's pages, as stored."""
        failed_before = failed_before or {}
        known = await self.store.urls_with_text(d.url for d in drafts) if only_new else set()
        todo = [d for d in drafts if d.url not in known][: self.settings.full_text_limit]

        waiting: set[str] = set()  # failed pages still tried next round (`page_waits`)

        async def page(d: StoryDraft) -> tuple[StoryDraft, str | None]:
            try:
                res = await fetcher.fetch_page(d.original_url or d.url, own_host=own_host(spec))
                art = await read_article(res.body, res.final_url)
                return merge_article(d, art, self.clock()), None
            except Exception as e:  # one unreadable article page never costs the whole feed
                log.info("collect.page_failed url=%s error=%s", masked_secrets(d.url),
                         masked_secrets(str(e)))
                if page_waits(e, failed_before.get(d.url, 0) + 1):
                    waiting.add(d.url)
                return d, f"{d.url}: {e}"

        outcomes = await asyncio.gather(*(page(d) for d in todo))
        done = {d.url: d for d, _ in outcomes}
        unread = sum(1 for d in drafts if not d.title and d.url not in done)
        failures = tuple(why for _, why in outcomes if why is not None)  # in the feed's order
        tried = {d.url for d in todo}
        # Past the limit (not tried this round), or failed and still to be tried.
        left = sum(1 for d in drafts if d.url not in known
                   and (d.url not in tried or d.url in waiting))
        failed_rounds = failed_rounds_after(
            (d.url for d in drafts if d.url not in known), failed_before,
            {d.url for d, why in outcomes if why is not None}, tried)
        return ([done.get(d.url, d) for d in drafts], unread,
                PagesRead(len(todo), failures, left, failed_rounds))

    async def _failed(self, state: SourceState, err: Exception, t0: float) -> SourceReport:
        msg = str(err) or type(err).__name__
        if not isinstance(err, TidingsError):
            msg = f"internal error: {type(err).__name__}: {msg}"
        status = getattr(err, "status", None)
        retry = getattr(err, "retry_after_s", None)
        now = self.clock()
        errors = state.error_count + 1
        at, interval = next_check_at(now, configured_s=state.spec.interval_s, error_count=errors,
                                     outcome=FetchOutcome(ok=False, retry_after_s=retry),
                                     bounds=self.bounds, rng=self.rng)
        await self._write_record(state, FetchRecord(
            ok=False, next_check_at=at, interval_s=interval, status=status, error=msg,
            elapsed_s=time.perf_counter() - t0, spec=state.spec,
            claimed_due=state.next_check_at), now)
        log.warning("collect.failed source=%s errors=%d next_in_s=%d error=%s",
                    state.spec.name, errors, interval, masked_secrets(msg))
        return SourceReport(state.spec.name, False, status, error=msg,
                            elapsed_s=time.perf_counter() - t0)

    async def _record(self, state: SourceState, outcome: FetchOutcome, result, t0: float, *,
                      items: int, new: int, kind: str = "",
                      page_failures: Mapping[str, int] | None = None) -> int:
        """Record a successful fetch; returns the failed fetches in a row it ended (0 when
        the source was not failing, or the result was not recorded)."""
        now = self.clock()
        at, interval = next_check_at(now, configured_s=state.spec.interval_s, error_count=0,
                                     outcome=outcome, bounds=self.bounds, rng=self.rng)
        recorded = await self._write_record(state, FetchRecord(
            ok=True, next_check_at=at, interval_s=interval, status=result.status,
            etag=result.etag if not result.not_modified else state.etag,
            last_modified=result.last_modified if not result.not_modified else state.last_modified,
            new_url=result.permanent_redirect_to, detected_kind=kind, new_stories=new,
            items=items, elapsed_s=time.perf_counter() - t0, spec=state.spec, claimed_due=state.next_check_at,
            page_failures=None if page_failures is None else dict(page_failures)), now)
        if not (recorded and state.error_count):
            return 0
        # Said, at the level its failures were: the log showed `collect.failed` for each
        # failed fetch and then nothing, so an operator reading it (or filtering warnings)
        # could not tell a source that came back from one still down; a 304 logs no
        # `collect.ok`, and a feed back from an outage unchanged answers 304.
        log.warning("collect.recovered source=%s after_errors=%d", state.spec.name,
                    state.error_count)
        return state.error_count

    async def _write_record(self, state: SourceState, rec: FetchRecord, now: datetime) -> bool:
        """Write a fetch's result on its source; False when it was stale (not written)."""
        if not await self.store.record_fetch(state.id, rec, now):
            # Its validators, schedule and health would be the old source's: the source
            # stays as the edit left it (a new URL due now) and is fetched under it.
            log.info("collect.stale source=%s: the sources file changed during its fetch; "
                     "its result is not recorded", state.spec.name)
            return False
        return True
