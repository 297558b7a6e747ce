"""The indexing flow: stories without a current vector -> embed -> store vector -> index.

Embedding runs in a worker thread so the event loop (collector, API) never waits on the model.
Vectors go to the database first, with an `index_changes` entry; every corpus (this process's
and other replicas') picks them up from that log, so the database stays the source of truth.

One claim takes up to `chunk` stories of the backlog (all there is when less: a quiet feed is
embedded as it arrives, a backlog in large claims) and embeds them in pieces of `piece`
stories, longest texts first. Each piece is saved while the model runs the next, and the next
claim is taken while the model runs the last piece, so the model never waits on the database.
Sorting a whole claim before cutting it keeps the model's padding near what one call over the
claim pads: on the ingest benchmark's 1,444 stories, claims of 256 in id order padded 9% more
tokens (16% more attention work) than one sorted call; pieces of 256 cut from one sorted claim
pad 2-3% more (characters only approximate word pieces). Pieces keep stories searchable a
piece (~2 s of model time) at a time, not a claim at a time.

Tried and not kept (2026-12-04, 2-core AMD EPYC, OpenVINO int8): tokenising each claim once
and cutting pieces along the batches one call over it would run (exact padding; the model
calls then take token ids). Padded tokens over the ingest benchmark's 1,444 stories in its
claims of ~[177, 363, 904], against one sorted call: pieces cut by characters +4.7%, along
token batches +3.3%, one claim cut along batches 0%. Offline, 5 interleaved reps of the model
alone on those claims: model CPU 17.12 -> 16.70 s (one call 16.16). Through the pipeline it
moved nothing measurable: 3 A/B sets of 4 runs each, ratio medians 0.835 / 0.834 / 0.882 old
vs 0.806 / 0.824 / 0.860 new on a machine whose runs spread 0.77-0.96, and tokenising the
first claim before the model starts delayed its first call by ~0.3 s (median). The claims are
where the padding comes from: the collector stores a round in bursts, so the first claims
are small and sorted apart from the rest.
Also tried the same day: claims ahead of the collector's queued SQLite writes (a write lock
with an urgent lane; claims had waited up to 0.5 s behind a round's upserts). The model's
idle time before its first call fell (medians 0.34 -> 0.29 s) but idle time between calls
rose from ~0 to 0.11-0.19 s (claims came back sooner and smaller: a piece of one story, then
a long wait on the next, large claim), and the ratio did not move: 2 A/B sets of 4 runs,
medians 0.780 / 0.837 old vs 0.834 / 0.777 new. Not kept.
Also tried (2026-12-07, 2-core AMD EPYC, AVX2, onnxruntime int8): on SQLite, reading a claim
without the write lock and writing its lease beside the model's start. The wait from a claim's
start to the model's first call fell (medians 0.04 -> 0.02 s, worst of 6 runs 0.15 -> 0.04 s)
and the ratio did not move (0.723-0.971 old, 0.880-0.909 new). Then a `make bench` run showed a
race: a second read, taken while the first claim's lease was being written, saw the same
stories free; the ids the next read leaves out had been dropped once the lease committed, and
131 of 1,438 stories were embedded twice (saved once: the second lease failed). Holding the ids
until their save (the lease then covers the rest) would close it. Reverted, not re-measured.
Also tried (2026-12-06, 2-core Intel Xeon model 207): the collector's parse workers at nice
10, so the model's threads keep both cores while parsing fills the gaps. 3 A/B sets of 3 runs,
alternated: ratio median 0.801 (0.771-0.839) at nice 0 against 0.792 (0.748-0.830) at nice 10.
The parse workers' ~0.45 s of CPU is too little of the gap to show. Not kept.
Kept (2026-12-07, 2-core AMD EPYC with VNNI, OpenVINO int8): the collector wakes the indexer
as soon as a source's stories are committed (it woke it once the source's record was written,
~40 ms later behind the round's queued stores), and a claim taken while the model idles (the
first of a `run`) goes ahead of the queued stores (`aggregator.writelock`; it had waited ~80 ms
behind them). Claims taken beside a busy model keep their turn, unlike the urgent lane tried
on 2026-12-04. 3 A/B sets of 3 runs, alternated, on a noisy machine (embedder alone 146-208
stories/s): the model's idle time before its first call median 0.21 -> 0.12 s, ratio median
0.843 (0.77-0.95) -> 0.882 (0.78-0.95).
Where the ratio stands (2026-12-07, later, 2-core AMD EPYC with VNNI, a faster machine: the
embedder alone 344-413 stories/s, ~7 CPU-s for the benchmark's 1,438 stories, against 146-208
the session before): 5 runs 0.75-0.83. The model no longer idles (0.07-0.11 s before its
first call, ~0 between calls, 0.03 s after the last); what is left is CPU. Beside the model,
a run spends ~1.5-1.9 CPU-s on 2 cores: the event loop 0.54-0.66 (the corpus's follow ~half of
it, its lexical `add_many` ~a third; the round's upserts ~a quarter), the model's caller
0.21-0.29, the parse workers 0.41-0.53 (0.36 CPU-s for the 40 feeds parsed in one process;
no single part above 10%), SQLite and the rest. With both cores busy, the ratio cannot pass
model CPU / (model CPU + the rest) = 7 / (7 + 1.5 to 1.9) = 0.79-0.82, where it measures; the
faster the model, the lower that ceiling (the same pipeline read 0.87 beside a model at half
the speed). 0.90 needs the rest at ~0.8 CPU-s, about half of today's, spread over parsing,
storing, following and lexical indexing: no single change gets there.
Tried and not kept (2026-12-07, evening, 2-core AMD EPYC shared with other runs, so CPU-seconds):
the indexer handing what it saved (vectors, the cards its UPDATE ... RETURNING read, the seq of
the change entry it logged) to its own process's corpus, whose follow took them from there on
reaching that very entry instead of reading them back. Offline over the benchmark's 1,438
stories in its 8 pieces, 15 alternated reps, process CPU: the follow 0.478 -> 0.390 s, the
saves 0.106 -> 0.152 s (returning the seqs ~0.02, the cards ~0.03): ~0.04 CPU-s a run, 2-3%
of what runs beside the model, for a second path into the corpus. Not worth it. Of the
follow's ~0.48 CPU-s the lexical index takes ~0.30 (`LexicalIndex.add_many`, ~0.2 ms a story:
tokenizing, key terms, postings), the database reads ~0.09, the rest ~0.04: the lexical add is
where a structural change would have to go.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from aggregator.store import EmbedderSeat, EmbedJob, Store, other_recipe_leads, retry_while_busy
from recommender.embed import Embedder, story_text
from recommender.vindex import process_alive

log = logging.getLogger("tidings.index")

# Pieces handed to the model at a time: the one awaited and the next, so the model's streams
# never wait for a call to end before the next piece's batches are there (a call's last batch
# left the other core idle). More would only hold more unsaved work.
IN_FLIGHT = 2
# Seconds between two looks at which recipe leads the database (`Indexer.may_embed`): a
# machine that starts with another recipe is told within this, at one small read a look.
LEAD_CHECK_S = 10.0


@dataclass(frozen=True)
class IndexReport:
    embedded: int
    elapsed_s: float
    backlog: int
    waiting_for: EmbedderSeat | None = None  # another recipe leads: nothing was embedded


def dead_here(owner: str, host: str, alive: Callable[[int], bool]) -> bool:
    """Whether a registration's owner (`host:pid`, as `Indexer.owner` makes it) names a
    process of this machine that no longer runs. Pure. An owner of another form, or of
    another host, is never called dead: only its lease says when it is gone. Assumes a host
    name names one pid namespace, as the sweep of a killed save's temporary files does
    (`vindex.sweep_temps`): containers sharing both a host name and a database would each
    take the other for dead (give them their own host names, Docker's default)."""
    name, sep, pid = owner.rpartition(":")
    return bool(sep) and name == host and pid.isdigit() and not alive(int(pid))


def texts_of(jobs: list[EmbedJob]) -> list[str]:
    return [story_text(j.title, j.summary, j.text) for j in jobs]


def plan_pieces(texts: list[str], piece: int) -> list[list[int]]:
    """Positions of `texts` per piece: longest first, at most `piece` in each.

    The model pads every batch to its longest row and the embedder sorts only within a call,
    so pieces of similar lengths waste little. Characters stand in for word pieces: texts are
    cut to a word budget, so the longest ones are all near the model's limit anyway.

    Longest first, as one call orders its batches: each stream of the embedder runs a batch on
    one core, and a batch of 16 long texts took ~1.6 s there (batches of up to 4096 tokens,
    before 2026-12-04; 512 since, so the effect is smaller now). Cut shortest first, a backlog
    ended on such batches and the other core idled through the last one; longest first, it
    ends on batches of short texts. Ingest benchmark, 6 runs each, alternated with the old
    order: ratio median 0.795 -> 0.827.
    """
    order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    step = max(1, piece)
    return [order[k:k + step] for k in range(0, len(order), step)]


@dataclass(eq=False)
class _Piece:
    jobs: list[EmbedJob]
    texts: list[str]


def _drop(task: asyncio.Future | None) -> None:
    """Cancel a model call nobody will wait for (its thread still finishes its batch)."""
    if task is None:
        return
    task.cancel()
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" at exit


class Indexer:
    def __init__(self, store: Store, embedder: Embedder, *, batch_size: int = 32,
                 chunk: int = 2048, piece: int = 256, lease_s: int = 600,
                 owner: str | None = None, lead_check_s: float = LEAD_CHECK_S):
        self.store = store
        self.embedder = embedder
        self.batch_size = batch_size
        # Most stories per claim: larger sorts better (see the module's doc), but one indexer
        # then holds more of a backlog that others of the cluster could share.
        self.chunk = chunk
        self.piece = max(1, min(piece, chunk))  # stories per model call and per save
        # Stories are claimed with a lease, so several indexers share the backlog and each
        # story is embedded once; a crashed indexer's claims come back after the lease.
        self.lease_s = lease_s
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}"
        self.lead_check_s = lead_check_s
        self.seat: EmbedderSeat | None = None  # this process's registration
        self.leader: EmbedderSeat | None = None  # set while another recipe leads
        self._checked_at = self._renew_at = -float("inf")
        self._swept = False  # `_drop_dead_here` ran (once, before this indexer's first claim)
        # Called with n each time n more vectors are stored, whoever runs the indexer (the
        # API's metrics count them: the run's own `saved` belongs to its caller).
        self.listeners: list[Callable[[int], None]] = []

    async def may_embed(self) -> bool:
        """Whether this process's recipe is the database's: that of the oldest live indexer
        (`Store.leading_embedder`). A vector row holds one recipe, so two indexers of two
        recipes (another `[index] embedder`, another version, a model built differently on
        another CPU) would each re-embed the other's stories for ever. The later one waits
        instead, and takes over only when the leader stops (its registration is dropped on
        close, or its lease runs out): a deliberate change of embedder, or an upgrade, takes
        effect once every process of the old recipe is gone."""
        now = time.monotonic()
        if now - self._checked_at < self.lead_check_s:
            return self.leader is None
        if self.seat is None or now >= self._renew_at:
            first = self.seat is None and not self._swept
            if self.seat is None or not await self.store.renew_embedder(self.seat.id,
                                                                        lease_s=self.lease_s):
                self.seat = await self.store.register_embedder(self.owner, self.embedder.recipe,
                                                               lease_s=self.lease_s)
            self._renew_at = now + self.lease_s / 3  # two renewals may fail within the lease
            if first:
                self._swept = True
                await self._drop_dead_here()
        lead = await self.store.leading_embedder()
        other = lead if other_recipe_leads(lead, self.embedder.recipe) else None
        if other is not None and self.leader is None:
            log.error("index.waiting recipe=%s leading_recipe=%s leader=%s since=%s: another "
                      "indexer of this database embeds with another recipe; this one embeds "
                      "nothing until it stops (README, Operations: Changing the embedder)",
                      self.embedder.recipe, other.recipe, other.owner,
                      other.started_at.isoformat(timespec="seconds"))
        elif other is None and self.leader is not None:
            log.warning("index.leading recipe=%s: the other recipe's indexers stopped; "
                        "re-embedding the stories with this one", self.embedder.recipe)
        self.leader, self._checked_at = other, now
        return other is None

    async def _drop_dead_here(self) -> None:
        """Drop the registrations of this machine's indexers that were killed (kill -9, OOM,
        power cut: no `close`), and, when no other indexer is left, hand back the claims they
        held. Left to their leases, a killed run held its chunk for `lease_s` (10 min: "N
        stories still lack a vector" after every rerun), and a killed indexer of the old recipe
        kept leading, so the new one waited for it and told the operator to stop a process that
        no longer existed. Runs before this indexer's first claim only: a claim of its own is
        then never among those handed back."""
        host = socket.gethostname()
        dead = [s for s in await self.store.live_embedders()
                if s.id != self.seat.id and dead_here(s.owner, host, process_alive)]
        if not dead:
            return
        for s in dead:
            await self.store.drop_embedder(s.id)
        freed = await self.store.release_orphan_embed_claims(self.seat.id, lease_s=self.lease_s)
        owners = ",".join(s.owner for s in dead)
        if freed:
            log.warning("index.dead_indexers owners=%s released=%d: indexers of this machine "
                        "that were killed; their claims are embedded now, not after their lease",
                        owners, freed)
        else:  # killed between chunks, or during a `--rebuild`'s load: nothing was held, and
            # the WARNING told of claims that did not exist
            log.info("index.dead_indexers owners=%s released=0: registrations of killed "
                     "indexers of this machine dropped; they held no claims", owners)

    async def close(self) -> None:
        """Drop this process's registration, so an indexer of another recipe may lead now."""
        seat, self.seat = self.seat, None
        if seat is not None:
            with contextlib.suppress(Exception):  # the database may be what failed
                await self.store.drop_embedder(seat.id)

    async def _claim(self, n: int, *, idle: bool = False) -> list[_Piece]:
        """The next claim's pieces. `idle`: the model waits on it, so it goes ahead of the
        collector's queued writes (`Store.writing`); a claim taken beside a busy model keeps its
        turn and comes back larger (claims made urgent alike came back sooner and smaller)."""
        if not await self.may_embed():
            return []
        jobs = await self.store.claim_embed_backlog(self.embedder.recipe, n, lease_s=self.lease_s,
                                                    urgent=idle)
        texts = texts_of(jobs)
        return [_Piece([jobs[i] for i in p], [texts[i] for i in p]) for p in plan_pieces(texts, self.piece)]

    def _encode(self, piece: _Piece) -> asyncio.Future:
        return asyncio.ensure_future(
            asyncio.to_thread(self.embedder.encode, piece.texts, self.batch_size))

    async def _save(self, piece: _Piece, vecs: np.ndarray) -> None:
        rows = [(j.id, j.embed_version, vecs[i].astype("<f4").tobytes())
                for i, j in enumerate(piece.jobs)]
        # Stories deleted meanwhile are skipped by the store; they still count as processed.
        await self.store.save_vectors(rows, self.embedder.recipe)

    async def _release(self, pieces: list[_Piece]) -> None:
        """Hand the claims of `pieces` back. Retried for a bounded time: on SQLite another
        writer (another process, or a save of this one that was interrupted) can hold the
        file's write lock past the driver's busy timeout. A release that still fails is
        logged, not hidden: its stories then wait for the lease (at most `lease_s`)."""
        ids = [j.id for p in pieces for j in p.jobs]
        if not ids:
            return
        try:
            await retry_while_busy(lambda: self.store.release_embed_claims(ids))
        except Exception as e:  # the database may be what failed
            log.warning("index.release_failed stories=%d: %s; they are embedded once "
                        "their claim runs out (at most %d s)", len(ids),
                        str(e).splitlines()[0][:200], self.lease_s)

    async def run_once(self, limit: int | None = None,
                       saved: Callable[[int], None] | None = None) -> int:
        """Embed one claim of the backlog; returns how many stories it processed."""
        return await self.run(limit, saved, claims=1)

    async def _claim_soon(self, n: int, arrived: asyncio.Event | None,
                          stop: asyncio.Event) -> list[_Piece]:
        """The next claim, taken while the model runs the current one. Empty, it is taken again
        each time `arrived` is set (the collector stored stories), until `stop` (the model is
        done with what it has): stories stored during a long piece are embedded beside it
        instead of after it. Never cancelled mid-claim (see `run`): it stops between claims."""
        while True:
            if arrived is not None:
                arrived.clear()  # stories stored from here on are in the claim or set it again
            got = await self._claim(n)
            if got or arrived is None or stop.is_set():
                return got
            waits = [asyncio.ensure_future(e.wait()) for e in (arrived, stop)]
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
            if stop.is_set():
                return []

    async def run(self, limit: int | None = None, saved: Callable[[int], None] | None = None,
                  *, claims: int | None = None, arrived: asyncio.Event | None = None) -> int:
        """Embed claims back to back while there is backlog (at most `claims` claims and
        `limit` stories); returns how many stories it processed. `saved(n)` is called each
        time `n` more vectors are stored. `arrived`, an event the collector sets when it stores
        stories, lets the run take them while the model is busy (`_claim_soon`).

        The model never waits on the database: each piece is saved while the model runs the
        next, and the next claim is taken while it runs the current claim's last piece. Two
        pieces are in the model at a time (`IN_FLIGHT`): the embedders' streams take the next
        piece's batches while the last of the current one runs (`onnx_embed.StreamPool`). When
        only one piece is in flight (a small claim: a feed's first stories), a claim that comes
        back meanwhile goes into the model at once: each stream runs a batch on one core, and the
        other core would idle until the piece ends (a claim of 48 long texts is three batches of
        16, ~1 s each)."""
        claimed = 0

        def room() -> int:
            return self.chunk if limit is None else min(self.chunk, limit - claimed)

        pending = await self._claim(room(), idle=True)
        if not pending:
            return 0
        claimed, taken, done = sum(len(p.jobs) for p in pending), 1, 0
        unsaved = list(pending)  # handed back if interrupted
        inflight: deque[tuple[_Piece, asyncio.Future]] = deque()
        stop = asyncio.Event()  # ends a next claim that waits for stories

        def fill() -> None:
            while pending and len(inflight) < IN_FLIGHT:
                piece = pending.pop(0)
                inflight.append((piece, self._encode(piece)))

        def take(got: list[_Piece]) -> None:
            nonlocal claimed
            pending.extend(got)
            unsaved.extend(got)
            claimed += sum(len(p.jobs) for p in got)

        def halt() -> None:
            """Drop the model calls nobody will wait for; a next claim waiting for stories
            gives up (one under way completes, see `_settle`)."""
            for _, encoding in inflight:
                _drop(encoding)
            stop.set()

        fill()
        more: asyncio.Future | None = None  # the next claim, in flight
        at: _Piece | None = None  # the piece an error would be about
        saving: tuple[_Piece, asyncio.Future] | None = None  # the save under way
        try:
            while inflight:
                if not pending and more is None and room() > 0 and (claims is None or taken < claims):
                    stop.clear()
                    more = asyncio.ensure_future(self._claim_soon(room(), arrived, stop))
                    taken += 1
                finished, encoding = inflight[0]
                # A stream is free: the next claim goes into the model as soon as it is there.
                while more is not None and len(inflight) < IN_FLIGHT and not encoding.done():
                    await asyncio.wait({encoding, more}, return_when=asyncio.FIRST_COMPLETED)
                    if more.done():
                        at = None
                        got, more = await more, None
                        take(got)
                        fill()
                at = finished
                vecs: np.ndarray = await encoding
                inflight.popleft()
                if not pending and more is not None:
                    at = None
                    stop.set()  # a claim waiting for stories gives up; one under way completes
                    # Shielded: an interruption must not lose a claim the database has made.
                    got = await asyncio.shield(more)
                    more = None
                    take(got)
                fill()  # the model runs these while `finished` is written
                at = finished
                # Shielded: a save cancelled mid-statement (SQLAlchemy then invalidates its
                # connection instead of rolling it back) left SQLite's write lock held past the
                # driver's 30 s busy timeout, so the release after an interruption failed with
                # "database is locked" (1 Ctrl-C in ~8 left a claim for the whole lease). An
                # interrupted run waits for the save under way instead (a piece: well under 1 s).
                saving = (finished, asyncio.ensure_future(self._save(finished, vecs)))
                await asyncio.shield(saving[1])
                saving = None
                unsaved.remove(finished)
                done += len(finished.jobs)
                for listener in (*self.listeners, *([saved] if saved is not None else [])):
                    listener(len(finished.jobs))
        except (asyncio.CancelledError, KeyboardInterrupt):
            # Interrupted (Ctrl-C, SIGTERM, shutdown): let the save under way end, then hand
            # the unsaved claims back, so a rerun takes these stories now, not after the lease.
            halt()
            if saving is not None and await self._saved(saving[1]):
                unsaved.remove(saving[0])
            await self._release(unsaved + await self._settle(more))
            raise
        except Exception:
            # Not the failing piece: one that fails every time must not be claimed again
            # first and stall the whole backlog. The others did nothing wrong.
            halt()
            if saving is not None:
                await self._saved(saving[1])  # a failed save: its piece is `at`, not released
            await self._release([p for p in unsaved if p is not at] + await self._settle(more))
            raise
        return done

    @staticmethod
    async def _saved(save: asyncio.Future) -> bool:
        """Wait for a shielded save to end; whether it stored its piece."""
        try:
            await asyncio.shield(save)
            return True
        except asyncio.CancelledError:
            raise
        except Exception:
            return False

    @staticmethod
    async def _settle(more: asyncio.Future | None) -> list[_Piece]:
        """The pieces of a claim still in flight when the run stopped (none if it failed)."""
        if more is None:
            return []
        try:
            return await more
        except Exception:
            return []

    async def drain(self, progress: Callable[[int, int], None] | None = None,
                    limit: int | None = None) -> IndexReport:
        """Embed until the backlog is empty (or `limit` stories are done)."""
        t0 = time.perf_counter()
        total = await self.store.backlog_size(self.embedder.recipe)
        done = 0

        def saved(n: int) -> None:
            nonlocal done
            done += n
            if progress:
                progress(done, total)

        while limit is None or done < limit:
            if await self.run(None if limit is None else limit - done, saved) == 0:
                break
        backlog = await self.store.backlog_size(self.embedder.recipe)
        return IndexReport(done, time.perf_counter() - t0, backlog, self.leader)
