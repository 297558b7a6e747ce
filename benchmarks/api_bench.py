"""Latency and throughput of GET /v1/stories/{id}/related over real HTTP, per corpus size.

Synthetic data, say so wherever the figures go: stories with random titles and texts drawn
from a made-up Zipf vocabulary, and clustered 384-d unit vectors (as in vindex_bench: ~100 a
cluster, nearest-neighbour cosine ~0.6) written straight to the store under the hashing
embedder's recipe (nothing is embedded). The figures are about cost, never about quality.

Three processes: a filler writes the stories and vectors with multi-row INSERTs and measures the
baseline, exact FAISS search (`IndexFlatIP`, one thread) over the same vectors; the API process
(api.services.build, uvicorn on loopback, the index layout the configuration picks for the
size) loads the corpus and serves; this process is the client (aiohttp and httpx, see `_load`).
The fill runs apart so its garbage never counts in the API's memory. Every request asks about a different story, so the
block cache never answers: each is a full related computation. Cached throughput is measured
separately on a few repeated ids. Beside the story's block, in the same phases and API
process: searches (`GET /v1/search`, 2-4 words of the corpus's vocabulary) and blocks for a
short text (`POST /v1/related`), each about new words. Those embed their query with the
hashing embedder (next to nothing); what the shipped model would take is measured apart, in
this process once the API is gone (`query_embedding`). The API's per-client rate limits are
off: every request comes from this one client. Also measured in the API process: its own
index's search time, recall@10 of that index against the exact baseline, and the whole
related flow called in-process without HTTP.

    .venv/bin/python -m benchmarks.api_bench [10000 100000 1000000 ...]
"""

from __future__ import annotations

import asyncio
import functools
import json
import multiprocessing as mp
import socket
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
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


def search_times(search, queries) -> tuple[list[float], list[float]]:
    """Seconds per `search(query, 100)` (a block's candidates) and per `search(query, 5)`."""
    n100, k5 = [], []
    for q in queries:
        t = time.perf_counter()
        search(q, 100)
        n100.append(time.perf_counter() - t)
        t = time.perf_counter()
        search(q, 5)
        k5.append(time.perf_counter() - t)
    return n100, k5


def vocabulary(size: int, rng: np.random.Generator) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ber", "dan", "gor", "hal",
                 "jun", "kel", "mar", "nor", "pel", "quin", "ros", "tam", "ul", "wen", "yar", "zed"]
    words: set[str] = set()
    while len(words) < size:
        words.add("".join(rng.choice(syllables, size=int(rng.integers(2, 4)))))
    return sorted(words)


@functools.cache  # made once: every chunk of the corpus and every query draw from it
def zipf_vocabulary() -> tuple[np.ndarray, np.ndarray]:
    """The corpus's words (one vocabulary for every corpus) and each word's Zipf weight
    (1 / rank, summing to 1): how often the texts use it."""
    vocab = np.asarray(vocabulary(5000, np.random.default_rng(0)))
    weights = 1.0 / np.arange(1, len(vocab) + 1)
    return vocab, weights / weights.sum()


def search_queries(count: int, seed: int) -> list[str]:
    """`count` different searches of 2-4 words, drawn as the texts draw theirs (Zipf weights):
    the common words most stories carry, and so the longest lists of matches, come up as
    often as they do in the texts. Different, so the block cache never answers one."""
    vocab, weights = zipf_vocabulary()
    rng = np.random.default_rng(seed)
    out: dict[str, None] = {}  # ordered, without repeats
    while len(out) < count:
        words = rng.choice(vocab, size=int(rng.integers(2, 5)), replace=False, p=weights)
        out.setdefault(" ".join(words), None)
    return list(out)


def short_texts(count: int, seed: int) -> list[tuple[str, str]]:
    """(title, text) of `count` articles that are not in the corpus (a seed its chunks do not
    use): a 6-12 word headline and a summary's 20-40 words as the text."""
    return [(d.title, d.summary) for d in synthetic_drafts(count, seed=seed)]


