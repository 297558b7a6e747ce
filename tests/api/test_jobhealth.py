"""The scheduled jobs' ticks as /healthz and /metrics see them (api.jobhealth)."""

from __future__ import annotations

import sqlite3

from api.jobhealth import FAILING_AFTER, JobHealth
from api.runner import _guard


async def test_a_job_is_failing_after_its_last_ticks_all_failed():
    health = JobHealth()
    seen: list[tuple[str, str]] = []
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
    assert seen[:2] == [("collect", "ok"), ("collect", "failed")] and seen.count(("collect", "failed")) == 3


async def test_a_job_without_health_still_only_logs(caplog):
    async def broken():
        raise RuntimeError("boom")

    await _guard("save", broken)  # the one-off callers pass no health: nothing to count
    assert "save.failed" in caplog.text


def test_a_tick_running_past_its_stuck_after_is_stuck_and_reported_once(caplog):
    """A tick that never ended (a store call on a silent connection) was neither a success
    nor a failure: the job stopped for good and /healthz said "ok"."""
    from datetime import UTC, datetime, timedelta

    from api.jobhealth import STUCK_FLOOR_S, stuck_after_s
    from api.runner import RETENTION_TICK_S, report_stuck

    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    health = JobHealth(clock=lambda: now[0])
    seen: list[tuple[str, str]] = []
    health.listeners.append(lambda job, outcome: seen.append((job, outcome)))
    assert stuck_after_s(1.0) == STUCK_FLOOR_S  # follow: the floor, not ten seconds
    assert stuck_after_s(RETENTION_TICK_S) == 10 * RETENTION_TICK_S
    health.watch("collect", 60)
    health.started("collect")
    health.started("index")  # not a scheduled job (no interval): never stuck
    health.skipped("collect")
    now[0] += timedelta(seconds=STUCK_FLOOR_S - 1)
    assert health.stuck() == [] and report_stuck(health) == []  # slow is not stuck
    health.skipped("collect")
    now[0] += timedelta(seconds=1)
    assert health.stuck() == ["collect"]
    assert report_stuck(health) == ["collect"] and report_stuck(health) == []  # said once
    assert [r.getMessage() for r in caplog.records if "stuck" in r.getMessage()] == [
        f"collect.stuck: its tick has run {STUCK_FLOOR_S:.0f} s (stuck after {STUCK_FLOOR_S:.0f} s) "
        "and 2 ticks were skipped meanwhile; it is not cut: a database connection that went "
        "silent is the usual cause (docs: README, Operations, Health)"]
    assert health.stuck() == ["collect"]  # /healthz says it for as long as it runs
    ran = health.ended("collect")
    assert ran.reported and ran.skipped == 2
    assert health.stuck() == [] and health.jobs["collect"].running_since is None
    assert seen == [("collect", "skipped"), ("collect", "skipped"), ("collect", "stuck"),
                    ("collect", "unstuck")]
    health.started("collect")  # the next tick starts afresh
    assert health.jobs["collect"].skipped == 0 and health.stuck() == []


async def test_a_scheduled_tick_is_timed_and_its_end_is_said_when_it_was_stuck(caplog):
    from datetime import UTC, datetime, timedelta

    from api.runner import report_stuck

    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    health = JobHealth(clock=lambda: now[0])
    health.watch("weights", 30)
    running_since = []

    async def slow():
        running_since.append(health.jobs["weights"].running_since)
        now[0] += timedelta(hours=1)
        assert report_stuck(health) == ["weights"]

    await _guard("weights", slow, health, tick=True)
    assert running_since == [datetime(2026, 1, 1, tzinfo=UTC)]
    assert health.jobs["weights"].running_since is None and health.jobs["weights"].ok_at == now[0]
    assert "weights.unstuck: the tick ended after 3600 s, 0 ticks skipped meanwhile" in caplog.text



async def test_a_database_outage_is_said_once_a_minute_and_its_end_once(caplog, sqlite_store):
    """While the database was away, `follow` (a tick each second) logged a warning at every
    tick: ~600 lines for a 10-minute outage, from each replica, and nothing when it ended."""
    import logging
    from datetime import UTC, datetime, timedelta

    from aggregator.store import Store

    caplog.set_level(logging.INFO, logger="tidings.run")
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    health = JobHealth(clock=lambda: now[0])
    away = Store("postgresql+asyncpg://postgres@127.0.0.1:1/test")  # nothing listens there
    stores = [away]

    async def follow():
        await stores[0].source_weights()

    def said() -> list[str]:
        return [r.getMessage().split(":")[0] for r in caplog.records if r.getMessage().startswith("follow.")]

    try:
        for _ in range(150):  # a tick each second for 150 s
            await _guard("follow", follow, health, tick=True)
            now[0] += timedelta(seconds=1)
        assert health.failing() == ["follow"]  # /healthz still counts every failed tick
        stores[0] = sqlite_store
        await _guard("follow", follow, health, tick=True)
        assert said() == ["follow.db_unavailable [Errno 111] Connect call failed ('127.0.0.1', 1)",
                          "follow.db_unavailable still, for 60 s, 61 failures",
                          "follow.db_unavailable still, for 120 s, 121 failures",
                          "follow.db_available again after 150 s, 150 failures"]
        assert [r.levelname for r in caplog.records if r.getMessage().startswith("follow.")] == \
            ["WARNING", "WARNING", "WARNING", "INFO"]
        caplog.clear()
        stores[0] = away  # the next outage is said from its first failure again
        await _guard("follow", follow, health, tick=True)
        assert said() == ["follow.db_unavailable [Errno 111] Connect call failed ('127.0.0.1', 1)"]
    finally:
        await away.close()
