"""Latency and throughput of GET /v1/stories/{id}/related over real HTTP, per corpus size.

Synthetic data, say so wherever the figures go: stories with random titles and texts drawn
from a made-up Zipf vocabulary, and random 384-d unit vectors written straight to the store
under the hashing embedder's recipe (nothing is embedded). The vectors have no structure, so
these figures are about cost, never about quality.

The API runs in its own process (built with api.services.build, served by uvicorn on
loopback, the exact FAISS layout below hnsw_threshold); this process is the client (httpx).
Every request asks about a different story, so the block cache never answers: each is a full
related computation. Cached throughput is measured separately on a few repeated ids.
Baselines measured in the API process in the same run: exact FAISS search alone (the n=100
candidates the engine asks for k=5, and k=5 itself) and the whole related flow called
in-process without HTTP.

    .venv/bin/python -m benchmarks.api_bench [10000 100000 ...]
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import socket
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DIM = 384
SITES = 50
CATEGORIES = ("world", "politics", "business", "tech", "science", "sport", "culture", "health")


def percentile_ms(seconds: list[float], q: float) -> float:
    return round(float(np.percentile(np.asarray(seconds) * 1000, q)), 2)


def vm_kib(pid: int | str = "self", field: str = "VmRSS") -> int:
    """A memory figure from /proc/<pid>/status, in KiB (no psutil in the venv)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ber", "dan", "gor", "hal",
                 "jun", "kel", "mar", "nor", "pel", "quin", "ros", "tam", "ul", "wen", "yar", "zed"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables, size=int(rng.integers(2, 4)))))
    return sorted(words)


def synthetic_drafts(n: int, seed: int = 0):
    """n StoryDrafts from a Zipf vocabulary: 6-12 word titles, 20-40 word summaries, 60-150 word texts."""
    from aggregator.model import StoryDraft
    from aggregator.store import utcnow

    rng = np.random.default_rng(seed)
    vocab = np.asarray(vocabulary(5000, rng))
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    weights /= weights.sum()
    now = utcnow()
    lengths = rng.integers([6, 20, 60], [13, 41, 151], size=(n, 3))
    picks = rng.choice(len(vocab), size=int(lengths.sum()), p=weights)
    ages_s = rng.uniform(0, 30 * 86400, size=n)
    pos = 0
    out = []
    for i in range(n):
        parts = []
        for length in lengths[i]:
            parts.append(" ".join(vocab[picks[pos:pos + length]]))
            pos += length
        title, summary, text = parts
        site = i % SITES
        out.append(StoryDraft(
            url=f"https://site{site}.example/story/{i}", title=title.capitalize(),
            summary=summary.capitalize() + ".", text=text.capitalize() + ".",
            published_at=now - timedelta(seconds=float(ages_s[i])), site=f"site{site}.example",
            source=f"src{site}", category=CATEGORIES[i % len(CATEGORIES)]))
    return out


async def bulk_fill(store, drafts, recipe: str, rng: np.random.Generator) -> list[int]:
    """Insert stories and random unit vectors with plain multi-row INSERTs.

    Set-up, not measured: `upsert_stories` + `save_vectors` do the same row by row through the
    ORM (dedup checks, change log), which takes minutes at 100k on this machine. The corpus
    loads from the vectors table, so the change log is not needed.
    """
    from sqlalchemy import insert, select

    from aggregator.schema import StoryRow, VectorRow
    from aggregator.store import sort_time, utcnow

    now = utcnow()
    async with store.engine.begin() as conn:
        for i in range(0, len(drafts), 10_000):
            await conn.execute(insert(StoryRow), [{
                "url": d.url, "original_url": d.url, "title": d.title, "summary": d.summary,
                "text": d.text, "author": "", "image_url": "", "published_at": d.published_at,
                "collected_at": now, "updated_at": now, "sort_at": sort_time(d.published_at, now),
                "site": d.site, "source": d.source, "category": d.category, "content_hash": "",
                "duplicate_of": None, "embed_version": 1} for d in drafts[i:i + 10_000]])
        ids = sorted((await conn.execute(select(StoryRow.id))).scalars().all())
        for i in range(0, len(ids), 10_000):
            chunk = ids[i:i + 10_000]
            vecs = rng.standard_normal((len(chunk), DIM)).astype(np.float32)
            vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
            await conn.execute(insert(VectorRow), [
                {"story_id": sid, "recipe": recipe, "embed_version": 1, "vector": v.tobytes(),
                 "embedded_at": now} for sid, v in zip(chunk, vecs, strict=True)])
    return ids


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve_stack(n: int, tmp: str, conn, baseline_queries: int) -> None:
    """Child process: fill a store with n synthetic stories, load the corpus, serve the API."""
    asyncio.run(_stack_main(n, Path(tmp), conn, baseline_queries))


