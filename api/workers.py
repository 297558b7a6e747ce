"""`tidings serve --workers N`: N API processes on one socket, sharing one saved index in memory.

Who writes what. The serve process (the supervisor) is the only one that writes the index file,
and only before the workers start: in a process of its own (`prepare_for_workers`), it loads
the saved index as its owner, repairs it against the database, replays the change log and saves
it (or saves it for the first time). It then binds the socket and starts the workers (uvicorn's
supervisor: a worker that dies is replaced). Each worker maps that file read-only (FAISS
IO_FLAG_MMAP_IFC), so the page cache holds the vectors once and every worker's mapping points
at the same pages; stories that arrive later go to a small private exact delta in each worker,
which follows the change log like any replica. Workers never write the file: in a deployment
the indexer (`tidings index --watch` or `run`) owns it, and a restarted serve maps its latest
save. Limits: a worker keeps its mapping until it restarts (the delta grows with the stories
that arrive meanwhile), and a rebuild (retention tombstones past 20 %, or the size crossing to
another index layout) turns a worker's index into a private copy.

Each worker keeps its own block cache and fast path (api/fastpath.py); a block's ETag stands
for its stories (api.app.block_identity), so a client revalidating against another worker still
gets its 304. The per-client rate limits are kept in a file they all map
(api.ratelimit.SharedRateLimiter), so they hold across the workers.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from aggregator.settings import Settings

log = logging.getLogger("tidings.workers")


async def prepare_shared_index(settings: Settings) -> dict:
    """Bring the saved index file up to date with the database (the one write), then let go."""
    from api.services import build
    from recommender.vindex import manifest

    # No sync of the sources file here: it is the collectors' (api.runner.run_roles); the
    # workers read the weights from the database.
    svc = await build(settings, corpus=True, owner_of_files=True)
    try:
        info = await svc.corpus.start()  # saves when it repaired or followed anything
        if manifest(svc.corpus.index_dir) is None:
            await svc.corpus.save()  # nothing to repair, but workers need a file to map
        info["index_dir"] = str(svc.corpus.index_dir)
        return info
    finally:
        await svc.close()
        del svc
        gc.collect()


class WorkerApp:
    """The ASGI app of one worker: services are built in the lifespan startup, in the worker.

    Picklable (it holds only the settings), because uvicorn spawns workers with a fresh
    interpreter and hands each a copy of its config.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.app = None
        self._svc = None
        self._scheduler = None
        self._watcher = None  # the task reporting stuck ticks (api.runner.watch_jobs)

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        await self.app(scope, receive, send)

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._start()
                except Exception as e:
                    log.exception("worker.start_failed")
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _start(self) -> None:
        from api.cli import configure_logging

        # First: a failure to import what follows was written by Python's last-resort handler,
        # a bare `worker.start_failed` without time, level, logger nor process id.
        configure_logging(self.settings)
        from apscheduler.events import EVENT_JOB_MAX_INSTANCES
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        from api.app import create_app
        from api.ratelimit import SHARED_LIMITS_ENV, SharedRateLimiter
        from api.runner import (
            RETENTION_TICK_S,
            WEIGHTS_CHECK_S,
            count_skipped,
            fields,
            reload_weights,
            retention,
            schedule,
            settle_heap,
            watch_jobs,
        )
        from api.services import build, recipe_adopter
        from recommender.indexer import LEAD_CHECK_S

        settings = self.settings
        svc = await build(settings, serve=True, mmap=True)
        self._svc = svc
        info = await svc.corpus.start()
        log.info("worker.index_loaded mapped=%s %s", getattr(svc.corpus.vindex, "mmapped", False), fields(info))
        settle_heap()
        sched = AsyncIOScheduler(timezone=UTC)
        schedule(sched, svc.jobs, "follow", svc.corpus.follow, min(settings.index.tick_s, 1.0))
        # As in a one-process serve; the database lets one process of the cluster run it an hour.
        schedule(sched, svc.jobs, "retention", lambda: retention(svc), RETENTION_TICK_S,
                 next_run_time=datetime.now(UTC) + timedelta(seconds=30))
        # A new cluster's workers may have raced to the other int8 runtime before any indexer
        # embedded a story: each takes the database's recipe while its index is still empty,
        # as a one-process serve does (api.services.adopt_database_recipe).
        schedule(sched, svc.jobs, "recipe", recipe_adopter(svc), LEAD_CHECK_S)
        schedule(sched, svc.jobs, "weights", lambda: reload_weights(svc), WEIGHTS_CHECK_S)
        sched.add_listener(count_skipped(svc.jobs), EVENT_JOB_MAX_INSTANCES)
        sched.start()
        self._watcher = asyncio.create_task(watch_jobs(svc.jobs))
        self._scheduler = sched
        # The buckets the supervisor made for its workers (serve_workers): a client's limit
        # is one for all of them, whichever worker the kernel hands its connections to.
        shared_limits = os.environ.get(SHARED_LIMITS_ENV)
        self.app = create_app(svc, limiter=SharedRateLimiter(shared_limits) if shared_limits else None)

    async def _stop(self) -> None:
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)
        if self._watcher is not None:
            self._watcher.cancel()
        if self.app is not None:  # the events this worker accepted, written before the store closes
            await self.app.state.events.close()
        if self._svc is not None:
            await self._svc.close()


