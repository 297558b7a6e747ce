"""Where the event loop's CPU goes during the ingest benchmark: one round of
`benchmarks.ingest_bench` with cProfile on the event-loop thread, from the `run` role's
`ready` to the pipeline's end, timed in thread CPU time (`time.thread_time`), so time spent
waiting in epoll or descheduled by a busy machine is not counted.

cProfile's hooks about double the loop's CPU (0.8 -> 1.7 CPU-s on the 2-core Intel of
2026-12-08), pure-Python code more than C: read its figures as shares, not as seconds. Coroutine
call counts count each resumption, and their cumulative times overlap. Stats are written to
`out` for `python -m pstats`.

What it showed (2026-12-08, 2-core Intel Xeon with AVX-512 VNNI, OpenVINO int8, 40 sources,
1,438 stories; shares of the loop's profiled CPU, 2 runs): the corpus's follow ~44% (its
lexical `add_many` 26-30%, the reads of changes, vectors and cards ~10%), the collector's
`upsert_stories` ~35% (per source: current name, existing URLs, takedowns, body hashes,
moves, one INSERT; ~1.5 ms a statement), the indexer's saves ~9% and claims ~9%, the
benchmark's own probes ~6%, fetching and the parse workers' IPC ~3%. No poll loop, no
per-story round trip (~1,700 aiosqlite trips a run, ~400 statements). Over time (per-thread
/proc CPU every 0.25 s): the loop spends ~0.5 CPU-s in the first ~1.4 s (collection: the
round's stores beside the first claims and follows) and ~0.35 over the remaining ~4.5 s,
and the parse workers' ~0.5 CPU-s all falls in the first ~0.6 s: most of the CPU the model
loses, it loses while the round is collected.

    .venv/bin/python -m benchmarks.ingest_profile [n_sources] [out]
"""

from __future__ import annotations

import asyncio
import cProfile
import pstats
import sys
import time

import api.runner as runner
from aggregator.store import Store
from benchmarks import ingest_bench

# Product code and the libraries it drives on the loop, for the printed summary.
SHOWN = "aggregator/|recommender/|api/|aiosqlite|sqlalchemy/ext/asyncio/session"


def profiled_round(n_sources: int = 40) -> tuple[dict, cProfile.Profile]:
    """One benchmark round with the event loop profiled; its result and the profile."""
    prof = cProfile.Profile(time.thread_time)
    run_roles, close = runner.run_roles, Store.close

    async def closing(store: Store) -> None:
        # The first store closed is the benchmark's probe, as the run ends and before the
        # role's shutdown (model release, final save), which is not ingest.
        prof.disable()
        await close(store)

    async def profiled(*args, ready: asyncio.Event, **kwargs):
        async def start() -> None:
            await ready.wait()
            prof.enable()  # on the loop's thread: cProfile follows the thread that enables it

        starter = asyncio.ensure_future(start())
        try:
            return await run_roles(*args, ready=ready, **kwargs)
        finally:
            starter.cancel()

    # ingest_bench imports run_roles from api.runner at each round.
    runner.run_roles, Store.close = profiled, closing
    try:
        return ingest_bench.run(n_sources, rounds=1), prof
    finally:
        runner.run_roles, Store.close = run_roles, close


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    out = sys.argv[2] if len(sys.argv) > 2 else "/tmp/tidings-ingest-loop.prof"
    result, prof = profiled_round(n)
    r = result["runs"][0]
    print(f"ratio {r['ratio']:.3f}  elapsed {r['elapsed_s']:.2f} s  cpu_s {r['cpu_s']}")
    prof.dump_stats(out)
    pstats.Stats(out).sort_stats("cumulative").print_stats(SHOWN, 40)
    print(f"full stats: {out}")
