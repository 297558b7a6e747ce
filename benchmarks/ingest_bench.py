"""End-to-end ingest rate: stories/s from fetched feed to searchable, against the embedder alone.

The pipeline is the product's own `run` role (`api.runner.run_roles`: collector, indexer and
API in one process, default embedder), fed by the captured feeds of ../shared/data/news-feeds
served on loopback in per-source variants (the helpers of `collect_bench`). A story counts as
searchable when the API's corpus holds it (`/healthz` "indexed"); the clock starts at the
first story's `collected_at` (the start of its source's fetch) and stops when the corpus
reaches its final size, read from the corpus's own follow log (exact; `/healthz`, polled
every `poll_s` while no model call runs, confirms the final size and stops the run). The
baseline is the same embedder, in the same run, encoding exactly the texts of the searchable
stories (`story_text`, as the indexer builds them) in one call.

Besides the ratio, each run says where the time went: the model's calls (stories each, rate),
its idle time before the first call, between calls and after the last, and the CPU seconds of
the event loop, the model's threads and the rest inside the timed window.

    .venv/bin/python -m benchmarks.ingest_bench [n_sources] [poll_s]
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
import threading
import time
from datetime import UTC
from pathlib import Path

from benchmarks.api_bench import _free_port
from benchmarks.collect_bench import FEEDS_DIR, _serve, _specs, source_bodies
from recommender.onnx_embed import STREAM_THREAD_NAME

REPO = Path(__file__).resolve().parents[1]
GOAL_RATIO = 0.90
EMBEDDER = "minilm-int8"
POLL_S = 0.5  # /healthz poll: confirms the end and stops the run; the end time is exact


def _sources_toml(specs, path: Path) -> None:
    # One round only: the interval outlasts the benchmark.
    rows = [f'[[source]]\nname = "{s.name}"\nurl = "{s.url}"\ncategory = "bench"\n'
            f'kind = "feed"\ninterval = "24h"\n' for s in specs]
    path.write_text("\n".join(rows), encoding="utf-8")


def _seed_model(data_dir: Path, name: str = EMBEDDER) -> None:
    """Reuse the model files built once under ~/.cache (and the runtime chosen there, when the
    embedder picks one), so the timed run never builds, races or re-chooses."""
    from recommender.embed import make_embedder

    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tidings" / "models"
    make_embedder(name, cache_dir=cache)
    for src in cache.glob(f"{name}*"):
        if src.is_dir():
            shutil.copytree(src, data_dir / "models" / src.name, dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns(".build*", "*.tmp"))


def _stat_cpu(path: str, tick: int) -> float:
    """utime + stime of a /proc stat file, in seconds."""
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick


def _thread_cpu() -> dict[int, float]:
    """CPU seconds used so far by each thread of this process (Linux /proc), by native id."""
    out: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError):
        for tid in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError, IndexError, ValueError):
                out[int(tid)] = _stat_cpu(f"/proc/self/task/{tid}/stat", tick)
    return out


def _children() -> list[int]:
    """The pids of this process's live child processes started by multiprocessing: the
    collector's parse workers and the benchmark's feed server. ~2 us, where psutil's
    `children()` scans every process on the machine (each /proc/PID/stat for its parent):
    ~1.5 ms, which at 10 samples a second took ~0.3 s of CPU per run (and the GIL) that
    the pipeline paid and the embedder alone did not, ~0.15 s of the 8 s measured."""
    return [p.pid for p in mp.active_children() if p.pid is not None]


def _children_cpu(pids: list[int]) -> dict[int, float]:
    """CPU seconds used so far by each of `pids` still alive (the collector's parse workers,
    the benchmark's feed server), by pid."""
    out: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            out[pid] = _stat_cpu(f"/proc/{pid}/stat", tick)
    return out


class _CpuSampler:
    """Per-thread CPU of this process sampled every `every_s`, to say who used the cores
    during a window: the event loop (collector, API, saves, follow), the thread that called
    the model, other Python threads (aiosqlite, to_thread), and threads Python does not know
    (onnxruntime's pool, OpenMP); and of this process's children (the collector's parse
    workers, the feed server), which take the same two cores."""

    def __init__(self, every_s: float = 0.1, feed_server_pid: int | None = None):
        self.every_s = every_s
        self.feed_server_pid = feed_server_pid
        self.samples: list[tuple[float, dict[int, float], dict[int, float]]] = []
        self.python_ids: set[int] = set()
        # The embedder's stream threads: they pad, run and pool each batch, work the embedder
        # alone does too (its process CPU), so they count as the model's, not as other work.
        self.stream_ids: set[int] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), _thread_cpu(), _children_cpu(_children())))
            for t in threading.enumerate():
                if t.native_id:
                    self.python_ids.add(t.native_id)
                    if t.name.startswith(STREAM_THREAD_NAME):
                        self.stream_ids.add(t.native_id)
            self._stop.wait(self.every_s)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.samples.append((time.time(), _thread_cpu(), _children_cpu(_children())))

    def window(self, start: float, end: float, model_ids: set[int]) -> dict[str, float]:
        """CPU seconds per kind of thread between the samples nearest to `start` and `end`."""
        if not self.samples:
            return {}
        _, a, kids_a = min(self.samples, key=lambda s: abs(s[0] - start))
        _, b, kids_b = min(self.samples, key=lambda s: abs(s[0] - end))
        main = threading.main_thread().native_id
        out = {"event_loop": 0.0, "model_caller": 0.0, "other_python": 0.0, "non_python": 0.0,
               "parse_workers": 0.0, "feed_server": 0.0}
        for tid, cpu in b.items():
            if tid == self._thread.native_id:
                continue  # the sampler itself
            if tid == main:
                kind = "event_loop"
            elif tid in model_ids or tid in self.stream_ids:
                kind = "model_caller"
            else:
                kind = "other_python" if tid in self.python_ids else "non_python"
            out[kind] += cpu - a.get(tid, 0.0)
        # Other processes on the same cores: the collector's parse workers, and the feed
        # server (the benchmark's stand-in for the publishers' sites).
        for pid, cpu in kids_b.items():
            kind = "feed_server" if pid == self.feed_server_pid else "parse_workers"
            out[kind] += cpu - kids_a.get(pid, 0.0)
        return {k: round(v, 2) for k, v in out.items()}


