"""A process's one worker thread for one kind of work, started on first use.

Work that must not run twice at once in a process, or that should not hold the threads
`asyncio.to_thread` shares with everything else, queues here instead: tasks wait in the
executor's queue, not in a pool thread. A forked child has none of its parent's threads, so
the worker is forgotten there (a pool that still counted it would queue every task forever;
its lock may have been held at the fork).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class OneThread:
    def __init__(self, name: str):
        self.name = name
        self._lock = threading.Lock()
        self._worker: ThreadPoolExecutor | None = None
        os.register_at_fork(after_in_child=self._forget)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future:
        with self._lock:
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix=self.name)
            return self._worker.submit(fn, *args)

    def _forget(self) -> None:
        self._lock, self._worker = threading.Lock(), None
