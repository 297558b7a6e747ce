"""Time one collection round of many feeds over loopback, and say where the time goes.

The feeds are the captured ones in ../shared/data/news-feeds (real documents, third-party),
served from a LocalSite in a separate process. Each source gets its own variant of a feed:
every http(s) link gets a per-source path prefix and every title/summary/body a per-source
marker word, so the store keeps distinct stories instead of linking copies (URL identity and
the body hash both differ). Sources are spread over `hosts` host names that a loopback
resolver maps to the site, so the per-host cap behaves as with real sites.

Round 1 fetches, parses, normalizes and stores everything; round 2 is the next poll, where
every route answers 304 to the stored ETag. The same two rounds then run again with the old
parse path (feedparser only, in threads) into a fresh store: the baseline of this run. Then
the work is timed piece by piece, in this process and serially (fetch only; parse_document
with the fast path and with feedparser only; normalize; upsert into a fresh store), as the
baselines that show where a round's time goes.

    .venv/bin/python -m benchmarks.collect_bench [n_sources]
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import re
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FEEDS_DIR = REPO / ".." / "shared" / "data" / "news-feeds"
GOAL_ROUND_S = 30.0
GOAL_NOT_MODIFIED_S = 5.0

# An xmlns declaration (kept: rewriting a namespace URI breaks the document) or a URL prefix.
_URL_OR_NS = re.compile(rb"""(xmlns(?::[\w.-]+)?\s*=\s*["'][^"']*["'])|(https?://[A-Za-z0-9.-]+(?::\d+)?/)""")
_RELATIVE_HREF = re.compile(rb"""(href=["'])/(?!/)""")
_TEXT_OPEN = re.compile(rb"(<(?:title|description|summary|content:encoded|content)(?:\s[^>]*)?>)")


def feed_files(feeds_dir: Path = FEEDS_DIR) -> list[Path]:
    return sorted(p for p in feeds_dir.rglob("*")
                  if p.is_file() and p.suffix in {".xml", ".rss", ".atom", ".json"})


def variant(body: bytes, name: str, index: int) -> bytes:
    """Source `index`'s copy of a feed: links under /s<index>/, texts led by a marker word."""
    tag = f"s{index:04d}".encode()
    if name.endswith(".json"):
        doc = json.loads(body)
        for item in doc.get("items", []):
            for key in ("id", "url", "external_url"):
                if isinstance(item.get(key), str):
                    item[key] = _URL_OR_NS.sub(lambda m: _prefix(m, tag), item[key].encode()).decode()
            for key in ("title", "summary", "content_text", "content_html"):
                if isinstance(item.get(key), str):
                    item[key] = f"{tag.decode()} {item[key]}"
        return json.dumps(doc).encode()
    body = _URL_OR_NS.sub(lambda m: _prefix(m, tag), body)
    body = _RELATIVE_HREF.sub(lambda m: m.group(1) + b"/" + tag + b"/", body)
    return _TEXT_OPEN.sub(lambda m: m.group(1) + tag + b" ", body)


def _prefix(m: re.Match, tag: bytes) -> bytes:
    return m.group(1) if m.group(1) else m.group(2) + tag + b"/"


def content_type_of(name: str) -> str:
    if name.endswith(".json"):
        return "application/feed+json"
    if name.endswith(".atom"):
        return "application/atom+xml"
    return "application/rss+xml"


def source_bodies(n_sources: int, feeds_dir: Path = FEEDS_DIR) -> list[tuple[str, bytes, str]]:
    """(path, body, content type) for each source, cycling through the captured feeds."""
    files = feed_files(feeds_dir)
    raw = [(f.name, f.read_bytes()) for f in files]
    out = []
    for i in range(n_sources):
        name, body = raw[i % len(raw)]
        out.append((f"/feeds/{i:04d}/{name}", variant(body, name, i), content_type_of(name)))
    return out


def _serve(n_sources: int, feeds_dir: str, conn) -> None:
    """Child process: a LocalSite with one ETag'd route per source until told to stop."""
    from tests.localsite import LocalSite

    async def main() -> None:
        site = LocalSite()
        await site.start()
        for i, (path, body, ctype) in enumerate(source_bodies(n_sources, Path(feeds_dir))):
            site.route(path, body=body, etag=f'"v{i}"', content_type=ctype)
        conn.send(site.port)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, conn.recv)  # any message: stop
        hits = sum(r.hits for routes in site.routes.values() for r in routes)
        conn.send(hits)
        await site.close()

    asyncio.run(main())


def _specs(n_sources: int, hosts: int, bodies):
    from aggregator.model import SourceSpec

    return [SourceSpec(name=f"bench-{i:04d}", url=f"http://feeds{i % hosts}.bench.example{path}",
                       category="bench", kind="auto")
            for i, (path, _, _) in enumerate(bodies)]