class _Trace:
    """Benchmark-only wrappers that log when the indexer and the model were busy, and when
    the corpus (what `/healthz` counts as "indexed") grew."""

    def __init__(self):
        self.claims: list[tuple[float, int]] = []  # (when, stories) per non-empty claim
        self.runs: list[tuple[float, float]] = []  # (start, end) per Indexer.run that embedded
        self.encodes: list[tuple[int, float]] = []  # (texts, seconds) per model call
        self.encoding = 0  # model calls in flight
        self.encode_spans: list[tuple[float, float]] = []  # wall clock of each model call
        self.model_ids: set[int] = set()  # native ids of the threads that called the model
        self.follow_s = 0.0  # event-loop time making saved vectors searchable
        self.indexed: list[tuple[float, int]] = [(0.0, 0)]  # (when, corpus size) after follows
        self.warm_at: float | None = None  # when the model's warm-up (api.runner) ended
        self.warming = False  # the warm-up's model calls are not the pipeline's
        self.embedder = ""  # class and recipe of the pipeline's embedder
        self.error: Exception | None = None  # what a model call raised, if one did

    def install(self):
        import api.runner as runner
        import api.services as services
        from aggregator.store import Store
        from recommender.corpus import Corpus
        from recommender.indexer import Indexer

        run, claim = Indexer.run, Store.claim_embed_backlog
        make, follow, trace = services.make_embedder, Corpus.follow, self
        warm_up = runner.warm_up

        def traced_make(*args, **kwargs):
            # Whatever class the factory returns (the int8 runtime is chosen per machine):
            # its instance's encode is wrapped.
            emb = make(*args, **kwargs)
            encode = emb.encode
            trace.embedder = f"{type(emb).__name__} {emb.recipe}"

            def traced_encode(texts, batch_size=32):
                t0, w0 = time.perf_counter(), time.time()
                trace.model_ids.add(threading.get_native_id())
                trace.encoding += 1
                try:
                    return encode(texts, batch_size)
                except Exception as e:
                    trace.error = e  # the indexer would retry it forever: the run stops on it
                    raise
                finally:
                    trace.encoding -= 1
                    if not trace.warming:
                        trace.encodes.append((len(texts), time.perf_counter() - t0))
                        trace.encode_spans.append((w0, time.time()))

            emb.encode = traced_encode
            return emb

        def traced_warm_up(embedder):
            trace.warming = True
            try:
                return warm_up(embedder)
            finally:
                trace.warming, trace.warm_at = False, time.time()

        async def traced_follow(corpus):
            t0 = time.perf_counter()
            try:
                return await follow(corpus)
            finally:
                trace.follow_s += time.perf_counter() - t0
                trace.indexed.append((time.time(), len(corpus)))

        async def traced_run(indexer, *args, **kwargs):
            t0 = time.time()
            n = await run(indexer, *args, **kwargs)
            if n:
                trace.runs.append((t0, time.time()))
            return n

        async def traced_claim(store, *args, **kwargs):
            t0 = time.time()
            jobs = await claim(store, *args, **kwargs)
            if jobs:
                trace.claims.append((t0, len(jobs)))
            return jobs

        Indexer.run, Store.claim_embed_backlog = traced_run, traced_claim
        services.make_embedder, Corpus.follow = traced_make, traced_follow
        runner.warm_up = traced_warm_up
        return lambda: (setattr(Indexer, "run", run), setattr(Store, "claim_embed_backlog", claim),
                        setattr(services, "make_embedder", make), setattr(Corpus, "follow", follow),
                        setattr(runner, "warm_up", warm_up))


