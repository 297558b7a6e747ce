"""Feed benchmark: event ingestion rate, and feed latency through the HTTP API with 100k
stories and 10k readers with histories, next to the related-block latency of the same run.

Synthetic data (said in the report): stories from a Zipf vocabulary, random unit vectors,
readers whose histories cluster around 1-3 random "interest" stories. The server runs in a
child process; the client drives it over loopback from this one.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

from benchmarks.api_bench import (
    DIM,
    REPO,
    bulk_fill,
    percentile_ms,
    start_server,
    vm_kib,
)


async def _fill_events(store, ids: list[int], readers: int, per_reader: int, rng) -> int:
    """Histories: each reader reads around a few anchor stories (ids near them), over 20 days."""
    from sqlalchemy import insert

    from aggregator.schema import EventRow, ReaderRow
    from aggregator.store import utcnow

    now = utcnow()
    n = 0
    async with store.engine.begin() as conn:
        await conn.execute(insert(ReaderRow), [
            {"id": f"r{r}", "preferences": None, "created_at": now, "last_seen_at": now}
            for r in range(readers)])
        rows = []
        for r in range(readers):
            anchors = rng.choice(len(ids), size=int(rng.integers(1, 4)), replace=False)
            for j in range(per_reader):
                a = anchors[j % len(anchors)]
                sid = ids[min(len(ids) - 1, max(0, a + int(rng.integers(-50, 50))))]
                at = now - timedelta(seconds=float(rng.uniform(0, 20 * 86400)))
                rows.append({"event_key": f"b:{r}:{j}", "reader_id": f"r{r}", "story_id": sid,
                             "type": "click" if j % 3 else "read", "dwell_s": None, "at": at})
            if len(rows) >= 20_000:
                await conn.execute(insert(EventRow), rows)
                n += len(rows)
                rows = []
        if rows:
            await conn.execute(insert(EventRow), rows)
            n += len(rows)
    return n


def _serve(n: int, readers: int, per_reader: int, tmp: str, conn) -> None:
    asyncio.run(_main(n, readers, per_reader, Path(tmp), conn))


async def _main(n, readers, per_reader, tmp, conn) -> None:

    from aggregator.settings import load_settings
    from api.app import create_app
    from api.services import build
    from recommender.embed import HashingEmbedder

    settings = load_settings(REPO / "config" / "tidings.toml", env={
        "TIDINGS_DATA_DIR": str(tmp), "TIDINGS_INDEX_EMBEDDER": "hash", "TIDINGS_LOG_LEVEL": "warning",
        "TIDINGS_API_EVENTS_PER_MINUTE": "0",
        "TIDINGS_RELATED_MIN_RELEVANCE": "0"})  # synthetic vectors: see api_bench._settings
    emb = HashingEmbedder(DIM)
    svc = await build(settings, serve=True, index=True, owner_of_files=True, embedder=emb)
    rng = np.random.default_rng(7)
    ids, _ = await bulk_fill(svc.store, n, emb.recipe, rng)
    n_events = await _fill_events(svc.store, ids, readers, per_reader, rng)
    await svc.corpus.start()
    t0 = time.perf_counter()
    await svc.feeds.crowd()  # the crowd cache (trending, CTR, co-reads) is built once per TTL
    crowd_s = time.perf_counter() - t0
    port, server, task = await start_server(create_app(svc))
    conn.send({"port": port, "ids": ids, "events": n_events, "crowd_build_s": crowd_s,
               "rss_kib": vm_kib()})
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)
    conn.send({"rss_end_kib": vm_kib()})
    server.should_exit = True
    await task
    await svc.close()


async def _drive(port: int, ids: list[int], readers: int, requests: int, budget_s: float) -> dict:
    import httpx

    rng = np.random.default_rng(3)
    out: dict = {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as c:
        async def timed(path, **params):
            t = time.perf_counter()
            r = await c.get(path, params=params)
            assert r.status_code == 200, r.text[:200]
            return time.perf_counter() - t

        for kind, make in (
            ("feed", lambda: (f"/v1/readers/r{int(rng.integers(readers))}/feed", {"k": 20})),
            ("feed_cold", lambda: (f"/v1/readers/new{int(rng.integers(10**9))}/feed", {"k": 20})),
            ("related", lambda: (f"/v1/stories/{int(rng.choice(ids))}/related", {"k": int(rng.integers(3, 9))})),
        ):
            lat = []
            stop = time.perf_counter() + budget_s
            for _ in range(requests):
                path, params = make()
                lat.append(await timed(path, **params))
                if time.perf_counter() > stop:
                    break
            out[kind] = {"n": len(lat), "p50_ms": percentile_ms(lat, 50), "p99_ms": percentile_ms(lat, 99)}

        # Ingestion: batches of 100 events through POST /v1/events, 4 clients at once.
        async def post_batches(worker: int, batches: int) -> int:
            sent = 0
            for b in range(batches):
                evs = [{"reader": f"ing{worker}-{b}-{i % 10}", "story_id": int(rng.choice(ids)),
                        "type": "click" if i % 2 else "impression"} for i in range(100)]
                r = await c.post("/v1/events", json={"events": evs})
                assert r.status_code == 202, r.text[:200]
                sent += 100
            return sent

        t0 = time.perf_counter()
        sent = sum(await asyncio.gather(*(post_batches(w, 10) for w in range(4))))
        wall = time.perf_counter() - t0
        out["events_accepted_per_s"] = round(sent / wall)
    return out


def run(n: int = 100_000, readers: int = 10_000, per_reader: int = 20, *, requests: int = 200,
        budget_s: float = 60.0) -> dict:
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    with tempfile.TemporaryDirectory(prefix="tidings-feed-bench-") as tmp:
        proc = ctx.Process(target=_serve, args=(n, readers, per_reader, tmp, child), daemon=True)
        proc.start()
        # A child that dies before answering would leave recv() waiting for ever.
        while not parent.poll(1.0):
            if not proc.is_alive():
                raise RuntimeError(f"feed benchmark server exited with {proc.exitcode}")
        info = parent.recv()
        try:
            res = asyncio.run(_drive(info["port"], info["ids"], readers, requests, budget_s))
        finally:
            parent.send("stop")
            end = parent.recv()
            proc.join(60)
    return {"stories": n, "readers": readers, "events": info["events"],
            "crowd_build_s": round(info["crowd_build_s"], 2), "rss_mib": round(info["rss_kib"] / 1024),
            "rss_end_mib": round(end["rss_end_kib"] / 1024), **res}


if __name__ == "__main__":
    import json
    import sys

    args = [int(a) for a in sys.argv[1:]]
    print(json.dumps(run(*args), indent=2))
