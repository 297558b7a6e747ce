"""SQLite's one writer at a time: writers in arrival order, urgent ones ahead of the queue."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class WriteLock:
    """An asyncio lock that serves its waiters in arrival order, urgent ones first.

    A SQLite file takes one writer at a time, and `Store.writing` queues its writers here.
    A collector's round queues dozens of story stores at once; an indexer's claim taken while
    the model idles waited behind all of them (~80 ms for the ingest benchmark's first claim,
    the model idle throughout). An urgent writer goes ahead of the queued ordinary ones, never
    ahead of the one holding the lock. Only a writer something waits on should be urgent: a
    lane used by every claim made claims come back sooner and smaller (see recommender.indexer).
    """

    def __init__(self) -> None:
        self._held = False
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._ordinary: deque[asyncio.Future[None]] = deque()

    def locked(self) -> bool:
        return self._held

    async def acquire(self, urgent: bool = False) -> None:
        if not self._held and not self._urgent and not self._ordinary:
            self._held = True
            return
        lane = self._urgent if urgent else self._ordinary
        turn = asyncio.get_running_loop().create_future()
        lane.append(turn)
        try:
            await turn  # set by `release`, which hands the lock over held
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed over just as the waiter was cancelled: pass it on
            elif turn in lane:  # else a `release` between its cancel and now skipped it already
                lane.remove(turn)
            raise

    def release(self) -> None:
        for lane in (self._urgent, self._ordinary):
            while lane:
                turn = lane.popleft()
                if not turn.done():
                    turn.set_result(None)
                    return
        self._held = False

    @asynccontextmanager
    async def held(self, urgent: bool = False) -> AsyncIterator[None]:
        await self.acquire(urgent)
        try:
            yield
        finally:
            self.release()