async def _pipeline(settings, port: int, site_port: int, n_sources: int,
                    poll_s: float = POLL_S, feed_server_pid: int | None = None) -> dict:
    """Run the `run` role until every collected story is searchable; timings and counts."""
    import httpx
    from sqlalchemy import func, select

    from aggregator.schema import StoryRow
    from aggregator.store import Store
    from api.runner import run_roles
    from tests.localsite import LoopbackResolver

    trace = _Trace()
    recipe = _recipe(settings)  # reads the model files: not inside the timed window
    uninstall = trace.install()
    ready = asyncio.Event()
    task = asyncio.create_task(run_roles(
        settings, serve=True, collect=True, index=True, host="127.0.0.1", port=port,
        resolver_factory=lambda: LoopbackResolver(port=site_port), ready=ready))
    probe = Store(settings.database_url)
    samples: list[tuple[float, int]] = []  # (wall clock, corpus size) seen by /healthz
    cpu = _CpuSampler(feed_server_pid=feed_server_pid)
    cpu.__enter__()
    try:
        await asyncio.wait_for(ready.wait(), 120)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 1800
            while time.monotonic() < deadline:
                if task.done():
                    task.result()  # raises what killed the run
                    raise RuntimeError("the run role ended early")
                if trace.error is not None:
                    raise RuntimeError("the embedder failed in the pipeline") from trace.error
                await asyncio.sleep(poll_s)
                if trace.encoding:
                    # The end comes after the model's last call, so no poll is needed while
                    # one runs. Each poll costs the pipeline's event loop the request's both
                    # ends and the health read: ~2 ms of CPU alone, more beside the model, on
                    # the ~15 polls of a run at 0.5 s, CPU the embedder alone never spends.
                    continue
                r = await client.get("/healthz")
                samples.append((time.time(), int(r.json().get("indexed") or 0)))
                # The database is asked only when the model is idle and the corpus holds all it
                # embedded: these queries run on the pipeline's event loop and would take CPU
                # from it (~0.3 s per run when asked on every poll).
                embedded = sum(n for n, _ in trace.encodes)
                if trace.encoding or not embedded or samples[-1][1] < embedded:
                    continue
                sources = await probe.list_sources()
                fetched = sum(1 for s in sources if s.last_check_at)
                if fetched >= n_sources and await probe.backlog_size(recipe) == 0:
                    async with probe.session() as s:
                        searchable = int(await s.scalar(
                            select(func.count()).select_from(StoryRow)
                            .where(StoryRow.duplicate_of.is_(None))) or 0)
                    if samples[-1][1] >= searchable:
                        break
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
        cpu.__exit__()
    final = samples[-1][1]
    # The end: the moment the API's corpus reached its final size, from the follow log (the
    # /healthz samples, every poll_s, only confirm it; polling at 10/s cost the event loop
    # ~0.5 s of CPU per run, taken from the model on 2 cores).
    end = next(t for t, n in trace.indexed if n >= final)
    start, last_source = (_ts(first), _ts(collected_until))
    spans, claims, runs = trace.encode_spans, trace.claims, trace.runs
    return {"searchable": final, "stories_stored": total, "elapsed_s": end - start,
            "elapsed_by_poll_s": next(t for t, n in samples if n >= final) - start,
            "rows": [tuple(r) for r in rows],
            # Where the time went: model busy, indexer busy around it (claim, save), idle.
            "encode_s": busy_s(spans), "indexer_busy_s": sum(e - s for s, e in runs),
            "follow_s": trace.follow_s,
            "chunk_rates": [round(n / t, 1) for n, t in trace.encodes],
            "first_embed_after_s": claims[0][0] - start if claims else None,
            "model_loaded_after_s": trace.warm_at - start if trace.warm_at else None,
            "collection_done_after_s": last_source - start,
            "last_chunk_done_after_s": runs[-1][1] - start if runs else None,
            "chunks": len(claims), "claims": [n for _, n in claims],
            "mean_chunk": sum(n for _, n in claims) / max(len(claims), 1),
            "encode_calls": [n for n, _ in trace.encodes],
            # Model idle inside the window: before the first call, between calls, after.
            "idle_before_s": spans[0][0] - start if spans else None,
            "idle_between_s": (max(e for _, e in spans) - min(b for b, _ in spans) - busy_s(spans)
                               if spans else 0.0),
            "idle_after_s": end - spans[-1][1] if spans else None,
            "cpu_s": cpu.window(start, end, trace.model_ids), "embedder_used": trace.embedder}