def _widen_pool(store, pool_size: int) -> None:
    """Benchmark-only: swap the store's engine for one with a larger connection pool.

    Diagnoses the shipped round's crash (SQLAlchemy's default pool of 5 + 10 connections
    runs dry); the product's Store is not changed by this.
    """
    from sqlalchemy import event
    from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

    from aggregator.store import _set_sqlite_pragmas

    store.engine = create_async_engine(store.url, connect_args={"timeout": 30},
                                       pool_size=pool_size, max_overflow=pool_size)
    event.listen(store.engine.sync_engine, "connect", _set_sqlite_pragmas)
    store.session = async_sessionmaker(store.engine, expire_on_commit=False)


async def _round(n_sources: int, hosts: int, port: int, tmp: Path, bodies,
                 env: dict[str, str], pool_size: int | None = None, *,
                 feedparser_only: bool = False) -> dict:
    """The two rounds; `feedparser_only` measures the old parse path (feedparser, threads)."""
    import aggregator.feeds
    from aggregator.collect import Collector
    from aggregator.settings import load_settings
    from aggregator.store import Store
    from tests.localsite import LoopbackResolver

    settings = load_settings(REPO / "config" / "tidings.toml",
                             env={"TIDINGS_DATA_DIR": str(tmp), **env})
    db = tmp / f"round-{time.monotonic_ns()}.db"
    store = Store(f"sqlite+aiosqlite:///{db}")
    if pool_size:
        await store.engine.dispose()
        _widen_pool(store, pool_size)
    await store.migrate()
    await store.sync_sources(_specs(n_sources, hosts, bodies))
    collector = Collector(store, settings.collect, resolver_factory=lambda: LoopbackResolver(port=port),
                          parse_workers=0 if feedparser_only else None)
    limits = {"global_limit": settings.collect.global_limit,
              "per_host_limit": settings.collect.per_host_limit, "pool_size": pool_size,
              "parse_workers": collector.parse_workers}
    t0 = time.perf_counter()
    aggregator.feeds.FAST_PATH = not feedparser_only  # threads only: this process's flag holds
    try:
        first = await collector.run_round(force=True)
        second = await collector.run_round(force=True)
    except Exception as e:  # a crash of the round is a result to report, not a reason to stop
        await store.close()
        return {**limits, "crashed": f"{type(e).__name__}: {str(e).splitlines()[0][:200]}",
                "round_s": time.perf_counter() - t0}
    finally:
        aggregator.feeds.FAST_PATH = True
    stories = await store.count_stories()
    await store.close()
    fails = [r for r in first.sources if not r.ok]
    return {
        "round_s": first.elapsed_s,
        "ok": len(first.sources) - len(fails),
        "failed": len(fails),
        "failures": sorted({r.error or "" for r in fails})[:5],
        "items": sum(r.items for r in first.sources),
        "new": first.new,
        "duplicates": sum(r.duplicates for r in first.sources),
        "stories_stored": stories,
        "not_modified_round_s": second.elapsed_s,
        "not_modified": sum(r.not_modified for r in second.sources),
        "not_modified_failed": second.failed,
        **limits,
    }


async def _fetch_only(urls: list[str], port: int) -> float:
    from aggregator.collect import policy_from
    from aggregator.fetch import Fetcher
    from aggregator.settings import CollectSettings
    from tests.localsite import LoopbackResolver

    started = time.perf_counter()
    async with Fetcher(policy_from(CollectSettings()), resolver=LoopbackResolver(port=port)) as f:
        await asyncio.gather(*(f.fetch(u) for u in urls))
    return time.perf_counter() - started


async def _components(n_sources: int, hosts: int, port: int, tmp: Path, bodies) -> dict:
    """The round's pieces timed alone on the first `n_sources`: fetch (concurrent), then
    parse, normalize, store serially."""
    from aggregator.collect import drafts_from
    from aggregator.fastfeed import read_fast
    from aggregator.parse import parse_document
    from aggregator.store import Store, utcnow

    specs = _specs(n_sources, hosts, bodies)
    fetch_s = await _fetch_only([s.url for s in specs], port)
    t0 = time.perf_counter()
    for spec, (_, body, ctype) in zip(specs, bodies, strict=True):
        parse_document(body, base_url=spec.url, content_type=ctype, fast=False)
    parse_feedparser_s = time.perf_counter() - t0
    docs = []
    t0 = time.perf_counter()
    for spec, (_, body, ctype) in zip(specs, bodies, strict=True):
        docs.append(parse_document(body, base_url=spec.url, content_type=ctype))
    parse_s = time.perf_counter() - t0
    fast_bodies = sum(read_fast(body, base_url=spec.url, content_type=ctype) is not None
                      for spec, (_, body, ctype) in zip(specs, bodies, strict=True))
    now = utcnow()
    t0 = time.perf_counter()
    drafts = [drafts_from(doc, spec, now)[0] for doc, spec in zip(docs, specs, strict=True)]
    normalize_s = time.perf_counter() - t0
    store = Store(f"sqlite+aiosqlite:///{tmp / 'components.db'}")
    await store.migrate()
    t0 = time.perf_counter()
    for batch in drafts:
        await store.upsert_stories(batch, now)
    store_s = time.perf_counter() - t0
    await store.close()
    return {"fetch_only_s": fetch_s, "parse_s": parse_s, "parse_feedparser_s": parse_feedparser_s,
            "fast_path_bodies": fast_bodies, "normalize_s": normalize_s,
            "store_s": store_s, "body_bytes": sum(len(b) for _, b, _ in bodies),
            "component_items": sum(len(d.items) for d in docs),
            "component_drafts": sum(len(d) for d in drafts)}