def _supervisor_class():
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        """uvicorn's supervisor, saying when a worker dies. uvicorn replaces it but says so at
        INFO on its own logger, which the API's servers keep at WARNING (`server_config`):
        a worker killed by the OOM killer or a crash left no line at all, only a new
        worker's index_loaded."""

        def keep_subprocess_alive(self) -> None:
            # Said for each worker uvicorn replaced, after its look: a look before it missed a
            # worker that died while uvicorn's health check waited on another one (killed
            # then, it was found dead only by that check, and said at INFO only). One that
            # failed to start is not replaced: it stops the serve (uvicorn says so).
            before = list(self.processes)
            super().keep_subprocess_alive()
            for worker in replaced(before, self.processes):
                log.warning("worker.died pid=%s %s: a new worker replaces it%s",
                            worker.pid, exit_reason(worker.exitcode), WORKER_DIED_HINT)

    return Supervisor


def replaced(before: list, after: list) -> list:
    """The workers of `before` whose place in `after` another holds now (pure)."""
    return [old for old, new in zip(before, after, strict=True) if new is not old]


WORKER_DIED_HINT = "; if this repeats, see the worker's last lines above, or `dmesg` for the OOM killer"


def exit_reason(exitcode: int | None) -> str:
    """A worker's end as a log field: `signal=SIGKILL` or `exit_code=1`."""
    import signal

    if exitcode is not None and exitcode < 0:
        try:
            return f"signal={signal.Signals(-exitcode).name}"
        except ValueError:
            return f"signal={-exitcode}"
    return f"exit_code={exitcode}"


def serve_workers(settings: Settings, host: str, port: int, workers: int) -> None:
    """Bind, start `workers` processes and supervise them until SIGINT/SIGTERM (blocking)."""
    from api.app import server_config
    from api.metrics import MULTIPROC_ENV
    from api.ratelimit import SHARED_LIMITS_ENV, SharedRateLimiter

    config = server_config(WorkerApp(settings), host, port, workers=workers, lifespan="on")
    # Re-made from its descriptor so that Python reads the protocol (TCP) back from the kernel:
    # uvicorn creates it with proto 0, and asyncio sets TCP_NODELAY only on sockets that say
    # TCP. Without it every answer written in two parts (head, body) waited for the client's
    # delayed ACK: 40 ms each, ~700 req/s instead of thousands (benchmarks/serve_bench.py).
    sock = socket.socket(fileno=config.bind_socket().detach())
    # The workers' metrics, summed at each scrape (api/metrics.py): a fresh folder for each
    # serve, since values left by a previous one would be added to this one's.
    shared_metrics = tempfile.mkdtemp(prefix="tidings-metrics-")
    os.environ[MULTIPROC_ENV] = shared_metrics  # the spawned workers inherit it
    # The workers' rate-limit buckets, in a fresh folder too: a bucket per worker let a client
    # through N times its limit.
    shared_limits = tempfile.mkdtemp(prefix="tidings-limits-")
    buckets = os.path.join(shared_limits, "buckets")
    SharedRateLimiter.create(buckets)
    os.environ[SHARED_LIMITS_ENV] = buckets
    log.info("api.listening http://%s:%d workers=%d", host, sock.getsockname()[1], workers)
    try:
        _supervisor_class()(config, sockets=[sock]).run()
    finally:
        sock.close()
        shutil.rmtree(shared_metrics, ignore_errors=True)
        shutil.rmtree(shared_limits, ignore_errors=True)