def busy_s(spans: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one of `spans`: the model's busy time, with the indexer's
    two pieces in flight counted once where their calls overlap."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


def _ts(at) -> float:
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def _recipe(settings) -> str:
    # The recipe the run role's embedder stamps on its vectors (same factory, same files),
    # per data dir: each round has its own.
    from api.services import configured_embedder

    cache = _recipe.__dict__.setdefault("cache", {})
    if settings.data_dir not in cache:
        cache[settings.data_dir] = configured_embedder(settings).recipe
    return cache[settings.data_dir]


def standalone_rate(settings, texts: list[str], cpu_out: list | None = None) -> float:
    """The embedder alone on the same texts, one call, configured and warmed as the indexer's.
    Its process CPU seconds are appended to `cpu_out` (what the model alone costs)."""
    from api.services import configured_embedder
    from recommender.embed import warm_up

    emb = configured_embedder(settings)
    warm_up(emb)  # as the run role does before its first claim (api.runner.index_loop)
    c0, t0 = time.process_time(), time.perf_counter()
    emb.encode(texts, settings.index.batch_size)
    elapsed = time.perf_counter() - t0
    if cpu_out is not None:
        cpu_out.append(round(time.process_time() - c0, 2))
    return len(texts) / elapsed


def run(n_sources: int = 40, *, rounds: int = 3, poll_s: float = POLL_S) -> dict:
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
                alone_cpu: list[float] = []
                before = standalone_rate(settings, texts, alone_cpu) if texts else None
                got = asyncio.run(_pipeline(settings, _free_port(), site_port, n_sources, poll_s,
                                            server.pid))
                # Every round collects the same feeds, hence the same stories.
                texts = [story_text(t, s or "", x or "") for t, s, x in got.pop("rows")]
                after = standalone_rate(settings, texts, alone_cpu)
                alone = (before + after) / 2 if before else after
                rate = got["searchable"] / got["elapsed_s"]
                runs.append({**got, "pipeline_rate": rate, "standalone_rate": alone,
                             "standalone_before_after": [before, after], "ratio": rate / alone,
                             "standalone_cpu_s": alone_cpu,
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
            "ratio": ratio, "goal_ratio": GOAL_RATIO, "pass": ratio >= GOAL_RATIO, "poll_s": poll_s,
            "load_avg": os.getloadavg()}


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 40
    poll = float(sys.argv[2]) if len(sys.argv) > 2 else POLL_S
    print(json.dumps(run(n, poll_s=poll), indent=2, default=str))
