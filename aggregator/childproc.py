"""What every worker process of ours does around its start: the collector's parse workers
(`parsepool`) and the page reader (`pagereader`). Both are spawned, not forked: their parent
holds threads (aiosqlite, the resolver, the event loop's executors) that a fork would copy
mid-flight.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator


# Ctrl-C in a terminal signals the whole process group. The parent shuts its workers down in
# order; a worker that took the SIGINT too would print a KeyboardInterrupt traceback each (or
# break the collector's pool for the rest of the round). A worker is spawned with SIGINT
# blocked (a signal mask survives fork and exec), so one arriving while it still imports stays
# pending, and `child_start` ignores SIGINT before unblocking it.
@contextlib.contextmanager
def interrupts_held() -> Iterator[None]:
    """Around a call that may spawn a worker; only this thread's mask changes, so a SIGINT
    meanwhile still reaches the parent."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def child_start(parent: int) -> None:
    """First thing in a worker: SIGINT ignored, and an end with its parent."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    threading.Thread(target=exit_with, args=(parent,), name="parent-watch", daemon=True).start()


# How often a worker looks for its parent. A parent killed outright (SIGKILL, the OOM killer)
# never shuts its workers down, and they waited for work for ever: idle processes (~35 MB
# each) left behind by every such death.
PARENT_CHECK_S = 1.0


def exit_with(parent: int, every_s: float = PARENT_CHECK_S) -> None:
    """In a worker: end it once its parent is gone (it was re-parented)."""
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(0)
