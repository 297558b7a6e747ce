"""Parse and normalize fetched bodies in worker processes, so a round uses every core.

Parsing and normalizing are pure CPU work in Python (the GIL): in a thread they only take
turns with the event loop that fetches and stores. In a process pool they run beside it.
A one-off round starts its pool lazily, on the first body it actually has to parse (a round
of 304s never pays for one), and shuts it down when the round ends. A long-running collector
(the `collect` and `run` roles) starts one pool when it starts and keeps it across rounds:
spawning a worker costs ~0.3 s of CPU (a Python start and the parse modules' imports), paid
in every round before, and the first stories of a round waited for it. Workers are spawned,
not forked: the collector's process holds threads (aiosqlite, the resolver) that a fork would
copy mid-flight.

Each body has `timeout_s` to parse (`[collect] parse_timeout_s`). feedparser, lxml and the
sources' rules have no time limit of their own, and a pathological body (a crafted feed, a
hostile 10 MB sitemap) held its worker for as long as it took: the round could not end, and
the other sources' bodies queued behind it. Past the limit the body fails as `ParseTooSlow`
(the source's fetch is recorded as failed), its worker is killed with the pool and a new pool
takes the rest of the round. A thread cannot be killed: a round parses in threads only when
told to (`workers=0`), and then without a limit; a round of fewer sources than
`MIN_SOURCES_FOR_POOL` gets one worker instead of threads, for the limit's sake.

A worker that crashes (a segfault in libxml2, the OOM killer, an `os._exit` in a C extension)
breaks its pool. The round went on parsing in threads, without the limit, and parsed the body
that crashed the worker again in the collector's own process, where the same crash took the
collector (and in `tidings run`, the API and indexer) down. Now a crash is handled as the
time limit is: a new pool takes the rest of the round, and the bodies that were in flight get
one more try in it (an executor cannot say which of them crashed it). A body in flight at a
second crash fails as `ParseCrashed`. Past `MAX_RESTARTS` crashes in a round, its remaining
bodies fail too, unparsed, rather than spawn workers in a loop; the next round starts afresh.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import signal
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import datetime

from aggregator.childproc import child_start, interrupts_held
from aggregator.errors import ParseError
from aggregator.itemrules import RuleTooSlow, admitted
from aggregator.model import ParsedDocument, Selectors, SourceSpec, StoryDraft
from aggregator.normalize import normalize, rejection_reason
from aggregator.parse import parse_document

log = logging.getLogger("tidings.collect")
# Below this many sources a round parses in one worker, not `workers`: starting processes
# (~0.3 s each) would cost more than it saves. One, not threads: a thread past the parse
# time limit cannot be stopped.
MIN_SOURCES_FOR_POOL = 20
# `[collect] parse_timeout_s`'s default. The biggest sitemap the default body cap lets in
# (10 MB, 98,000 plain entries) parses in ~1.2 s of CPU on a quiet 2-core VM, up to ~11 s on a
# loaded one; an ordinary feed, 5-50 ms.
PARSE_TIMEOUT_S = 60.0
# Crashed pools replaced in a round before its remaining bodies fail unparsed: a body that
# crashes its worker costs two (it is retried once), so a few such bodies, not a loop.
MAX_RESTARTS = 3
# A small feed a new worker parses once, so its first real body finds every module imported
# and every pattern compiled.
_WARM_FEED = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
              b'<item><title>Warm</title><link>http://warm.example/a</link>'
              b'<description>w</description><pubDate>Mon, 02 Jan 2006 15:04:05 GMT</pubDate>'
              b'</item></channel></rss>')


class ParseTooSlow(ParseError):
    pass


class ParseCrashed(ParseError):
    pass


def exit_reason(exitcodes: list[int | None]) -> str:
    """How a broken pool's workers ended, said of the one that crashed: the executor
    terminates (SIGTERM) the others once one dies, so an exit other than that is the crash."""
    ended = [c for c in exitcodes if c is not None]
    crashed = [c for c in ended if c != -signal.SIGTERM] or ended
    if not crashed:
        return "worker exited abruptly"
    code = crashed[0]
    if code < 0:
        try:
            return f"worker exited with signal {signal.Signals(-code).name}"
        except ValueError:
            return f"worker exited with signal {-code}"
    return f"worker exited with code {code}"


@dataclass(frozen=True)
class Parsed:
    """A parsed body and its drafts. `doc.items` is emptied when it crosses a process
    boundary (the drafts carry what the store needs), `item_count` keeps the count;
    `left_out` counts the usable items the source's rules left out, `left_out_urls` their
    links (still carried by the source: `collect.carried_urls`), `repeated` the drafts
    merged into an earlier copy of their link (`collect`, `first_of_each_link`); `partial`:
    part of the document failed (a child of a sitemap index), so what it carries is unknown."""

    doc: ParsedDocument
    item_count: int
    drafts: tuple[StoryDraft, ...]
    left_out: int = 0
    repeated: int = 0
    left_out_urls: tuple[str, ...] = ()
    partial: bool = False


def drafts_from(doc: ParsedDocument, spec: SourceSpec,
                now: datetime) -> tuple[list[StoryDraft], int, ParsedDocument]:
    """`admitted_drafts` with the count of the items left out, not their links."""
    drafts, left_out, doc = admitted_drafts(doc, spec, now)
    return drafts, len(left_out), doc


def admitted_drafts(doc: ParsedDocument, spec: SourceSpec,
                    now: datetime) -> tuple[list[StoryDraft], list[str], ParsedDocument]:
    """The drafts of `doc`'s items that the source's `keep` and `block` rules admit, the links of
    the usable ones they left out, and `doc` (with a problem added if a rule was too slow, and one
    for each reason items were unusable: no title and no summary, a bad link); for a
    full_text source, untitled ones too (see `normalize`): its caller reads their pages, then
    keeps `collect.titled` ones.

    A rule that runs past its time limit on one item is not applied to the rest of the
    document: those items are kept (an operator's pattern loses no story) and the problem says
    which rule to simplify. Tried on every item, it would cost its limit on each."""
    drafts, left_out, keep, block = [], [], spec.keep, spec.block
    unusable: dict[str, tuple[int, str]] = {}  # why -> how many items, the first's link
    for item in doc.items:
        d = normalize(item, source=spec, now=now, keep_untitled=spec.full_text)
        if d is None:
            # Said, as the parser says of an item without a link: dropped without a word,
            # an item with only a link (no title, no summary) was missing from the source's
            # stories while `sources check` and the log showed nothing wrong.
            why = rejection_reason(item)
            count, first = unusable.get(why, (0, item.url))
            unusable[why] = (count + 1, first)
            continue
        try:
            ok = admitted(d, keep, block)
        except RuleTooSlow as e:
            ok, keep, block = True, "", ""
            doc = replace(doc, problems=(*doc.problems, f"{e}; its rules were not applied to "
                                         "this item and the ones after it: simplify the rule"))
        if ok:
            drafts.append(d)
        else:
            left_out.append(d.url)
    untitled = sum(not item.title for item in doc.items) if doc.kind == "sitemap" else 0
    if untitled and not spec.full_text:
        # Said here, where the source's setting is known, not by the parser: of a full_text
        # source, whose untitled links are read for their titles as they should be, it was a
        # problem on every round in `collect` and `sources check`.
        doc = replace(doc, problems=(*doc.problems, (
            f"{untitled} of {len(doc.items)} entries have no news:title (plain sitemap entries "
            "need full-text reading for a title: full_text = true)")))
    if unusable:  # one line per reason: a plain sitemap's thousand untitled links are one
        doc = replace(doc, problems=(*doc.problems, *(
            f"1 item skipped ({why}): {first[:100]}" if count == 1 else
            f"{count} items skipped ({why}), the first {first[:100]}"
            for why, (count, first) in unusable.items())))
    return drafts, left_out, doc


def parse_and_normalize(body: bytes, base_url: str, content_type: str | None, kind: str,
                        selectors: Selectors | None, spec: SourceSpec, now: datetime,
                        keep_items: bool = True) -> Parsed:
    doc = parse_document(body, base_url=base_url, content_type=content_type, kind=kind,
                         selectors=selectors, now=now)
    drafts, left_out, doc = admitted_drafts(doc, spec, now)
    count = len(doc.items)
    return Parsed(doc if keep_items else replace(doc, items=()), count, tuple(drafts),
                  len(left_out), left_out_urls=tuple(left_out))


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _warm() -> int:
    spec = SourceSpec(name="warm", url="http://warm.example/feed", category="warm", kind="feed")
    return parse_and_normalize(_WARM_FEED, spec.url, "application/rss+xml", "feed", None, spec,
                               datetime(2006, 1, 2)).item_count


class ParsePool:
    """Parse worker processes. `async with` (one round) or `close()` (a kept pool) shuts them
    down; `start()` spawns them ahead of the first body."""

    def __init__(self, workers: int, sources: int = MIN_SOURCES_FOR_POOL,
                 timeout_s: float = PARSE_TIMEOUT_S):
        self.workers = workers if sources >= MIN_SOURCES_FOR_POOL else min(workers, 1)
        self.timeout_s = timeout_s
        self._pool: ProcessPoolExecutor | None = None
        # This round's crashed pools, each with how its workers ended (see `_crashed`).
        self._crashes: dict[ProcessPoolExecutor, asyncio.Task[str]] = {}
        # One spawn at a time, so a body waits for its pool's workers outside its time limit.
        self._starting = asyncio.Lock()
        # At most one body per worker handed to the executor: a body queued in it behind
        # others would spend its time limit waiting.
        self._slots = asyncio.Semaphore(max(1, self.workers))

    async def __aenter__(self) -> ParsePool:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def broken(self) -> bool:
        """Crashed more than `MAX_RESTARTS` times this round: its bodies fail unparsed."""
        return len(self._crashes) > MAX_RESTARTS

    def new_round(self) -> None:
        """A kept pool's next round: its crash count starts again."""
        self._crashes = {}

    async def start(self) -> None:
        """Spawn every worker now and let each parse a small feed once."""
        if not self.workers:
            return
        async with self._starting:
            if self._pool is not None:
                return
            self._pool = ProcessPoolExecutor(self.workers,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=child_start, initargs=(os.getpid(),))
            # One task per worker, submitted together: an executor spawns a new process for
            # each task that finds no idle one.
            await asyncio.gather(*[self._submit(self._pool, _warm) for _ in range(self.workers)])

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await _shut(pool)

    @staticmethod
    def _submit(pool: ProcessPoolExecutor, fn, *args) -> asyncio.Future:
        """`fn(*args)` in a worker; a submit may spawn one, hence SIGINT held around it."""
        with interrupts_held():
            return asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    async def run(self, body: bytes, base_url: str, content_type: str | None, kind: str,
                  selectors: Selectors | None, spec: SourceSpec, now: datetime) -> Parsed:
        args = (body, base_url, content_type, kind, selectors, spec, now)
        if not self.workers:
            return await asyncio.to_thread(parse_and_normalize, *args, True)
        async with self._slots:
            return await self._in_worker(args)

    async def _in_worker(self, args: tuple) -> Parsed:
        """`parse_and_normalize(*args)` in a worker, given up after `timeout_s` (ParseTooSlow).
        A body whose pool was killed for another body's time limit is parsed again in the
        new pool; one whose pool crashed, once (ParseCrashed at the second crash). Never
        in this process: what crashed a worker would crash the collector."""
        crashes = 0
        while True:
            pool = await self._ready()
            try:
                future = self._submit(pool, parse_and_normalize, *args, False)
            except BrokenProcessPool:  # it broke before this body got to it
                await self._crashed(pool)
                continue
            try:
                return await asyncio.wait_for(future, self.timeout_s)
            except TimeoutError:
                await self._kill(pool)
                raise ParseTooSlow(f"parsing took over {self.timeout_s:g} s") from None
            except BrokenProcessPool:
                if pool is not self._pool and pool not in self._crashes:
                    continue  # killed for another body's time limit
                reason = await self._crashed(pool)
                crashes += 1
                if crashes == 2:
                    raise ParseCrashed(f"the parser crashed on this body ({reason})") from None

    async def _ready(self) -> ProcessPoolExecutor:
        """The pool to submit to, started if need be; ParseCrashed once the round's pools
        crashed too often."""
        while True:
            if self.broken:
                raise ParseCrashed(f"not parsed: the parse workers crashed {len(self._crashes)} "
                                   "times this round (the next round tries again)")
            try:
                await self.start()
            except BrokenProcessPool:  # a worker crashed warming up
                if self._pool is not None:
                    await self._crashed(self._pool)
                continue
            if self._pool is not None:
                return self._pool

    async def _crashed(self, pool: ProcessPoolExecutor) -> str:
        """How `pool`'s crashed worker ended. The first body to see the crash shuts the pool
        down (the next body starts a new one); the others wait for the same answer."""
        if pool not in self._crashes:
            if self._pool is pool:
                self._pool = None
            self._crashes[pool] = asyncio.ensure_future(self._shut_crashed(pool))
        return await asyncio.shield(self._crashes[pool])

    async def _shut_crashed(self, pool: ProcessPoolExecutor) -> str:
        procs = _workers(pool)  # before shutdown(), which drops them
        await _shut(pool)
        reason = exit_reason([p.exitcode for p in procs])
        if self.broken:
            log.error("collect.parse_pool_crashed: %s; %d crashes this round, its remaining "
                      "bodies fail unparsed", reason, len(self._crashes))
        else:
            log.warning("collect.parse_pool_crashed: %s; a new pool takes the rest of the "
                        "round", reason)
        return reason

    async def _kill(self, pool: ProcessPoolExecutor) -> None:
        """Kill `pool`'s workers; the next body starts a new pool. An executor can neither
        cancel a running task nor say which worker runs it, so all go: the bodies the others
        were parsing fail as BrokenProcessPool and are parsed again (`_in_worker`)."""
        if self._pool is pool:
            self._pool = None
        log.warning("collect.parse_too_slow: parse workers killed after %g s, a new pool takes "
                    "the rest of the round", self.timeout_s)
        for proc in _workers(pool):  # Python 3.14's `kill_workers()` does this
            proc.kill()
        await _shut(pool)


def _workers(pool: ProcessPoolExecutor) -> list:
    """`pool`'s worker processes. `_processes` is private: an executor neither kills its
    workers (before 3.14) nor says how they ended."""
    return list((pool._processes or {}).values())


async def _shut(pool: ProcessPoolExecutor) -> None:
    """Shut `pool` down, its queued bodies cancelled; joining the workers blocks, so off the
    event loop."""
    await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)
