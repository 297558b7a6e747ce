"""How this process's scheduled jobs are doing: the roles' side of `/healthz` and `/metrics`,
and the `/healthz` body itself (`health`), the same for the API and for a role's own listener
(api/opslistener.py).

A failing tick is logged and retried on the next one (api.runner._guard), so a collector
whose every round fails, or an indexer that cannot reach the database, left the process up
and `/healthz` saying "ok": an operator learnt it from the logs, or from stories that
stopped coming. Each job's ticks are now counted here; a job whose last FAILING_AFTER ticks
all failed is named as failing.

A tick that never ends (a store call on a connection whose peer went silent) neither succeeds
nor fails, and APScheduler's max_instances=1 then skips every later tick: the job had stopped
for good while `/healthz` said "ok". Ticks are not cut by a timeout (a retention run or a
reload after a pruned change log may rightly take minutes); a tick running past its job's
`stuck_after_s` is named as stuck instead, and the ticks skipped meanwhile are counted.

Every source failing (a machine with no network or DNS: each fetch fails, each round
succeeds) is no failing job, and `/healthz` said "ok": it now counts the enabled sources and
those failing, from a read cached for SOURCES_READ_EVERY_S, and warns when all of them fail.

What `/healthz` shows is deliberately small (when each job last succeeded, how many ticks
in a row failed): the error texts stay in the logs, as they can name hosts and paths that a
public health check should not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aggregator.store import SourcesGlance, all_failing_warning, other_recipe_leads

if TYPE_CHECKING:
    from api.services import Services

# One failed tick is often a passing hiccup (a lock, a restart of the database); three in a
# row, at the shipped ticks (collect 60 s, follow 1 s), is a job that is down.
FAILING_AFTER = 3
# How long /healthz and a /metrics scrape wait for the database before they say it is away.
# A server that accepts the connection but never answers (a network partition, a stopped
# host, a paused proxy) held both for ever: a load balancer or Prometheus timed the request
# out and learnt nothing, though the README promises "database": false and
# tidings_database_up 0. Under Prometheus's default scrape timeout (10 s), and far above
# the reads' own time (a scrape's counts: well under a second at a million stories).
DATABASE_ANSWER_S = 5.0
# A scheduled tick is stuck once it has run STUCK_TICKS of its job's intervals (its next nine
# ticks were skipped), and never before STUCK_FLOOR_S: the longest ticks that are normal take
# minutes (a follow that reloads a million stories after the change log was pruned, ~10 min;
# a collect round of a large sources file, bounded by its claims' lease, collect.lease_s,
# 5 min by default), and a dead connection is dropped by the TCP keepalives within ~2 min
# (aggregator.store.KEEPALIVE_*), which fails the tick instead. Retention (a 10 min tick) is
# stuck after 100 min.
STUCK_TICKS = 10
STUCK_FLOOR_S = 900.0
# While the database is away every tick fails (follow's: each second), and each failure was a
# warning: ~600 lines for a 10-minute outage, from every replica. The first failure is said,
# then at most one line a minute while it lasts, and one when the job works again. The API's
# requests are said the same way (api.app DatabaseCallLimit): each one that met the outage
# was a warning, thousands a minute on a busy replica.
AWAY_SAY_EVERY_S = 60.0
# How long /healthz reuses its count of failing sources: a load balancer probes every few
# seconds, and a source's state changes at most once a fetch (every few minutes).
SOURCES_READ_EVERY_S = 30.0


def stuck_after_s(interval_s: float) -> float:
    """How long a tick of a job run every `interval_s` may take before it is reported stuck."""
    return max(STUCK_FLOOR_S, STUCK_TICKS * interval_s)


@dataclass
class Outage:
    """A database outage as the log tells it: its first failure (None: none under way), its
    failures so far, and when it was last said. A job's ticks and the API's requests each
    keep one."""

    since: datetime | None = None
    failures: int = 0
    said_at: datetime | None = None

    def failed(self, now: datetime) -> Outage | None:
        """One more failure; the outage as it stands when this failure is to be said (the
        first, then one a minute at most), else None."""
        if self.since is None:
            self.since = now
        self.failures += 1
        if self.said_at is not None and (now - self.said_at).total_seconds() < AWAY_SAY_EVERY_S:
            return None
        self.said_at = now
        return replace(self)

    def ended(self) -> Outage | None:
        """The database answered: the outage this ends (to be said), else None."""
        if self.since is None:
            return None
        ended = replace(self)
        self.since, self.failures, self.said_at = None, 0, None
        return ended


def away_line(name: str, outage: Outage, now: datetime, reason: str,
              event: str = "db_unavailable") -> str:
    """The log line of a failure `Outage.failed` says: the first names the reason alone,
    the later ones how long the outage has lasted and how many failures it has cost."""
    if outage.failures == 1 or outage.since is None:
        return f"{name}.{event} {reason}"
    return (f"{name}.{event} still, for {(now - outage.since).total_seconds():.0f} s, "
            f"{outage.failures} failures: {reason}")


def back_line(name: str, outage: Outage, now: datetime) -> str:
    """The log line of an outage's end (`Outage.ended`)."""
    lasted_s = (now - outage.since).total_seconds() if outage.since is not None else 0.0
    return f"{name}.db_available again after {lasted_s:.0f} s, {outage.failures} failures"


