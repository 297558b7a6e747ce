"""How this process's scheduled jobs are doing: the roles' side of `/healthz` and `/metrics`,
and the `/healthz` body itself (`health`), the same for the API and for a role's own listener
(api/opslistener.py).

A failing tick is logged and retried on the next one (api.runner._guard), so a collector
whose every round fails, or an indexer that cannot reach the database, left the process up
and `/healthz` saying "ok": an operator learnt it from the logs, or from stories that
stopped coming. Each job's ticks are now counted here; a job whose last FAILING_AFTER ticks
all failed is named as failing.

What `/healthz` shows is deliberately small (when each job last succeeded, how many ticks
in a row failed): the error texts stay in the logs, as they can name hosts and paths that a
public health check should not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from aggregator.store import other_recipe_leads

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


@dataclass
class JobState:
    ok_at: datetime | None = None  # when the last tick that succeeded ended
    failures: int = 0  # ticks in a row that failed, since the last success


class JobHealth:
    def __init__(self) -> None:
        self.jobs: dict[str, JobState] = {}
        # Called with (job, succeeded) after each tick: the app's metrics count them.
        self.listeners: list[Callable[[str, bool], None]] = []

    def ok(self, name: str) -> None:
        state = self.jobs.setdefault(name, JobState())
        state.ok_at, state.failures = datetime.now(UTC), 0
        self._tell(name, True)

    def failed(self, name: str) -> None:
        self.jobs.setdefault(name, JobState()).failures += 1
        self._tell(name, False)

    def failing(self) -> list[str]:
        return sorted(n for n, s in self.jobs.items() if s.failures >= FAILING_AFTER)

    def _tell(self, name: str, succeeded: bool) -> None:
        for listener in self.listeners:
            listener(name, succeeded)


async def health(svc: Services) -> tuple[dict, int]:
    """The `/healthz` body of this process and its status code."""
    from api.cards import iso  # here: importing the cards (and the ranking) at start slowed
    # every command that builds services, /healthz or not (api/services.py)

    try:  # one read answers both: is the database there, and whose recipe leads it
        async with asyncio.timeout(DATABASE_ANSWER_S):
            lead, ok = await svc.store.leading_embedder(), True
    except Exception:  # whatever failed, the answer is this body, never an error page
        lead, ok = None, False
    failing = svc.jobs.failing()
    body = {"status": "ok" if ok and not failing else "degraded", "database": ok,
            "indexed": len(svc.corpus) if svc.corpus is not None else None,
            # No embedder (a collector): no recipe of its own to compare.
            "recipe_current": None if lead is None or svc.embedder is None
            else not other_recipe_leads(lead, svc.embedder.recipe),
            "failing": failing,
            "jobs": {name: {"ok_at": iso(s.ok_at), "failures": s.failures}
                     for name, s in sorted(svc.jobs.jobs.items())}}
    # 503 only when this process cannot answer (no database): a failing collector is no
    # reason for a load balancer to stop sending it readers.
    return body, 200 if ok else 503
