"""SQLite's write queue (`WriteLock`): arrival order, urgent writers ahead of the waiting ones,
and a cancelled waiter never leaves the lock held or skipped."""

from __future__ import annotations

import asyncio

from aggregator.model import StoryDraft
from aggregator.writelock import WriteLock


async def _writer(lock: WriteLock, name: str, order: list[str], urgent: bool = False) -> None:
    async with lock.held(urgent):
        order.append(name)
        await asyncio.sleep(0)


async def _queued(lock: WriteLock, *writers) -> list[asyncio.Task]:
    tasks = []
    for name, order, urgent in writers:
        tasks.append(asyncio.create_task(_writer(lock, name, order, urgent)))
        await asyncio.sleep(0)  # each in the queue before the next
    return tasks


async def test_urgent_writers_go_ahead_of_the_waiting_ones_never_of_the_holder():
    lock, order = WriteLock(), []
    await lock.acquire()
    order.append("holder")
    tasks = await _queued(lock, ("a", order, False), ("b", order, False), ("u1", order, True),
                          ("c", order, False), ("u2", order, True))
    lock.release()
    await asyncio.gather(*tasks)
    assert order == ["holder", "u1", "u2", "a", "b", "c"]
    assert not lock.locked()


async def test_a_cancelled_waiter_is_skipped_and_the_lock_comes_free():
    lock, order = WriteLock(), []
    await lock.acquire()
    a, gone, b = await _queued(lock, ("a", order, False), ("gone", order, True), ("b", order, False))
    gone.cancel()
    await asyncio.sleep(0)
    lock.release()
    await asyncio.gather(a, b)
    assert order == ["a", "b"] and gone.cancelled() and not lock.locked()


async def test_a_waiter_cancelled_as_its_turn_comes_passes_the_lock_on():
    lock, order = WriteLock(), []
    await lock.acquire()
    first, second = await _queued(lock, ("first", order, False), ("second", order, False))
    lock.release()  # hands the lock to `first`, which has not run yet
    first.cancel()  # ... and is cancelled before it does
    await asyncio.gather(first, second, return_exceptions=True)
    assert order == ["second"] and first.cancelled() and not lock.locked()


async def test_an_idle_models_claim_goes_ahead_of_queued_story_stores(sqlite_store):
    """On a real SQLite file: stores queued behind a writer, then a claim marked urgent (an idle
    model waits on it): it takes the file first, and finds the stories already committed."""
    await sqlite_store.upsert_stories([StoryDraft(url="https://e.org/0", title="First story",
                                                  site="e.org", source="s")])
    done: list[str] = []
    async with sqlite_store.writing():  # the writer the others queue behind

        async def store(i: int) -> None:
            await sqlite_store.upsert_stories([StoryDraft(url=f"https://e.org/{i}", title=f"Story {i}",
                                                          site="e.org", source="s")])
            done.append(f"store {i}")

        async def claim() -> None:
            jobs = await sqlite_store.claim_embed_backlog("r", 10, lease_s=60, urgent=True)
            done.append(f"claim {len(jobs)}")

        stores = [asyncio.create_task(store(i)) for i in (1, 2, 3)]
        await asyncio.sleep(0.05)
        claiming = asyncio.create_task(claim())
        await asyncio.sleep(0.05)
        assert done == []  # all waiting on the holder
    await asyncio.gather(*stores, claiming)
    assert done[0] == "claim 1" and sorted(done[1:]) == ["store 1", "store 2", "store 3"]


async def test_a_waiter_cancelled_just_before_a_release_stays_cancelled():
    """Its turn is cancelled at once, its task runs later: a release in between skips the turn,
    and the waiter must still end cancelled (a call's time limit turns that into its timeout),
    not in a ValueError of the queue's."""
    lock, order = WriteLock(), []
    await lock.acquire()
    gone, after = await _queued(lock, ("gone", order, False), ("after", order, False))
    gone.cancel()
    lock.release()  # before `gone` has run: skips its cancelled turn, hands the lock to `after`
    results = await asyncio.gather(gone, after, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError) and results[1] is None
    assert order == ["after"] and not lock.locked()
