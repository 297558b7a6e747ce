"""A process's one worker thread for one kind of work, started on first use.

Work that must not run twice at once in a process, or that should not hold the threads
`asyncio.to_thread` shares with everything else, queues here instead: tasks wait in this
queue, not in a pool thread. Urgent tasks go before the others (never before the one
running): a caller's page, which someone waits for, before a collector's article pages, which
a round reads by the dozen. A forked child has none of its parent's threads, so the worker is
forgotten there (a queue that still counted on it would hold every task forever; its lock may
have been held at the fork).
"""

from __future__ import annotations

import itertools
import os
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class OneThread:
    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self._queue: queue.PriorityQueue | None = None
        self._order = itertools.count()  # first come, first served within a priority
        os.register_at_fork(after_in_child=self._forget)

    def submit(self, fn: Callable[..., Any], *args: Any, urgent: bool = False) -> Future:
        future: Future = Future()
        with self._lock:
            if self._queue is None:
                self._queue = queue.PriorityQueue()
                # A daemon: a task still queued at exit is not waited for.
                threading.Thread(target=_work, args=(self._queue,), name=self.name,
                                 daemon=True).start()
            self._queue.put((0 if urgent else 1, next(self._order), fn, args, future))
        return future

    def _forget(self) -> None:
        self._lock, self._queue = threading.Lock(), None


def _work(tasks: queue.PriorityQueue) -> None:
    while True:
        _, _, fn, args, future = tasks.get()
        if not future.set_running_or_notify_cancel():  # its caller gave up while it waited
            continue
        try:
            future.set_result(fn(*args))
        except BaseException as e:  # the caller's to handle, as an executor hands it over
            future.set_exception(e)
        del fn, args, future  # not kept alive until the next task arrives
