"""`GET /healthz` and `GET /metrics` for a process that serves no API (`tidings collect`,
`tidings index --watch`), on a small listener of its own (`[metrics] host`/`port`).

Only a process that served the API had them: a separate collector's or indexer's counters
(stories collected and embedded, job ticks) and job health existed nowhere, so an operator
running them on other machines could neither scrape nor health-check them. The answers are the
API's own (api.jobhealth.health, Metrics.scrape), with the process's roles added to /healthz.
Nothing else is served: no API, no docs, no key (both paths are an operator's).
"""

from __future__ import annotations

import logging
import os

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from api.jobhealth import health
from api.metrics import Metrics
from api.services import STOP_GRACE_S, Services

log = logging.getLogger("tidings.run")


class OpsListener:
    def __init__(self, svc: Services, roles: list[str]):
        """Counting starts here: make it before the jobs tick."""
        self.metrics = Metrics(api=False)
        self.metrics.watch(svc)
        self.svc, self.roles = svc, roles
        self.runner: web.AppRunner | None = None

    async def healthz(self, _request: web.Request) -> web.Response:
        body, status = await health(self.svc)
        return web.json_response({**body, "roles": self.roles}, status=status)

    async def prom(self, _request: web.Request) -> web.Response:
        return web.Response(body=await self.metrics.scrape(self.svc),
                            headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def start(self, host: str, port: int) -> None:
        """Listen; a port taken or an address not of this machine is an OSError that names
        them, so the process stops with one line (api.cli) rather than run unwatched."""
        app = web.Application()
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.prom)
        # A stop waits STOP_GRACE_S for requests under way, as the API's does: aiohttp's
        # own 60 s shutdown timeout and 10 s wait for a half-sent body kept `collect
        # --metrics-port` from stopping for ~11 s after SIGTERM, past `docker stop`'s 10 s.
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=STOP_GRACE_S)
        await self.runner.setup()
        try:
            await web.TCPSite(self.runner, host, port).start()
        except OSError as e:
            why = os.strerror(e.errno) if e.errno else str(e)
            raise OSError(f"cannot listen on {host}:{port} for /healthz and /metrics "
                          f"([metrics] host and port): {why}") from None
        log.info("metrics.listening http://%s:%d/metrics roles=%s", host, port, ",".join(self.roles))

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
