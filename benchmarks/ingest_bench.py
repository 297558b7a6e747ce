"""End-to-end ingest rate: stories/s from fetched feed to searchable, against the embedder alone.

The pipeline is the product's own `run` role (`api.runner.run_roles`: collector, indexer and
API in one process, default embedder), fed by the captured feeds of ../shared/data/news-feeds
served on loopback in per-source variants (the helpers of `collect_bench`). A story counts as
searchable when the API's corpus holds it (`/healthz` "indexed", polled); the clock starts at
the first story's `collected_at` (the start of its source's fetch) and stops when the corpus
reaches its final size. The baseline is the same embedder, in the same run, encoding exactly
the texts of the searchable stories (`story_text`, as the indexer builds them) in one call.

    .venv/bin/python -m benchmarks.ingest_bench [n_sources]
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing as mp
import os
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC
from pathlib import Path

from benchmarks.api_bench import _free_port
from benchmarks.collect_bench import FEEDS_DIR, _serve, _specs, source_bodies

REPO = Path(__file__).resolve().parents[1]
GOAL_RATIO = 0.90
EMBEDDER = "minilm-int8"


def _sources_toml(specs, path: Path) -> None:
    # One round only: the interval outlasts the benchmark.
    rows = [f'[[source]]\nname = "{s.name}"\nurl = "{s.url}"\ncategory = "bench"\n'
            f'kind = "feed"\ninterval = "24h"\n' for s in specs]
    path.write_text("\n".join(rows), encoding="utf-8")


def _seed_model(data_dir: Path, name: str = EMBEDDER) -> None:
    """Reuse the model built once under ~/.cache, so the timed run never builds it."""
    from recommender.onnx_embed import MANIFEST, MODEL_FILE, build_int8_model

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tidings" / "models"
    built = build_int8_model(cache / name)
    dst = data_dir / "models" / name
    dst.mkdir(parents=True, exist_ok=True)
    for f in (MODEL_FILE["int8"], MANIFEST["int8"]):
        shutil.copyfile(built.parent / f, dst / f)


class _Trace:
    """Benchmark-only wrappers that log when the indexer and the model were busy."""

    def __init__(self):
        self.chunks: list[tuple[float, float, int]] = []  # (start, end, stories) per claim
        self.encode_s = 0.0
        self.encodes: list[tuple[int, float]] = []  # (texts, seconds) per chunk
        self.follow_s = 0.0  # event-loop time making saved vectors searchable

    def install(self):
        from recommender.corpus import Corpus
        from recommender.indexer import Indexer
        from recommender.onnx_embed import OnnxEmbedder

        run_once, encode, follow, trace = Indexer.run_once, OnnxEmbedder.encode, Corpus.follow, self

        async def traced_follow(corpus):
            t0 = time.perf_counter()
            try:
                return await follow(corpus)
            finally:
                trace.follow_s += time.perf_counter() - t0

        async def traced_run_once(indexer, limit=None):
            t0 = time.time()
            n = await run_once(indexer, limit)
            if n:
                trace.chunks.append((t0, time.time(), n))
            return n

        def traced_encode(emb, texts, batch_size=32):
            t0 = time.perf_counter()
            try:
                return encode(emb, texts, batch_size)
            finally:
                if len(texts) > 1:  # not the warm-up
                    trace.encode_s += time.perf_counter() - t0
                    trace.encodes.append((len(texts), time.perf_counter() - t0))

        Indexer.run_once, OnnxEmbedder.encode = traced_run_once, traced_encode
        Corpus.follow = traced_follow
        return lambda: (setattr(Indexer, "run_once", run_once),
                        setattr(OnnxEmbedder, "encode", encode), setattr(Corpus, "follow", follow))


async def _pipeline(settings, port: int, site_port: int, n_sources: int) -> dict:
    """Run the `run` role until every collected story is searchable; timings and counts."""
    import httpx
    from sqlalchemy import func, select

    from aggregator.schema import StoryRow
    from aggregator.store import Store
    from api.runner import run_roles
    from tests.localsite import LoopbackResolver

    trace = _Trace()
    uninstall = trace.install()
    ready = asyncio.Event()
    task = asyncio.create_task(run_roles(
        settings, serve=True, collect=True, index=True, host="127.0.0.1", port=port,
        resolver_factory=lambda: LoopbackResolver(port=site_port), ready=ready))
    probe = Store(settings.database_url)
    samples: list[tuple[float, int]] = []  # (wall clock, corpus size)
    try:
        await asyncio.wait_for(ready.wait(), 120)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                if task.done():
                    task.result()  # raises what killed the run
                    raise RuntimeError("the run role ended early")
                r = await client.get("/healthz")
                samples.append((time.time(), int(r.json().get("indexed") or 0)))
                # The bench shares the run's event loop: the stop test (SQL) runs every 10th
                # sample only; the end time comes from the samples anyway.
                if len(samples) % 10:
                    await asyncio.sleep(0.1)
                    continue
                sources = await probe.list_sources()
                fetched = sum(1 for s in sources if s.last_check_at)
                if fetched >= n_sources and await probe.backlog_size(_recipe(settings)) == 0:
                    async with probe.session() as s:
                        searchable = int(await s.scalar(
                            select(func.count()).select_from(StoryRow)
                            .where(StoryRow.duplicate_of.is_(None))) or 0)
                    if samples[-1][1] >= searchable:
                        break
                await asyncio.sleep(0.1)
            else:
                raise TimeoutError("stories did not all become searchable within 30 min")
        async with probe.session() as s:
            first = await s.scalar(select(func.min(StoryRow.collected_at)))
            rows = (await s.execute(select(StoryRow.title, StoryRow.summary, StoryRow.text)
                                    .where(StoryRow.duplicate_of.is_(None)))).all()
            total = int(await s.scalar(select(func.count()).select_from(StoryRow)) or 0)
        # A source's last_check_at is stamped when its fetch, parse and store are done.
        collected_until = max(x.last_check_at for x in await probe.list_sources())
    finally:
        await probe.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        uninstall()
    final = samples[-1][1]
    end = next(t for t, n in samples if n >= final)
    start, last_source = (_ts(first), _ts(collected_until))
    busy = sum(e - s for s, e, _ in trace.chunks)
    return {"searchable": final, "stories_stored": total, "elapsed_s": end - start,
            "rows": [tuple(r) for r in rows],
            # Where the time went: model busy, indexer busy around it (claim, save), idle.
            "encode_s": trace.encode_s, "indexer_busy_s": busy, "follow_s": trace.follow_s,
            "chunk_rates": [round(n / t, 1) for n, t in trace.encodes],
            "first_embed_after_s": trace.chunks[0][0] - start if trace.chunks else None,
            "collection_done_after_s": last_source - start,
            "last_chunk_done_after_s": trace.chunks[-1][1] - start if trace.chunks else None,
            "chunks": len(trace.chunks),
            "mean_chunk": sum(n for *_, n in trace.chunks) / max(len(trace.chunks), 1)}


def _ts(at) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def _recipe(settings) -> str:
    # The recipe the run role's embedder stamps on its vectors (same factory, same file).
    from recommender.embed import make_embedder

    if not hasattr(_recipe, "cache"):
        _recipe.cache = make_embedder(settings.index.embedder,  # type: ignore[attr-defined]
                                      cache_dir=settings.data_dir / "models").recipe
    return _recipe.cache  # type: ignore[attr-defined]


def standalone_rate(settings, texts: list[str]) -> float:
    """The embedder alone on the same texts, one call, configured as the indexer's."""
    from recommender.embed import make_embedder

    emb = make_embedder(settings.index.embedder, threads=settings.index.threads or None,
                        cache_dir=settings.data_dir / "models")
    emb.encode(texts[:16], settings.index.batch_size)  # session load, first allocations
    t0 = time.perf_counter()
    emb.encode(texts, settings.index.batch_size)
    return len(texts) / (time.perf_counter() - t0)


