"""The indexer's claims: embedded in pieces sorted by length, each piece saved while the model
runs the next, and the claims handed back (or kept) right when a piece is interrupted or fails.
Run on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import os
import random
import socket
import subprocess
import sys
import threading
from datetime import UTC, datetime

import numpy as np
import pytest

from aggregator.model import StoryDraft
from recommender.embed import HashingEmbedder
from recommender.indexer import Indexer, dead_here, plan_pieces, texts_of

NOW = datetime(2026, 11, 26, tzinfo=UTC)


class Recording(HashingEmbedder):
    """Logs each call's texts; the call of the texts `fail_on` raises, the call of the texts
    `block_on` waits to be released. Matched by texts, not by call order: two pieces are in
    the model at a time, from two threads."""

    def __init__(self, fail_on: set[str] | None = None, block_on: set[str] | None = None):
        super().__init__(16)
        self.calls: list[list[str]] = []
        self.fail_on, self.block_on = fail_on, block_on
        self.started = [threading.Event() for _ in range(16)]
        self.blocked = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()

    def encode(self, texts, batch_size=32):
        with self._lock:
            k = len(self.calls)
            self.calls.append(list(texts))
        self.started[k].set()
        if set(texts) == self.fail_on:
            raise RuntimeError("model failed on this piece")
        if set(texts) == self.block_on:
            self.blocked.set()
            self.release.wait(30)
        return super().encode(texts, batch_size)


async def piece_texts(store, k: int, piece: int = 4) -> set[str]:
    """The texts of the claim's `k`-th piece, as the indexer will cut it (longest first)."""
    texts = texts_of(await store.embed_backlog("no-recipe", 1000))
    return {texts[i] for i in plan_pieces(texts, piece)[k]}


async def seed(store, n: int) -> list[int]:
    rng = random.Random(7)
    drafts = [StoryDraft(url=f"https://e.org/{i}", title=f"Story {i}",
                         text=" ".join(["word"] * rng.randint(1, 120))) for i in range(n)]
    res = await store.upsert_stories(drafts, NOW)
    return res.new_ids


def test_pieces_cover_every_text_once_longest_first():
    rng = random.Random(3)
    texts = ["x" * rng.randint(1, 500) for _ in range(103)]
    pieces = plan_pieces(texts, 16)
    flat = [i for p in pieces for i in p]
    assert sorted(flat) == list(range(103))
    assert all(len(p) <= 16 for p in pieces) and len(pieces) == 7
    lengths = [len(texts[i]) for i in flat]
    assert lengths == sorted(lengths, reverse=True)
    assert plan_pieces([], 16) == []


async def test_a_claim_is_embedded_in_sorted_pieces_each_saved(store):
    await seed(store, 10)
    emb = Recording()
    saved: list[int] = []
    n = await Indexer(store, emb, chunk=10, piece=4).run_once(saved=saved.append)
    assert n == 10 and saved == [4, 4, 2]
    calls = sorted(emb.calls, key=lambda c: -max(map(len, c)))  # two run at a time
    assert [len(c) for c in calls] == [4, 4, 2]  # the short remainder last
    # Each call holds similar lengths: no text of a call is shorter than any of the next one.
    for a, b in zip(calls, calls[1:], strict=False):
        assert min(map(len, a)) >= max(map(len, b))
    assert await store.backlog_size(emb.recipe) == 0
    # Each story got the vector of its own text, not its neighbour's in the sorted order.
    jobs = {j.id: j for j in await store.embed_backlog("other-recipe", 100)}
    blobs = await store.load_vectors(list(jobs), emb.recipe)
    for sid, job in jobs.items():
        want = emb.encode(texts_of([job]))[0]
        got = np.frombuffer(blobs[sid], dtype="<f4")
        assert float(got @ want) == pytest.approx(1.0, abs=1e-5)


async def test_the_model_runs_the_next_piece_while_one_is_saved(store):
    await seed(store, 8)
    emb = Recording()
    indexer = Indexer(store, emb, chunk=8, piece=4)
    original = store.save_vectors
    overlapped: list[bool] = []

    async def save(rows, recipe, now=None):
        if not overlapped:  # the first piece: the second must start before it is written
            overlapped.append(await asyncio.to_thread(emb.started[1].wait, 5))
        return await original(rows, recipe, now)

    store.save_vectors = save
    assert await indexer.run_once() == 8
    assert overlapped == [True]