def prepare_for_workers(settings: Settings) -> dict:
    """`prepare_shared_index` in a process of its own, which exits when it is done.

    Run in the supervisor itself, the load left the supervisor holding about what one worker
    holds for as long as the workers ran (50,000 stories: its Pss 94 -> 203 MiB, a worker's
    146): the index, lexical index and cards were freed, but the allocator kept most of their
    memory (numpy's buffers, the many small objects of the cards), and the imports stayed."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # Spawned, as uvicorn spawns the workers: a fresh interpreter, nothing of this one's heap.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(_prepare_here, settings, os.getpid()).result()


def _prepare_here(settings: Settings, supervisor: int) -> dict:
    import asyncio
    import threading

    from api.cli import configure_logging

    configure_logging(settings)
    # A supervisor killed meanwhile (SIGTERM to it alone) takes the preparation with it, as
    # when it ran in the supervisor: it would go on for minutes at a million stories, holding
    # the index folder's save lock against the serve started next.
    threading.Thread(target=_exit_when_orphaned, args=(supervisor,), daemon=True).start()
    return asyncio.run(prepare_shared_index(settings))


def _exit_when_orphaned(parent: int, every_s: float = 0.5) -> None:
    while os.getppid() == parent:
        time.sleep(every_s)
    os._exit(1)


async def serve(settings: Settings, host: str, port: int, workers: int) -> None:
    import asyncio

    from api.runner import fields, refuse_taken_port

    refuse_taken_port(host, port)  # before the index is prepared, not after
    info = await asyncio.to_thread(prepare_for_workers, settings)
    log.info("index.saved_for_workers %s", fields(info))
    # The supervisor only waits on its workers from here: nothing else runs on this loop, so
    # blocking it is harmless, and uvicorn's supervisor needs the main thread for signals.
    serve_workers(settings, host, port, workers)


# ---------------------------------------------------------------- is the index shared?

_SMAPS_FIELDS = ("Rss", "Pss", "Shared_Clean", "Private_Clean", "Private_Dirty")


def children(pid: int) -> list[int]:
    """Direct child processes (Linux /proc); the workers are among the supervisor's."""
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def mapped_kib(pid: int, file_name: str) -> dict[str, int] | None:
    """Rss, Pss, Shared_Clean... in KiB of `pid`'s mappings of files called `file_name`, summed
    (/proc/<pid>/smaps). A shared page counts fully in each process's Rss and split in its Pss:
    two workers mapping the same index show Pss at about half of Rss, and Shared_Clean = Rss."""
    try:
        lines = Path(f"/proc/{pid}/smaps").read_text().splitlines()
    except OSError:
        return None
    out: dict[str, int] = {}
    inside = False
    for line in lines:
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            inside = line.rstrip().endswith("/" + file_name)
            if inside:
                out["mappings"] = out.get("mappings", 0) + 1
        elif inside:
            key, _, value = line.partition(":")
            if key in _SMAPS_FIELDS:
                out[key] = out.get(key, 0) + int(value.split()[0])
    return out or None


def rollup_kib(pid: int) -> dict[str, int]:
    """The whole process's figures from /proc/<pid>/smaps_rollup, in KiB."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        if key in _SMAPS_FIELDS:
            out[key] = int(value.split()[0])
    return out