def parse_breakdown(feeds_dir: Path = FEEDS_DIR, top: int = 12) -> dict:
    """Per-feed parse time (one copy of each captured feed) and a cProfile of the same work."""
    import cProfile
    import pstats

    from aggregator.fastfeed import read_fast
    from aggregator.parse import parse_document

    per_feed = []
    bodies = [(f, f.read_bytes()) for f in feed_files(feeds_dir)]
    for f, body in bodies:
        url = f"http://feeds.bench.example/{f.name}"
        best = {True: float("inf"), False: float("inf")}
        for _ in range(3):
            for fast in (True, False):
                t0 = time.perf_counter()
                doc = parse_document(body, base_url=url, content_type=content_type_of(f.name),
                                     fast=fast)
                best[fast] = min(best[fast], time.perf_counter() - t0)
        took_fast = read_fast(body, base_url=url, content_type=content_type_of(f.name)) is not None
        per_feed.append({"feed": f"{f.parent.name}/{f.name}", "items": len(doc.items),
                         "kib": len(body) / 1024, "ms": best[True] * 1000,
                         "ms_feedparser": best[False] * 1000, "fast_path": took_fast})
    profiler = cProfile.Profile()
    profiler.enable()
    for f, body in bodies:
        parse_document(body, base_url=f"http://feeds.bench.example/{f.name}",
                       content_type=content_type_of(f.name))
    profiler.disable()
    stats = pstats.Stats(profiler)
    total = max(stats.total_tt, 1e-9)
    rows = []
    for (file, line, func), (_, _, self_s, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        where = f"{Path(file).parent.name}/{Path(file).name}" if file != "~" else ""
        rows.append({"function": f"{where}:{line}({func})" if where else func, "cum_s": cum,
                     "share": cum / total, "self_s": self_s, "self_share": self_s / total})
    by_cum = sorted((r for r in rows if r["share"] < 0.999), key=lambda r: -r["cum_s"])[:top]
    by_self = sorted(rows, key=lambda r: -r["self_s"])[:top]
    return {"per_feed_parse": sorted(per_feed, key=lambda p: -p["ms"]), "parse_profile": by_cum,
            "parse_profile_self": by_self, "parse_profile_total_s": total}


def run(n_sources: int = 1000, *, hosts: int = 200, fallback_pool_size: int = 100,
        component_sources: int = 200, baseline_round: bool = True) -> dict:
    """One full round and one 304 round of `n_sources` feeds, plus the per-step baselines
    (timed on the first `component_sources` sources, which cycle through every feed file)."""
    if not FEEDS_DIR.is_dir():
        return {"skipped": f"feed data not found at {FEEDS_DIR}"}
    bodies = source_bodies(n_sources)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    server = ctx.Process(target=_serve, args=(n_sources, str(FEEDS_DIR), child), daemon=True)
    server.start()
    try:
        port = parent.recv()
        with tempfile.TemporaryDirectory(prefix="tidings-bench-") as tmp:
            result = asyncio.run(_round(n_sources, hosts, port, Path(tmp), bodies, {}))
            if baseline_round:
                result["baseline"] = asyncio.run(
                    _round(n_sources, hosts, port, Path(tmp), bodies, {}, feedparser_only=True))
            if "crashed" in result:
                # Measure the round with a pool that cannot run dry, so the report has
                # figures besides the crash (and says they come from a patched pool).
                result["fallback"] = asyncio.run(
                    _round(n_sources, hosts, port, Path(tmp), bodies, {}, fallback_pool_size))
            sample = min(n_sources, component_sources)
            result.update(asyncio.run(_components(sample, hosts, port, Path(tmp), bodies[:sample])))
            result["component_sources"] = sample
        parent.send("stop")
        result["server_hits"] = parent.recv()
    finally:
        server.join(timeout=10)
        if server.is_alive():
            server.terminate()
    result.update(parse_breakdown())
    per_file = {p["feed"].split("/", 1)[1]: p["items"] for p in result["per_feed_parse"]}
    result["expected_items"] = sum(per_file.get(path.rsplit("/", 1)[1], 0) for path, _, _ in bodies)
    done = result.get("fallback", result) if "crashed" in result else result
    result.update({
        "data": "captured real feeds (news-feeds, 19 files) in per-source variants",
        "sources": n_sources, "hosts": hosts, "feeds": len(feed_files()),
        "goal_round_s": GOAL_ROUND_S, "goal_not_modified_s": GOAL_NOT_MODIFIED_S,
        "round_pass": "crashed" not in result and result["round_s"] <= GOAL_ROUND_S
        and result["failed"] == 0,
        "not_modified_pass": "crashed" not in done
        and done["not_modified_round_s"] <= GOAL_NOT_MODIFIED_S,
    })
    return result


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    print(json.dumps(run(n), indent=2))