@dataclass
class JobState:
    ok_at: datetime | None = None  # when the last tick that succeeded ended
    failures: int = 0  # ticks in a row that failed, since the last success
    # The scheduled tick under way: when it started (None: none runs), how long it may run
    # before it is stuck (None: not a scheduled job, never stuck), the ticks the scheduler
    # skipped since it started, and whether it was reported stuck.
    running_since: datetime | None = None
    stuck_after_s: float | None = None
    skipped: int = 0
    reported: bool = False
    away: Outage = field(default_factory=Outage)  # the database outage this job is in, if any


def is_stuck(state: JobState, now: datetime) -> bool:
    return (state.running_since is not None and state.stuck_after_s is not None
            and (now - state.running_since).total_seconds() >= state.stuck_after_s)


# What listeners are told of a job: a tick that succeeded or failed, a tick the scheduler
# skipped because the last one still ran, a tick found stuck (once per tick), and the end of
# a tick that had been found stuck.
OUTCOMES = ("ok", "failed", "skipped", "stuck", "unstuck")


@dataclass
class JobHealth:
    jobs: dict[str, JobState] = field(default_factory=dict)
    # Called with (job, outcome), outcome one of OUTCOMES: the app's metrics count them.
    listeners: list[Callable[[str, str], None]] = field(default_factory=list)
    clock: Callable[[], datetime] = lambda: datetime.now(UTC)  # tests move time on
    # /healthz's last count of the sources, and when it was read (None: not yet).
    sources: SourcesGlance | None = None
    sources_read_at: datetime | None = None

    def ok(self, name: str) -> Outage | None:
        """A tick succeeded; returns the database outage it ends, else None."""
        state = self.jobs.setdefault(name, JobState())
        state.ok_at, state.failures = self.clock(), 0
        self._tell(name, "ok")
        return state.away.ended()

    def away(self, name: str) -> Outage | None:
        """A tick failed because the database is away (counted in `failed` as well); returns
        the outage when this failure is to be said (`Outage.failed`), else None."""
        return self.jobs.setdefault(name, JobState()).away.failed(self.clock())

    def failed(self, name: str) -> None:
        self.jobs.setdefault(name, JobState()).failures += 1
        self._tell(name, "failed")

    def watch(self, name: str, interval_s: float) -> None:
        """`name` is a scheduled job ticking every `interval_s`: its ticks can be stuck."""
        self.jobs.setdefault(name, JobState()).stuck_after_s = stuck_after_s(interval_s)

    def started(self, name: str) -> None:
        state = self.jobs.setdefault(name, JobState())
        state.running_since, state.skipped, state.reported = self.clock(), 0, False

    def ended(self, name: str) -> JobState:
        """The tick under way ended (whatever its outcome); its state as it ran, for the log."""
        state = self.jobs.setdefault(name, JobState())
        ran = JobState(**vars(state))
        state.running_since, state.skipped, state.reported = None, 0, False
        if ran.reported:
            self._tell(name, "unstuck")
        return ran

    def skipped(self, name: str) -> None:
        self.jobs.setdefault(name, JobState()).skipped += 1
        self._tell(name, "skipped")

    def failing(self) -> list[str]:
        return sorted(n for n, s in self.jobs.items() if s.failures >= FAILING_AFTER)

    def stuck(self) -> list[str]:
        now = self.clock()
        return sorted(n for n, s in self.jobs.items() if is_stuck(s, now))

    def newly_stuck(self) -> list[tuple[str, JobState]]:
        """The jobs stuck since the last look and not yet reported, now marked reported (each
        stuck tick is logged once, not at every look)."""
        now, found = self.clock(), []
        for name, state in sorted(self.jobs.items()):
            if not state.reported and is_stuck(state, now):
                state.reported = True
                found.append((name, state))
                self._tell(name, "stuck")
        return found

    def _tell(self, name: str, outcome: str) -> None:
        for listener in self.listeners:
            listener(name, outcome)


