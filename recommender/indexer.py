"""The indexing flow: stories without a current vector -> embed -> store vector -> index.

Embedding runs in a worker thread so the event loop (collector, API) never waits on the model.
Vectors go to the database first, with an `index_changes` entry; every corpus (this process's
and other replicas') picks them up from that log, so the database stays the source of truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aggregator.store import EmbedJob, Store
from recommender.embed import Embedder, story_text

log = logging.getLogger("tidings.index")


@dataclass(frozen=True)
class IndexReport:
    embedded: int
    elapsed_s: float
    backlog: int


def texts_of(jobs: list[EmbedJob]) -> list[str]:
    return [story_text(j.title, j.summary, j.text) for j in jobs]


class Indexer:
    def __init__(self, store: Store, embedder: Embedder, *, batch_size: int = 32,
                 chunk: int = 256, lease_s: int = 600):
        self.store = store
        self.embedder = embedder
        self.batch_size = batch_size
        self.chunk = chunk  # stories per database round trip
        # Stories are claimed with a lease, so several indexers share the backlog and each
        # story is embedded once; a crashed indexer's claims come back after the lease.
        self.lease_s = lease_s

    async def run_once(self, limit: int | None = None) -> int:
        """Embed one chunk of the backlog; returns how many stories it processed."""
        n = self.chunk if limit is None else min(self.chunk, limit)
        jobs = await self.store.claim_embed_backlog(self.embedder.recipe, n, lease_s=self.lease_s)
        if not jobs:
            return 0
        try:
            vecs = await asyncio.to_thread(self.embedder.encode, texts_of(jobs), self.batch_size)
        except (asyncio.CancelledError, KeyboardInterrupt):
            # Interrupted (Ctrl-C, shutdown): hand the claims back, so a rerun takes these
            # stories now instead of after the lease. Not on errors: a chunk that fails
            # every time must not be claimed again first and stall the whole backlog.
            with contextlib.suppress(Exception):
                await self.store.release_embed_claims([j.id for j in jobs])
            raise
        rows = [(j.id, j.embed_version, vecs[i].astype("<f4").tobytes()) for i, j in enumerate(jobs)]
        # Stories deleted meanwhile are skipped by the store; they still count as processed.
        await self.store.save_vectors(rows, self.embedder.recipe)
        return len(jobs)

    async def drain(self, progress: Callable[[int, int], None] | None = None,
                    limit: int | None = None) -> IndexReport:
        """Embed until the backlog is empty (or `limit` stories are done)."""
        t0 = time.perf_counter()
        total = await self.store.backlog_size(self.embedder.recipe)
        done = 0
        while limit is None or done < limit:
            n = await self.run_once(None if limit is None else limit - done)
            if n == 0:
                break
            done += n
            if progress:
                progress(done, total)
        backlog = await self.store.backlog_size(self.embedder.recipe)
        return IndexReport(done, time.perf_counter() - t0, backlog)