def synthetic_drafts(n: int, seed: int = 0, first: int = 0):
    """n StoryDrafts from a Zipf vocabulary: 6-12 word titles, 20-40 word summaries, 60-150 word
    texts; `first` numbers their URLs (so chunks of one corpus never collide)."""
    from aggregator.model import StoryDraft
    from aggregator.store import utcnow

    vocab, weights = zipf_vocabulary()
    rng = np.random.default_rng(seed)
    now = utcnow()
    lengths = rng.integers([6, 20, 60], [13, 41, 151], size=(n, 3))
    picks = rng.choice(len(vocab), size=int(lengths.sum()), p=weights)
    ages_s = rng.uniform(0, 30 * 86400, size=n)
    pos = 0
    out = []
    for j in range(n):
        i = first + j
        parts = []
        for length in lengths[j]:
            parts.append(" ".join(vocab[picks[pos:pos + length]]))
            pos += length
        title, summary, text = parts
        site = i % SITES
        out.append(StoryDraft(
            url=f"https://site{site}.example/story/{i}", title=title.capitalize(),
            summary=summary.capitalize() + ".", text=text.capitalize() + ".",
            published_at=now - timedelta(seconds=float(ages_s[j])), site=f"site{site}.example",
            source=f"src{site}", category=CATEGORIES[i % len(CATEGORIES)]))
    return out


