"""The scheduled jobs' ticks as /healthz and /metrics see them (api.jobhealth)."""

from __future__ import annotations

import sqlite3

from api.jobhealth import FAILING_AFTER, JobHealth
from api.runner import _guard


async def test_a_job_is_failing_after_its_last_ticks_all_failed():
    health = JobHealth()
    seen: list[tuple[str, bool]] = []
    health.listeners.append(lambda job, ok: seen.append((job, ok)))

    async def down():
        raise sqlite3.OperationalError("unable to open database file")

    async def fine():
        return None

    await _guard("collect", fine, health)
    assert health.jobs["collect"].ok_at is not None and health.failing() == []
    for _ in range(FAILING_AFTER - 1):
        await _guard("collect", down, health)
    assert health.failing() == []  # a hiccup or two is not a job that is down
    await _guard("collect", down, health)
    await _guard("follow", fine, health)
    assert health.failing() == ["collect"] and health.jobs["collect"].failures == FAILING_AFTER
    await _guard("collect", fine, health)  # one success and it is back
    assert health.failing() == [] and health.jobs["collect"].failures == 0
    assert seen[:2] == [("collect", True), ("collect", False)] and seen.count(("collect", False)) == 3


async def test_a_job_without_health_still_only_logs(caplog):
    async def broken():
        raise RuntimeError("boom")

    await _guard("save", broken)  # the one-off callers pass no health: nothing to count
    assert "save.failed" in caplog.text