async def test_the_next_piece_is_in_the_model_before_the_current_one_ends(store):
    """Two pieces in flight: the streams take the next piece's batches while the current one's
    last batch runs, instead of idling a core at the end of every call."""
    await seed(store, 12)
    emb = Recording(block_on=await piece_texts(store, 0))
    task = asyncio.create_task(Indexer(store, emb, chunk=12, piece=4).run_once())
    try:
        assert await asyncio.to_thread(emb.blocked.wait, 30)
        assert await asyncio.to_thread(emb.started[1].wait, 30)  # while the first is running
        assert not emb.started[2].is_set()  # not more than two
    finally:
        emb.release.set()
    assert await task == 12


async def test_a_failing_piece_keeps_its_claims_and_hands_back_the_untried(store):
    await seed(store, 12)
    second, third = await piece_texts(store, 1), await piece_texts(store, 2)
    emb = Recording(fail_on=second)
    indexer = Indexer(store, emb, chunk=12, piece=4)
    with pytest.raises(RuntimeError):
        await indexer.run_once()
    assert await store.backlog_size(emb.recipe) == 8  # the first piece is stored
    # The failing piece stays leased (not retried first); the third, in the model beside it
    # but not saved, comes back now.
    again = await store.claim_embed_backlog(emb.recipe, 100, lease_s=600)
    assert set(texts_of(again)) == third