def run(n_sources: int = 40, *, rounds: int = 3) -> dict:
    """`rounds` pipeline runs, each between two standalone runs on the same texts (the
    machine is shared: a baseline taken minutes away is not comparable); median ratio."""
    import logging

    from aggregator.settings import load_settings
    from recommender.embed import story_text

    if not FEEDS_DIR.is_dir():
        return {"skipped": f"feed data not found at {FEEDS_DIR}"}
    logging.getLogger("apscheduler").setLevel(logging.ERROR)
    bodies = source_bodies(n_sources)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(n_sources, str(FEEDS_DIR), child), daemon=True)
    server.start()
    runs = []
    texts: list[str] = []
    try:
        site_port = parent.recv()
        with tempfile.TemporaryDirectory(prefix="tidings-ingest-") as tmp:
            for i in range(rounds):
                data = Path(tmp) / f"run{i}"
                data.mkdir()
                _seed_model(data)
                _sources_toml(_specs(n_sources, 50, bodies), data / "sources.toml")
                settings = load_settings(REPO / "config" / "tidings.toml", env={
                    "TIDINGS_DATA_DIR": str(data), "TIDINGS_SOURCES_FILE": str(data / "sources.toml"),
                    "TIDINGS_INDEX_EMBEDDER": EMBEDDER, "TIDINGS_LOG_LEVEL": "warning"})
                before = standalone_rate(settings, texts) if texts else None
                got = asyncio.run(_pipeline(settings, _free_port(), site_port, n_sources))
                # Every round collects the same feeds, hence the same stories.
                texts = [story_text(t, s or "", x or "") for t, s, x in got.pop("rows")]
                after = standalone_rate(settings, texts)
                alone = (before + after) / 2 if before else after
                rate = got["searchable"] / got["elapsed_s"]
                runs.append({**got, "pipeline_rate": rate, "standalone_rate": alone,
                             "standalone_before_after": [before, after], "ratio": rate / alone,
                             "load_avg_1m": os.getloadavg()[0]})
        parent.send("stop")
        parent.recv()
    finally:
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()
    ratios = sorted(r["ratio"] for r in runs)
    ratio = ratios[len(ratios) // 2]
    return {"sources": n_sources, "embedder": EMBEDDER, "stories": runs[-1]["searchable"],
            "mean_words": sum(len(t.split()) for t in texts) / max(len(texts), 1),
            "runs": runs, "pipeline_rate": statistics.median(r["pipeline_rate"] for r in runs),
            "standalone_rate": statistics.median(r["standalone_rate"] for r in runs),
            "ratio": ratio, "goal_ratio": GOAL_RATIO, "pass": ratio >= GOAL_RATIO,
            "load_avg": os.getloadavg()}


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    print(json.dumps(run(n), indent=2, default=str))
