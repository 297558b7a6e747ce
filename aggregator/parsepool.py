"""Parse and normalize fetched bodies in worker processes, so a round uses every core.

Parsing and normalizing are pure CPU work in Python (the GIL): in a thread they only take
turns with the event loop that fetches and stores. In a process pool they run beside it.
A one-off round starts its pool lazily, on the first body it actually has to parse (a round
of 304s never pays for one), and shuts it down when the round ends. A long-running collector
(the `collect` and `run` roles) starts one pool when it starts and keeps it across rounds:
spawning a worker costs ~0.3 s of CPU (a Python start and the parse modules' imports), paid
in every round before, and the first stories of a round waited for it. Workers are spawned,
not forked: the collector's process holds threads (aiosqlite, the resolver) that a fork would
copy mid-flight. If the pool breaks (a worker killed), the round goes on parsing in threads
and a kept pool is replaced before the next round.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import datetime

from aggregator.childproc import child_start, interrupts_held
from aggregator.itemrules import RuleTooSlow, admitted
from aggregator.model import ParsedDocument, Selectors, SourceSpec, StoryDraft
from aggregator.normalize import normalize, rejection_reason
from aggregator.parse import parse_document

log = logging.getLogger("tidings.collect")
# Below this many sources a round parses in threads: starting processes (~0.3 s each) would
# cost more than it saves.
MIN_SOURCES_FOR_POOL = 20
# A small feed a new worker parses once, so its first real body finds every module imported
# and every pattern compiled.
_WARM_FEED = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
              b'<item><title>Warm</title><link>http://warm.example/a</link>'
              b'<description>w</description><pubDate>Mon, 02 Jan 2006 15:04:05 GMT</pubDate>'
              b'</item></channel></rss>')


@dataclass(frozen=True)
class Parsed:
    """A parsed body and its drafts. `doc.items` is emptied when it crosses a process
    boundary (the drafts carry what the store needs), `item_count` keeps the count;
    `left_out` counts the usable items the source's rules left out."""

    doc: ParsedDocument
    item_count: int
    drafts: tuple[StoryDraft, ...]
    left_out: int = 0


def drafts_from(doc: ParsedDocument, spec: SourceSpec,
                now: datetime) -> tuple[list[StoryDraft], int, ParsedDocument]:
    """The drafts of `doc`'s items that the source's `keep` and `block` rules admit, how many
    usable ones they left out, and `doc` (with a problem added if a rule was too slow, and one
    for each reason items were unusable: no title and no summary, a bad link); for a
    full_text source, untitled ones too (see `normalize`): its caller reads their pages, then
    keeps `collect.titled` ones.

    A rule that runs past its time limit on one item is not applied to the rest of the
    document: those items are kept (an operator's pattern loses no story) and the problem says
    which rule to simplify. Tried on every item, it would cost its limit on each."""
    drafts, left_out, keep, block = [], 0, spec.keep, spec.block
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
            left_out += 1
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
    drafts, left_out, doc = drafts_from(doc, spec, now)
    count = len(doc.items)
    return Parsed(doc if keep_items else replace(doc, items=()), count, tuple(drafts), left_out)


def default_workers() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def _warm() -> int:
    spec = SourceSpec(name="warm", url="http://warm.example/feed", category="warm", kind="feed")
    return parse_and_normalize(_WARM_FEED, spec.url, "application/rss+xml", "feed", None, spec,
                               datetime(2006, 1, 2)).item_count


class ParsePool:
    """Parse worker processes. `async with` (one round) or `close()` (a kept pool) shuts them
    down; `start()` spawns them ahead of the first body."""

    def __init__(self, workers: int, sources: int = MIN_SOURCES_FOR_POOL):
        self.workers = workers if sources >= MIN_SOURCES_FOR_POOL else 0
        self._pool: ProcessPoolExecutor | None = None
        self._broken = False

    async def __aenter__(self) -> ParsePool:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    @property
    def broken(self) -> bool:
        return self._broken

    async def start(self) -> None:
        """Spawn every worker now and let each parse a small feed once."""
        if not self.workers or self._pool is not None:
            return
        # One task per worker, submitted together: an executor spawns a new process for each
        # task that finds no idle one.
        await asyncio.gather(*[self._submit(_warm) for _ in range(self.workers)])

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            # Joining the workers blocks; do it off the loop.
            await asyncio.to_thread(pool.shutdown, wait=True, cancel_futures=True)

    def _submit(self, fn, *args) -> asyncio.Future:
        """`fn(*args)` in a worker; a submit may spawn one, hence SIGINT held around it."""
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers,
                                             mp_context=multiprocessing.get_context("spawn"),
                                             initializer=child_start, initargs=(os.getpid(),))
        with interrupts_held():
            return asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def run(self, body: bytes, base_url: str, content_type: str | None, kind: str,
                  selectors: Selectors | None, spec: SourceSpec, now: datetime) -> Parsed:
        args = (body, base_url, content_type, kind, selectors, spec, now)
        if self.workers and not self._broken:
            try:
                return await self._submit(parse_and_normalize, *args, False)
            except BrokenProcessPool:
                if not self._broken:
                    log.warning("collect.parse_pool_broken: parsing in threads for the rest of the round")
                self._broken = True
        return await asyncio.to_thread(parse_and_normalize, *args, True)