async def sources_glance(svc: Services) -> SourcesGlance:
    """The sources' count for /healthz, read again once SOURCES_READ_EVERY_S have passed."""
    jobs, now = svc.jobs, svc.jobs.clock()
    if (jobs.sources is None or jobs.sources_read_at is None
            or (now - jobs.sources_read_at).total_seconds() >= SOURCES_READ_EVERY_S):
        jobs.sources, jobs.sources_read_at = await svc.store.sources_glance(), now
    return jobs.sources


async def health(svc: Services) -> tuple[dict, int]:
    """The `/healthz` body of this process and its status code."""
    from api.cards import iso  # here: importing the cards (and the ranking) at start slowed
    # every command that builds services, /healthz or not (api/services.py)

    try:  # one read answers both: is the database there, and whose recipe leads it
        # Not while the file is gone: the connections opened before still read it, the new
        # ones an empty one, and /healthz said ok or failing by the connection it was given.
        if svc.store.file_gone():
            raise FileNotFoundError("the database file was deleted or replaced")
        async with asyncio.timeout(DATABASE_ANSWER_S):
            lead = await svc.store.leading_embedder()
            sources, ok = await sources_glance(svc), True
    except Exception:  # whatever failed, the answer is this body, never an error page
        lead, sources, ok = None, None, False
    failing, stuck = svc.jobs.failing(), svc.jobs.stuck()
    warnings = [f"{w} Their errors: `tidings sources list`, GET /v1/sources"
                for w in [sources and all_failing_warning(sources)] if w]
    body = {"status": "ok" if ok and not failing and not stuck and not warnings else "degraded",
            "database": ok,
            "indexed": len(svc.corpus) if svc.corpus is not None else None,
            # No embedder (a collector): no recipe of its own to compare; no database: unknown.
            # No indexer registered (an empty database, the indexers stopped) is current, as
            # tidings_embedding_recipe_current's 1 says: it read null here, 1 there.
            "recipe_current": None if svc.embedder is None or not ok
            else not other_recipe_leads(lead, svc.embedder.recipe),
            "failing": failing,
            "stuck": stuck,
            "jobs": {name: {"ok_at": iso(s.ok_at), "failures": s.failures,
                            "running_since": iso(s.running_since)}
                     for name, s in sorted(svc.jobs.jobs.items())},
            # null while the database cannot be read
            "sources": sources._asdict() if sources is not None else None,
            "warnings": warnings}
    # 503 only when this process cannot answer (no database): a failing collector is no
    # reason for a load balancer to stop sending it readers.
    return body, 200 if ok else 503