def clustered_chunks(n: int, rng: np.random.Generator, chunk: int = 10_000):
    """Clustered unit vectors (vindex_bench's recipe), `chunk` rows at a time."""
    centres = rng.standard_normal((max(1, n // 100), DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for i in range(0, n, chunk):
        rows = centres[rng.integers(0, len(centres), min(chunk, n - i))]
        rows += rng.standard_normal(rows.shape).astype(np.float32) / np.sqrt(DIM)
        yield rows / np.linalg.norm(rows, axis=1, keepdims=True)


async def bulk_fill(store, n: int, recipe: str, rng: np.random.Generator,
                    chunk: int = 10_000) -> tuple[list[int], np.ndarray]:
    """Insert n synthetic stories and clustered unit vectors with plain multi-row INSERTs.

    Set-up, not measured: `upsert_stories` + `save_vectors` do the same row by row through the
    ORM (dedup checks, change log), which takes minutes at 100k on this machine. The corpus
    loads from the vectors table, so the change log is not needed. Returns ids and vectors.
    """
    from sqlalchemy import insert, select

    from aggregator.names import name_key
    from aggregator.schema import StoryRow, VectorRow
    from aggregator.store import sort_time, utcnow

    now = utcnow()
    async with store.engine.begin() as conn:
        for i in range(0, n, chunk):
            drafts = synthetic_drafts(min(chunk, n - i), seed=n + i, first=i)
            await conn.execute(insert(StoryRow), [{
                "url": d.url, "original_url": d.url, "title": d.title, "summary": d.summary,
                "text": d.text, "author": "", "image_url": "", "published_at": d.published_at,
                "collected_at": now, "updated_at": now, "sort_at": sort_time(d.published_at, now),
                "site": d.site, "source": d.source, "category": d.category,
                "source_key": name_key(d.source), "category_key": name_key(d.category), "content_hash": "",
                "duplicate_of": None, "embed_version": 1} for d in drafts])
        ids = sorted((await conn.execute(select(StoryRow.id))).scalars().all())
        vectors = np.empty((len(ids), DIM), dtype=np.float32)
        for i, vecs in zip(range(0, len(ids), chunk), clustered_chunks(len(ids), rng, chunk),
                           strict=True):
            part = ids[i:i + chunk]
            vectors[i:i + len(part)] = vecs
            await conn.execute(insert(VectorRow), [
                {"story_id": sid, "recipe": recipe, "embed_version": 1, "vector": v.tobytes(),
                 "embedded_at": now} for sid, v in zip(part, vecs, strict=True)])
    return ids, vectors


def _settings(tmp: Path):
    from aggregator.settings import load_settings

    # Every request comes from this one client: the per-client limits (searches and texts are
    # charged as embeddings, 120 a minute by default) would answer most of them with a 429.
    # The relevance floor is set on the model's scale, not the hashing embedder's nor these
    # synthetic vectors': off, so every block holds its k cards as a real one does (it only
    # leaves stories out after the ranking, which runs in full either way).
    return load_settings(REPO / "config" / "tidings.toml", env={
        "TIDINGS_DATA_DIR": str(tmp), "TIDINGS_INDEX_EMBEDDER": "hash", "TIDINGS_LOG_LEVEL": "warning",
        "TIDINGS_API_RELATED_TEXT_PER_MINUTE": "0", "TIDINGS_API_RELATED_URL_PER_MINUTE": "0",
        "TIDINGS_API_EVENTS_PER_MINUTE": "0", "TIDINGS_RELATED_MIN_RELEVANCE": "0"})


def _fill(n: int, tmp: str, conn, baseline_queries: int, recall_queries: int) -> None:
    """Child process: fill the store, then time exact FAISS search over the same vectors."""
    asyncio.run(_fill_main(n, Path(tmp), conn, baseline_queries, recall_queries))


async def _fill_main(n: int, tmp: Path, conn, baseline_queries: int, recall_queries: int) -> None:
    import faiss

    from aggregator.store import Store
    from recommender.embed import HashingEmbedder

    settings = _settings(tmp)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.database_url)
    await store.migrate()
    rng = np.random.default_rng(n)
    t0 = time.perf_counter()
    ids, vectors = await bulk_fill(store, n, HashingEmbedder(DIM).recipe, rng)
    fill_s = time.perf_counter() - t0
    await store.close()
    exact = faiss.IndexFlatIP(DIM)
    exact.add(vectors)
    faiss.omp_set_num_threads(1)  # as the API searches one query at a time
    rows = rng.choice(len(ids), size=max(baseline_queries, recall_queries), replace=False)
    n100, k5 = search_times(lambda q, k: exact.search(q, k),
                            [vectors[r:r + 1] for r in rows[:baseline_queries]])
    recall_rows = rows[:recall_queries]
    faiss.omp_set_num_threads(2)
    _, top = exact.search(vectors[recall_rows], 10)
    id_arr = np.asarray(ids, dtype=np.int64)
    conn.send({
        "ids": ids, "fill_s": fill_s,
        "exact_n100_p50_ms": percentile_ms(n100, 50), "exact_n100_p99_ms": percentile_ms(n100, 99),
        "exact_k5_p50_ms": percentile_ms(k5, 50),
        "recall_ids": id_arr[recall_rows].tolist(), "exact_top10": id_arr[top].tolist(),
    })


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def start_server(app) -> tuple[int, object, asyncio.Task]:
    """Serve `app` with uvicorn on a free loopback port; returns once it accepts connections.
    Stop it with `server.should_exit = True` and await the task."""
    import uvicorn

    from api.app import server_config
    from api.runner import settle_heap

    settle_heap()  # as the run role and the workers do once they are about to serve
    port = _free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, lifespan="off"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    return port, server, task


def _serve_stack(n: int, tmp: str, conn, baseline_queries: int) -> None:
    """Child process: load the corpus from the filled store, measure in-process, serve the API."""
    asyncio.run(_stack_main(n, Path(tmp), conn, baseline_queries))


async def _stack_main(n: int, tmp: Path, conn, baseline_queries: int) -> None:

    from api.app import create_app
    from api.services import build
    from recommender.embed import HashingEmbedder
    from recommender.related import Filters

    job = conn.recv()  # ids, recall queries and their exact top-10 from the filler
    ids, rng = job["ids"], np.random.default_rng(n)
    svc = await build(_settings(tmp), serve=True, index=True, owner_of_files=True,
                      embedder=HashingEmbedder(DIM))
    t0 = time.perf_counter()
    await svc.corpus.start()
    start_s = time.perf_counter() - t0
    rss_loaded = vm_kib()

    # In this process: the API's own index alone and its recall against exact search, then
    # the whole related flow without HTTP.
    vindex = svc.corpus.vindex
    sample = rng.choice(ids, size=baseline_queries, replace=False)
    faiss_100, faiss_5 = search_times(
        vindex.search, [vindex.get(np.asarray([sid], dtype=np.int64))[0] for sid in sample])
    hits = 0
    for sid, exact in zip(job["recall_ids"], job["exact_top10"], strict=True):
        v = vindex.get(np.asarray([sid], dtype=np.int64))[0]
        hits += len({i for i, _ in vindex.search(v, 10)} & set(exact))
    recall = hits / (10 * max(1, len(job["recall_ids"])))
    flow = []
    for sid in sample[: baseline_queries // 2]:
        t = time.perf_counter()
        await svc.related.for_story(int(sid), k=5, filters=Filters())
        flow.append(time.perf_counter() - t)

    port, server, task = await start_server(create_app(svc))
    conn.send({
        "port": port, "corpus_start_s": round(start_s, 2), "recall_at_10": round(recall, 4),
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


@dataclass(frozen=True)
class Ask:
    """One request of the load: `kind` counts its errors; an answer that is not a 200 with a
    non-empty list under `listed` is one."""
    kind: str
    method: str
    path: str
    params: dict
    body: dict | None = None
    listed: str = "related"


def by_id(sid: int) -> Ask:
    return Ask("id", "GET", f"/v1/stories/{sid}/related", {"k": "5"})


def by_query(q: str) -> Ask:
    return Ask("search", "GET", "/v1/search", {"q": q, "k": "5"}, listed="items")


def by_text(title: str, text: str) -> Ask:
    return Ask("text", "POST", "/v1/related", {}, {"title": title, "text": text, "k": 5})


def error_reason(status: int, body: bytes, listed: str) -> str | None:
    """Why an answer counts as an error, None when it does not: "HTTP <status> <code>" (the
    code of the API's error body, `api/errors.py`) or "empty" (a 200 that lists nothing)."""
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if status != 200:
        code = data.get("error", {}).get("code", "") if isinstance(data, dict) else ""
        return f"HTTP {status} {code}".rstrip()
    if not isinstance(data, dict) or not data.get(listed):
        return "empty"
    return None


# Queries kept per (kind, reason) to show what failed: enough to rerun them by hand.
ERROR_EXAMPLES = 5


def error_figures(reasons: Counter[tuple[str, str]], examples: dict[tuple[str, str], list[str]],
                  kind: str) -> dict:
    """One kind's errors by reason, with a few of the requests that got each."""
    return {"error_reasons": {r: n for (k, r), n in sorted(reasons.items()) if k == kind},
            "error_examples": {r: q for (k, r), q in sorted(examples.items()) if k == kind}}


def phase_figures(serial: list[float], wall_s: float, concurrent: list[float], errors: int) -> dict:
    """One kind of request's figures: serial latency, then throughput and latency in flight."""
    return {
        "p50_ms": percentile_ms(serial, 50), "p99_ms": percentile_ms(serial, 99),
        "serial_requests": len(serial),
        "rps": round(len(concurrent) / wall_s, 1),
        "concurrent_p50_ms": percentile_ms(concurrent, 50),
        "concurrent_p99_ms": percentile_ms(concurrent, 99),
        "concurrent_requests": len(concurrent), "errors": errors,
    }


async def _load(port: int, ids: list[int], *, latency_n: int, throughput_n: int,
                cached_n: int, concurrency: int, seed: int, phase_budget_s: float) -> dict:
    """Serial, concurrent and cached phases; each stops early after `phase_budget_s`.

    Three kinds of request, each about something new so the block cache never answers: a
    stored story's block (the baseline), a search of 2-4 words, and the block for a short text
    POSTed (never cached). Serial requests take turns, so the machine's noise hits all three
    alike: a story's block by aiohttp then a search, a story's block by httpx then a text.
    aiohttp gives the latency figures; httpx is beside them for the story's block (the
    concurrent and cached phases and every run before 2026-12-03 used it). httpx spends ~1 ms
    more of the client's own time per request (measured at 100k: 3.9 vs 2.6 ms over the
    in-process block, and 1.5 vs 0.5 ms for a trivial endpoint), which is the client's cost,
    not the API's. The concurrent phase runs for each kind in turn.
    """
    import aiohttp
    import httpx

    rng = np.random.default_rng(seed)
    order = [int(i) for i in rng.permutation(ids)[: latency_n + throughput_n]]
    # Three of each to warm up, then up to latency_n for the serial phase, then the concurrent.
    others = 3 + latency_n + throughput_n
    searches = [by_query(q) for q in search_queries(others, seed)]
    texts = [by_text(t, x) for t, x in short_texts(others, 3 * seed + 1)]
    errors: Counter[str] = Counter()
    reasons: Counter[tuple[str, str]] = Counter()  # (kind, `error_reason`)
    examples: dict[tuple[str, str], list[str]] = {}
    base = f"http://127.0.0.1:{port}"

    def check(ask: Ask, status: int, body: bytes) -> None:
        if (reason := error_reason(status, body, ask.listed)) is None:
            return
        errors[ask.kind] += 1
        reasons[ask.kind, reason] += 1
        shown = examples.setdefault((ask.kind, reason), [])
        if len(shown) < ERROR_EXAMPLES:
            shown.append(str(ask.body["title"]) if ask.body else ask.params.get("q", ask.path))

    async with (httpx.AsyncClient(base_url=base, timeout=60) as client,
                aiohttp.ClientSession(base) as session):
        async def get(ask: Ask) -> float:
            t = time.perf_counter()
            r = await client.request(ask.method, ask.path, params=ask.params, json=ask.body)
            elapsed = time.perf_counter() - t
            check(ask, r.status_code, r.content)
            return elapsed

        async def get_aiohttp(ask: Ask) -> float:
            t = time.perf_counter()
            async with session.request(ask.method, ask.path, params=ask.params,
                                       json=ask.body) as r:
                body = await r.read()
            elapsed = time.perf_counter() - t
            check(ask, r.status, body)
            return elapsed

        for sid in order[:6]:  # connections and code paths warm
            await get(by_id(sid))
            await get_aiohttp(by_id(sid))
        for ask in searches[:3] + texts[:3]:
            await get_aiohttp(ask)
        serial: dict[str, list[float]] = {"id": [], "id_httpx": [], "search": [], "text": []}
        deadline = time.perf_counter() + phase_budget_s
        for i, sid in enumerate(order[6:latency_n]):
            if i % 2:
                serial["id_httpx"].append(await get(by_id(sid)))
                serial["text"].append(await get_aiohttp(texts[3 + i]))
            else:
                serial["id"].append(await get_aiohttp(by_id(sid)))
                serial["search"].append(await get_aiohttp(searches[3 + i]))
            if time.perf_counter() > deadline:
                break

        async def drive(todo: list[Ask]) -> tuple[float, list[float]]:
            queue = list(reversed(todo))
            lat: list[float] = []
            stop_at = time.perf_counter() + phase_budget_s

            async def worker() -> None:
                while queue and time.perf_counter() < stop_at:
                    lat.append(await get(queue.pop()))

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return time.perf_counter() - t0, lat

        rest = slice(3 + latency_n, None)
        in_flight = {"id": await drive([by_id(sid) for sid in order[latency_n:]]),
                     "search": await drive(searches[rest]), "text": await drive(texts[rest])}
        hot = order[:16]  # answered above: the block cache holds them now
        cached_wall, cached = await drive([by_id(hot[i % len(hot)]) for i in range(cached_n)])
    kinds = {kind: {**phase_figures(serial[kind], *in_flight[kind], errors[kind]),
                    **error_figures(reasons, examples, kind)}
             for kind in ("id", "search", "text")}
    return {
        **kinds["id"], "client": "aiohttp",
        "httpx_p50_ms": percentile_ms(serial["id_httpx"], 50),
        "httpx_p99_ms": percentile_ms(serial["id_httpx"], 99),
        "concurrency": concurrency,
        "cached_rps": round(len(cached) / cached_wall, 1),
        "cached_p50_ms": percentile_ms(cached, 50),
        # Asked as a search and as a short text instead of by id; the same phases, interleaved.
        "search": {"request": "GET /v1/search?q=<2-4 words>&k=5", **kinds["search"]},
        "text": {"request": 'POST /v1/related {"title", "text"} (6-12 + 20-40 words), k=5',
                 **kinds["text"]},
    }


def query_embedding(count: int, name: str | None = None) -> dict:
    """What the API's figures leave out: ms the shipped embedder (`[index] embedder`, built as
    benchmarks/embed_bench.py builds it; `name` another) takes to embed one search or one short
    text, one at a time as the API embeds them. Real text (BBC headlines and first paragraphs):
    the model's cost depends on the word pieces, and the corpus's made-up words split into more."""
    from aggregator.settings import load_settings
    from api.services import release_model
    from benchmarks.embed_bench import BBC_DIR, bbc_stories
    from recommender.embed import make_embedder, story_text
    from recommender.search import as_names, normal_query

    if not BBC_DIR.is_dir():
        return {"skipped": f"BBC data not found at {BBC_DIR}"}
    warm = 8
    stories = bbc_stories(count + warm)
    kinds = {  # as RelatedService.search and .for_text make the text they embed
        "search": [story_text(as_names(normal_query(" ".join(title.split()[:2 + i % 3]))))
                   for i, (title, _, _) in enumerate(stories)],
        "text": [story_text(title, "", lead) for title, lead, _ in stories],
    }
    index = load_settings(REPO / "config" / "tidings.toml", env={}).index
    name = name or index.embedder
    try:
        embedder = make_embedder(name, index.threads or None)
    except Exception as e:  # no model on this machine: the API's own figures still stand
        return {"skipped": f"{name} not built: {type(e).__name__}: {e}"}
    out: dict = {"embedder": name, "runtime": type(embedder).__name__,
                 "recipe": embedder.recipe, "queries": count}
    try:
        for kind, texts in kinds.items():
            for text in texts[:warm]:  # the model loaded, its first input shapes compiled
                embedder.encode([text])
            took = []
            for text in texts[warm:]:
                t = time.perf_counter()
                embedder.encode([text])
                took.append(time.perf_counter() - t)
            out[f"{kind}_p50_ms"] = percentile_ms(took, 50)
            out[f"{kind}_p99_ms"] = percentile_ms(took, 99)
    finally:
        release_model(embedder)
    return out


def run(sizes: tuple[int, ...] = (10_000, 100_000), *, latency_n: int = 600,
        throughput_n: int = 600, cached_n: int = 1000, concurrency: int = 8,
        baseline_queries: int = 300, recall_queries: int = 500,
        phase_budget_s: float = 45.0, embed_queries: int = 200) -> list[dict]:
    """One row per corpus size. Each row also carries `query_embedding(embed_queries)`, measured
    once after the API processes are gone (0 = not measured)."""
    rows = []
    ctx = mp.get_context("spawn")
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="tidings-api-bench-") as tmp:
            parent, child = ctx.Pipe()
            filler = ctx.Process(target=_fill, args=(n, tmp, child, baseline_queries,
                                                     recall_queries), daemon=True)
            filler.start()
            try:
                filled = parent.recv()
            finally:
                filler.join(timeout=60)
                if filler.is_alive():
                    filler.terminate()
            ids = filled.pop("ids")
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_serve_stack, args=(n, tmp, child, baseline_queries),
                               daemon=True)
            proc.start()
            try:
                parent.send({"ids": ids, "recall_ids": filled.pop("recall_ids"),
                             "exact_top10": filled.pop("exact_top10")})
                info = parent.recv()
                row = {"data": "synthetic stories + clustered unit vectors", "n": n,
                       **filled, **info}
                row.update(asyncio.run(_load(
                    info["port"], ids, latency_n=latency_n, throughput_n=throughput_n,
                    cached_n=cached_n, concurrency=concurrency, seed=n,
                    phase_budget_s=phase_budget_s)))
                row["rss_after_load_kib"] = vm_kib(proc.pid)
                row["loadavg"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
                parent.send("stop")
                row.update(parent.recv())
            finally:
                proc.join(timeout=30)
                if proc.is_alive():
                    proc.terminate()
        row.pop("port", None)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)  # a long run shows progress
    if embed_queries and rows:
        embedding = query_embedding(embed_queries)
        for row in rows:
            row["query_embed"] = embedding
    return rows


if __name__ == "__main__":
    sizes = tuple(int(a) for a in sys.argv[1:]) or (10_000, 100_000)
    for r in run(sizes):
        print(json.dumps(r))