async def test_an_interrupted_claim_hands_back_what_is_not_saved(store):
    await seed(store, 12)
    emb = Recording(block_on=await piece_texts(store, 1))
    indexer = Indexer(store, emb, chunk=12, piece=4)
    task = asyncio.create_task(indexer.run_once())
    await asyncio.to_thread(emb.blocked.wait, 30)
    # The first piece's save finishes: waited for, where a fixed 0.2 s could be too short
    # on a loaded machine (then 12 were left, not 8).
    async def first_saved():
        while await store.backlog_size(emb.recipe) != 8:
            await asyncio.sleep(0.02)

    await asyncio.wait_for(first_saved(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    emb.release.set()
    assert await store.backlog_size(emb.recipe) == 8
    again = await store.claim_embed_backlog(emb.recipe, 100, lease_s=600)
    assert len(again) == 8  # claimable now, not after the lease


async def test_drain_reports_progress_per_piece_and_respects_limit(store):
    await seed(store, 10)
    emb = Recording()
    steps: list[tuple[int, int]] = []
    rep = await Indexer(store, emb, chunk=6, piece=4).drain(progress=lambda d, t: steps.append((d, t)))
    assert rep.embedded == 10 and rep.backlog == 0
    assert steps == [(4, 10), (6, 10), (10, 10)]
    await seed_more(store)
    rep = await Indexer(store, emb, chunk=6, piece=4).drain(limit=3)
    assert rep.embedded == 3 and rep.backlog == 2


async def seed_more(store):
    await store.upsert_stories([StoryDraft(url=f"https://f.org/{i}", title=f"More {i}")
                                for i in range(5)], NOW)


async def test_parallel_indexers_with_pieces_embed_each_story_once(db_url):
    from aggregator.store import Store

    stores = [Store(db_url) for _ in range(3)]
    await stores[0].migrate()
    try:
        await seed(stores[0], 200)
        seen: list[int] = []
        indexers = [Indexer(s, HashingEmbedder(16), chunk=40, piece=8) for s in stores]
        for ix in indexers:
            original = ix.store.save_vectors

            async def save(rows, recipe, now=None, original=original):
                seen.extend(r[0] for r in rows)
                return await original(rows, recipe, now)
            ix.store.save_vectors = save
        await asyncio.gather(*(ix.drain() for ix in indexers))
        assert len(seen) == len(set(seen)) == 200
        assert await stores[0].backlog_size(HashingEmbedder(16).recipe) == 0
    finally:
        for s in stores:
            await s.close()


async def test_the_next_claim_is_taken_while_the_model_runs(store):
    await seed(store, 12)

    class Slow(Recording):
        ended = 0
        model = threading.Lock()  # one model: pieces in flight run one after the other

        def encode(self, texts, batch_size=32):
            with self.model:
                threading.Event().wait(0.3)
                out = super().encode(texts, batch_size)
                self.ended += 1
            return out

    emb = Slow()
    original = store.claim_embed_backlog
    ended_at_claim: list[int] = []

    async def claim(recipe, limit, **kw):
        jobs = await original(recipe, limit, **kw)
        ended_at_claim.append(emb.ended)
        return jobs

    store.claim_embed_backlog = claim
    saved: list[int] = []
    assert await Indexer(store, emb, chunk=4, piece=4).run(saved=saved.append) == 12
    assert saved == [4, 4, 4]
    # Claim k+1 (one piece each here) is back while the model still runs claim k's piece:
    # the model never waits on the database between claims. The last claim finds nothing.
    assert ended_at_claim == [0, 0, 1, 2]
    assert await Indexer(store, emb, chunk=4, piece=4).run_once() == 0


@pytest.mark.parametrize("told", [True, False])
async def test_stories_stored_during_a_piece_run_beside_it_when_the_collector_says_so(store, told):
    await seed(store, 4)
    emb = Recording()
    arrived = asyncio.Event()
    first_ran_alone: list[bool] = []
    original, claimed_twice = store.claim_embed_backlog, asyncio.Event()

    async def claim(*args, **kwargs):
        jobs = await original(*args, **kwargs)
        claim.calls += 1
        if claim.calls == 2:
            claimed_twice.set()
        return jobs

    claim.calls = 0
    store.claim_embed_backlog = claim

    async def collector():
        # Stories stored while the model runs the first claim, after its next claim found
        # nothing.
        await asyncio.wait_for(claimed_twice.wait(), 5)
        await store.upsert_stories([StoryDraft(url=f"https://e.org/late/{i}", title=f"Late {i}",
                                               text="late story") for i in range(4)], NOW)
        if told:
            arrived.set()
        # Beside the first piece: the second call starts while the first is held.
        first_ran_alone.append(not await asyncio.to_thread(emb.started[1].wait, 1))
        emb.release.set()

    first = {t for t in texts_of(await store.embed_backlog("no-recipe", 10))}
    emb.block_on = first
    side = asyncio.create_task(collector())
    n = await Indexer(store, emb, chunk=8, piece=8).run(arrived=arrived if told else None)
    await side
    if told:  # taken while the model ran: one run embeds both
        assert n == 8 and first_ran_alone == [False]
        assert await store.backlog_size(emb.recipe) == 0
    else:  # without the signal the run ends with its claim; the next run takes the rest
        assert n == 4 and first_ran_alone == [True]
        assert await store.backlog_size(emb.recipe) == 4


class Renamed(HashingEmbedder):
    """The same vectors under another recipe: another embedder setting, version or build."""

    def __init__(self, recipe: str):
        super().__init__(16)
        self.recipe = recipe


async def test_an_indexer_of_another_recipe_waits_until_the_leader_stops(db_url):
    """Two machines whose models differ (say onnxruntime won the race on one, OpenVINO on the
    other) must not re-embed each other's stories for ever: the later one waits, and takes
    over, re-embedding everything, once the first has stopped."""
    from aggregator.store import Store

    stores = [Store(db_url) for _ in range(2)]
    await stores[0].migrate()
    try:
        ids = await seed(stores[0], 12)
        first = Indexer(stores[0], Renamed("recipe-a"), owner="machine-a", lead_check_s=0)
        second = Indexer(stores[1], Renamed("recipe-b"), owner="machine-b", lead_check_s=0)
        assert (await first.drain()).embedded == 12
        report = await second.drain()
        assert report.embedded == 0 and report.waiting_for.owner == "machine-a"
        assert report.waiting_for.recipe == "recipe-a"
        await seed_more(stores[0])  # new stories: the leader's, not the waiting one's
        assert (await first.drain()).embedded == 5
        assert (await second.drain()).embedded == 0
        assert len(await stores[0].load_vectors(ids, "recipe-a")) == 12
        await first.close()
        report = await second.drain()
        assert report.embedded == 17 and report.waiting_for is None
        # The first comes back (restarted with its old settings): now it is the one waiting.
        assert (await first.drain()).embedded == 0 and first.leader.owner == "machine-b"
        assert len(await stores[0].load_vectors(ids, "recipe-b")) == 12
    finally:
        for s in stores:
            await s.close()


async def test_indexers_of_one_recipe_share_the_lead(store):
    await seed(store, 6)
    a = Indexer(store, Renamed("same"), owner="a", chunk=3, lead_check_s=0)
    b = Indexer(store, Renamed("same"), owner="b", chunk=3, lead_check_s=0)
    assert await a.run_once() == 3 and await b.run_once() == 3
    assert a.leader is None and b.leader is None


def test_dead_here_only_for_a_gone_process_of_this_host():
    def alive(pid):
        return pid == 7

    assert dead_here("vm:8", "vm", alive)
    assert not dead_here("vm:7", "vm", alive)  # still runs
    assert not dead_here("other:8", "vm", alive)  # another machine: only its lease tells
    assert not dead_here("machine-a", "vm", alive) and not dead_here("vm:x", "vm", alive)
    assert dead_here("host:with:colons:8", "host:with:colons", alive)


def gone_pid() -> int:
    """The pid of a process that has ended (as one killed with kill -9 has)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


@pytest.mark.parametrize("new_recipe", ["recipe-a", "recipe-b"])
async def test_a_killed_indexer_of_this_machine_neither_leads_nor_holds_its_claims(
        store, new_recipe):
    """`tidings index` killed (kill -9) mid-run: its registration and its claims stayed for the
    whole lease (10 min). A rerun embedded nothing of its chunk ("N stories still lack a
    vector"), and after a change of embedder the new recipe waited for the dead process,
    telling the operator to stop it. The next indexer of this machine drops both at once."""
    ids = await seed(store, 12)
    dead = f"{socket.gethostname()}:{gone_pid()}"
    seat = await store.register_embedder(dead, "recipe-a", lease_s=600)
    assert len(await store.claim_embed_backlog("recipe-a", 8, lease_s=600)) == 8
    report = await Indexer(store, Renamed(new_recipe), lead_check_s=0).drain()
    assert report.waiting_for is None
    assert report.embedded == 12 and report.backlog == 0
    assert len(await store.load_vectors(ids, new_recipe)) == 12
    assert seat.id not in [s.id for s in await store.live_embedders()]


async def test_a_live_indexer_keeps_its_claims_and_its_lead(store):
    """Another live process (here: this one, under another registration) or one on another
    machine is left alone: its claims run out with their lease, as before."""
    await seed(store, 12)
    await store.register_embedder(f"{socket.gethostname()}:{os.getpid()}", "recipe-a",
                                  lease_s=600)
    await store.register_embedder(f"elsewhere:{gone_pid()}", "recipe-a", lease_s=600)
    assert len(await store.claim_embed_backlog("recipe-a", 8, lease_s=600)) == 8
    report = await Indexer(store, Renamed("recipe-a"), lead_check_s=0).drain()
    assert report.embedded == 4 and report.backlog == 8
    report = await Indexer(store, Renamed("recipe-b"), lead_check_s=0).drain()
    assert report.embedded == 0 and report.waiting_for is not None


async def test_a_killed_indexer_that_held_no_claims_is_no_warning(store, caplog):
    """After a killed `index --rebuild` (no claims held), the next start warned "their claims
    are embedded now" with released=0. Only claims handed back are a WARNING."""
    import logging

    def dead_said() -> list[tuple[int, str]]:
        return [(r.levelno, r.getMessage()) for r in caplog.records
                if r.getMessage().startswith("index.dead_indexers")]

    await seed(store, 12)
    caplog.set_level(logging.INFO, logger="tidings.index")
    await store.register_embedder(f"{socket.gethostname()}:{gone_pid()}", "recipe-a", lease_s=600)
    assert len(await store.claim_embed_backlog("recipe-a", 8, lease_s=600)) == 8
    await Indexer(store, Renamed("recipe-a"), lead_check_s=0).drain()
    assert [(level, "released=8" in m) for level, m in dead_said()] == [(logging.WARNING, True)]

    caplog.clear()
    await store.register_embedder(f"{socket.gethostname()}:{gone_pid()}", "recipe-a", lease_s=600)
    await Indexer(store, Renamed("recipe-a"), lead_check_s=0).drain()
    said = dead_said()
    assert [level for level, _ in said] == [logging.INFO] and "released=0" in said[0][1], said
