"""Single flight in the block cache (api/blockcache.py `cached_or_ranked`, `Flights`).

Real concurrency on the test's event loop: each ranking waits until the test lets it end (an
asyncio.Event of its own), so who leads and who joins follows the order the tasks start, never
the clock. What a waiter gets of a failure is the app's own rule (api.app.failure_is_the_keys).
The same over real HTTP, a burst of identical requests: tests/api/test_fastpath.py."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from aggregator.errors import FetchError
from api.app import failure_is_the_keys
from api.blockcache import MAX_JOINS, BlockCache, Flights, cached_or_ranked
from api.errors import ApiError

KEY = ("widget", "https://news.example/a", 5)


def over_limit() -> ApiError:
    return ApiError(429, "rate_limited", "too many requests; the limit is 60 a minute")


class Burst:
    """A block cache, its flights, and the rankings asked of them: the n-th (from 1) ends with
    `outcomes[n-1]` (an error to raise, or None: a block) once `gate(n)` is set."""

    def __init__(self, *outcomes: BaseException | None) -> None:
        self.cache = BlockCache(lambda then, reach: then)  # nothing since changes a block
        self.flights = Flights(failure_is_the_keys)
        self.told: list[str] = []  # what cached_or_ranked counted, a request each
        self.outcomes = outcomes
        self.gates: dict[int, asyncio.Event] = {}
        self.rankings = 0

    def gate(self, n: int) -> asyncio.Event:
        return self.gates.setdefault(n, asyncio.Event())

    async def rank(self):
        self.rankings += 1
        n = self.rankings
        await self.gate(n).wait()
        if n <= len(self.outcomes) and self.outcomes[n - 1] is not None:
            raise self.outcomes[n - 1]
        return self.cache.put_block(KEY, b"block %d" % n, (1, 0), None)

    def request(self) -> asyncio.Task:
        return asyncio.create_task(
            cached_or_ranked(self.cache, self.flights, KEY, self.rank, self.told.append))

    async def let_end(self, n: int) -> None:
        """Let ranking n end, and the requests it wakes run up to their next wait."""
        self.gate(n).set()
        for _ in range(5):  # each hop (a flight's end, a waiter's wake, its next step) is one
            await asyncio.sleep(0)


async def started(*tasks: asyncio.Task) -> None:
    """Let the tasks run up to their first wait (a ranking held, or a flight joined)."""
    await asyncio.sleep(0)
    assert not any(t.done() for t in tasks)


async def test_requests_that_miss_together_share_one_ranking():
    b = Burst()
    tasks = [b.request() for _ in range(10)]
    await started(*tasks)
    await b.let_end(1)
    entries = await asyncio.gather(*tasks)
    assert b.rankings == 1
    assert {e.body for e in entries} == {b"block 1"}
    assert Counter(b.told) == {"miss": 1, "joined": 9}
    assert len(b.flights) == 0
    assert (await b.request()).body == b"block 1" and b.told[-1] == "hit"


async def test_the_keys_failure_reaches_every_waiter_and_is_not_kept():
    b = Burst(FetchError("404 Not Found"))
    tasks = [b.request() for _ in range(5)]
    await started(*tasks)
    await b.let_end(1)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, FetchError) for r in results)
    assert b.rankings == 1  # each waiter got the error it would have got ranking the block
    assert Counter(b.told) == {"miss": 1, "joined": 4}
    assert len(b.cache) == 0 and len(b.flights) == 0
    b.gate(2).set()
    assert (await b.request()).body == b"block 2"  # the next request ranks anew


async def test_a_leaders_own_429_is_not_handed_to_its_waiters():
    """The first request of a burst came from a client over its limit: the others, not over
    any, would have got its 429. They ask again, and one of them ranks for the rest."""
    b = Burst(over_limit())
    tasks = [b.request() for _ in range(5)]
    await started(*tasks)
    await b.let_end(1)
    assert b.rankings == 2 and len(b.flights) == 1  # a waiter leads now
    await b.let_end(2)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[0], ApiError) and results[0].status == 429
    assert {e.body for e in results[1:]} == {b"block 2"}
    assert Counter(b.told) == {"miss": 2, "joined": 3}


async def test_a_cancelled_leader_leaves_no_waiter_waiting():
    b = Burst()
    tasks = [b.request() for _ in range(4)]
    await started(*tasks)
    tasks[0].cancel()  # the leader's request is cancelled (the server stopping)
    with pytest.raises(asyncio.CancelledError):
        await tasks[0]
    await started(*tasks[1:])
    assert b.rankings == 2  # one of the waiters ranks, the others wait for it
    await b.let_end(2)
    assert {e.body for e in await asyncio.gather(*tasks[1:])} == {b"block 2"}
    assert len(b.flights) == 0


async def test_a_cancelled_waiter_leaves_the_flight_to_the_others():
    b = Burst()
    tasks = [b.request() for _ in range(4)]
    await started(*tasks)
    tasks[1].cancel()
    with pytest.raises(asyncio.CancelledError):
        await tasks[1]
    await b.let_end(1)
    entries = await asyncio.gather(tasks[0], *tasks[2:])
    assert {e.body for e in entries} == {b"block 1"} and b.rankings == 1


async def test_a_request_waits_for_a_bounded_number_of_failing_leaders():
    """Leaders failing one after another, each its own way: past MAX_JOINS of them a waiter
    ranks on its own, though another's flight is under way, rather than wait again."""
    assert MAX_JOINS == 2  # the rankings below follow from it
    b = Burst(over_limit(), over_limit())
    tasks = [b.request() for _ in range(5)]
    await started(*tasks)
    await b.let_end(1)  # the second request leads, the three others wait for it
    assert b.rankings == 2
    await b.let_end(2)  # they have waited twice: each ranks on its own
    assert b.rankings == 5
    for n in (3, 4, 5):
        b.gate(n).set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [getattr(r, "status", None) for r in results[:2]] == [429, 429]
    assert sorted(e.body for e in results[2:]) == [b"block 3", b"block 4", b"block 5"]
    assert Counter(b.told) == {"miss": 5}
    assert len(b.flights) == 0
