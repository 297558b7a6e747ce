"""OneThread: one worker thread, tasks in turn, urgent ones first."""

from __future__ import annotations

import threading
import time

from aggregator.onethread import OneThread


def test_an_urgent_task_goes_before_the_waiting_ones_not_the_running_one():
    """A caller's page waited behind every article page a collector round had queued (up to
    full_text_limit a source: 80 pages a first round with the shipped sources)."""
    worker, started, done = OneThread("test-urgent"), threading.Event(), []

    def page(name: str, hold: threading.Event | None = None) -> str:
        if hold is not None:
            started.set()
            hold.wait(10)
        done.append(name)
        return name

    release = threading.Event()
    first = worker.submit(page, "collector-0", release)
    assert started.wait(10)
    rest = [worker.submit(page, f"collector-{i}") for i in range(1, 4)]
    urgent = worker.submit(page, "caller", urgent=True)
    release.set()
    assert urgent.result(10) == "caller" and [f.result(10) for f in (first, *rest)]
    assert done == ["collector-0", "caller", "collector-1", "collector-2", "collector-3"]


def test_a_cancelled_task_never_runs_and_errors_reach_the_caller():
    worker, ran = OneThread("test-cancel"), []
    hold = threading.Event()
    blocker = worker.submit(hold.wait, 10)
    cancelled = worker.submit(ran.append, "no")
    assert cancelled.cancel()
    failing = worker.submit(lambda: 1 / 0)
    hold.set()
    assert blocker.result(10) is True
    try:
        failing.result(10)
    except ZeroDivisionError:
        pass
    else:
        raise AssertionError("the error was not handed over")
    time.sleep(0.05)
    assert ran == []