async def _stack_main(n: int, tmp: Path, conn, baseline_queries: int) -> None:
    import uvicorn

    from aggregator.settings import load_settings
    from api.app import create_app
    from api.services import build
    from recommender.embed import HashingEmbedder
    from recommender.related import Filters

    settings = load_settings(REPO / "config" / "tidings.toml", env={
        "TIDINGS_DATA_DIR": str(tmp), "TIDINGS_INDEX_EMBEDDER": "hash", "TIDINGS_LOG_LEVEL": "warning"})
    embedder = HashingEmbedder(DIM)
    svc = await build(settings, serve=True, index=True, owner_of_files=True, embedder=embedder)
    rng = np.random.default_rng(n)
    t0 = time.perf_counter()
    ids = await bulk_fill(svc.store, synthetic_drafts(n, seed=n), embedder.recipe, rng)
    fill_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    await svc.corpus.start()
    start_s = time.perf_counter() - t0
    rss_loaded = vm_kib()

    # Baselines in this process: FAISS alone, then the whole related flow without HTTP.
    vindex = svc.corpus.vindex
    sample = rng.choice(ids, size=baseline_queries, replace=False)
    faiss_100, faiss_5 = [], []
    for sid in sample:
        v = vindex.get(np.asarray([sid], dtype=np.int64))[0]
        t = time.perf_counter()
        vindex.search(v, 100)
        faiss_100.append(time.perf_counter() - t)
        t = time.perf_counter()
        vindex.search(v, 5)
        faiss_5.append(time.perf_counter() - t)
    flow = []
    for sid in sample[: baseline_queries // 2]:
        t = time.perf_counter()
        await svc.related.for_story(int(sid), k=5, filters=Filters())
        flow.append(time.perf_counter() - t)

    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(svc), host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="off", access_log=False))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    conn.send({
        "port": port, "ids": ids, "fill_s": fill_s, "corpus_start_s": start_s,
        "rss_loaded_kib": rss_loaded, "index_kind": getattr(vindex, "kind", type(vindex).__name__),
        "faiss_n100_p50_ms": percentile_ms(faiss_100, 50), "faiss_n100_p99_ms": percentile_ms(faiss_100, 99),
        "faiss_k5_p50_ms": percentile_ms(faiss_5, 50), "faiss_k5_p99_ms": percentile_ms(faiss_5, 99),
        "inprocess_p50_ms": percentile_ms(flow, 50), "inprocess_p99_ms": percentile_ms(flow, 99),
    })
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # wait for "stop"
    conn.send({"rss_end_kib": vm_kib(), "rss_peak_kib": vm_kib(field="VmHWM")})
    server.should_exit = True
    await task
    await svc.close()


async def _load(port: int, ids: list[int], *, latency_n: int, throughput_n: int,
                cached_n: int, concurrency: int, seed: int, phase_budget_s: float) -> dict:
    """Serial, concurrent and cached phases; each stops early after `phase_budget_s`."""
    import httpx

    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.permutation(ids)[: latency_n + throughput_n]]
    errors = 0

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
        async def get(sid: int) -> float:
            nonlocal errors
            t = time.perf_counter()
            r = await client.get(f"/v1/stories/{sid}/related", params={"k": 5})
            elapsed = time.perf_counter() - t
            if r.status_code != 200 or len(r.json()["related"]) == 0:
                errors += 1
            return elapsed

        for sid in order[:5]:  # connection and code paths warm
            await get(sid)
        serial: list[float] = []
        deadline = time.perf_counter() + phase_budget_s
        for sid in order[5:latency_n]:
            serial.append(await get(sid))
            if time.perf_counter() > deadline:
                break

        async def drive(todo: list[int]) -> tuple[float, list[float]]:
            queue = list(reversed(todo))
            lat: list[float] = []
            stop_at = time.perf_counter() + phase_budget_s

            async def worker() -> None:
                while queue and time.perf_counter() < stop_at:
                    lat.append(await get(queue.pop()))

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - t0, lat

        wall, concurrent = await drive(order[latency_n:])
        hot = order[:16]  # answered above: the block cache holds them now
        cached_wall, cached = await drive([hot[i % len(hot)] for i in range(cached_n)])
    return {
        "p50_ms": percentile_ms(serial, 50), "p99_ms": percentile_ms(serial, 99),
        "serial_requests": len(serial),
        "rps": round(len(concurrent) / wall, 1),
        "concurrent_p50_ms": percentile_ms(concurrent, 50),
        "concurrent_p99_ms": percentile_ms(concurrent, 99),
        "concurrent_requests": len(concurrent), "concurrency": concurrency,
        "cached_rps": round(len(cached) / cached_wall, 1),
        "cached_p50_ms": percentile_ms(cached, 50),
        "errors": errors,
    }


def run(sizes: tuple[int, ...] = (10_000, 100_000), *, latency_n: int = 300,
        throughput_n: int = 600, cached_n: int = 1000, concurrency: int = 8,
        baseline_queries: int = 300, phase_budget_s: float = 45.0) -> list[dict]:
    """One row per corpus size."""
    rows = []
    ctx = mp.get_context("spawn")
    for n in sizes:
        parent, child = ctx.Pipe()
        with tempfile.TemporaryDirectory(prefix="tidings-api-bench-") as tmp:
            proc = ctx.Process(target=_serve_stack, args=(n, tmp, child, baseline_queries),
                               daemon=True)
            proc.start()
            try:
                info = parent.recv()
                ids = info.pop("ids")
                row = {"data": "synthetic stories + random unit vectors", "n": n, **info}
                row.update(asyncio.run(_load(
                    info["port"], ids, latency_n=latency_n, throughput_n=throughput_n,
                    cached_n=cached_n, concurrency=concurrency, seed=n,
                    phase_budget_s=phase_budget_s)))
                row["rss_after_load_kib"] = vm_kib(proc.pid)
                parent.send("stop")
                row.update(parent.recv())
            finally:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.terminate()
        row.pop("port", None)
        rows.append(row)
    return rows


if __name__ == "__main__":
    sizes = tuple(int(a) for a in sys.argv[1:]) or (10_000, 100_000)
    for r in run(sizes):
        print(json.dumps(r))
