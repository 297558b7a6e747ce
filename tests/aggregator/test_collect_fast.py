"""The fast collection paths: fetch outcomes written in batches, parsing in worker processes,
stories inserted in one statement. Real SQLite/PostgreSQL, real HTTP on loopback."""

from __future__ import annotations

import asyncio
import multiprocessing
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from aggregator import parsepool
from aggregator.collect import Collector
from aggregator.errors import ParseError
from aggregator.model import SourceSpec, StoryDraft
from aggregator.parsepool import MIN_SOURCES_FOR_POOL, ParsePool
from aggregator.settings import CollectSettings
from aggregator.store import FetchRecord, Store
from tests import slowparse
from tests.localsite import LocalSite, LoopbackResolver

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
FAST = CollectSettings(connect_timeout_s=2.0, total_timeout_s=5.0, min_interval_s=60,
                       jitter_ratio=0.0, max_body_bytes=2_000_000)


async def test_concurrent_fetch_records_are_all_written(store):
    """Many record_fetch calls at once (as a round of 304s makes): each lands, in order,
    a source recorded twice in one batch keeps both outcomes."""
    specs = [SourceSpec(f"s{i}", f"https://s{i}.example/feed", "news") for i in range(30)]
    await store.sync_sources(specs, NOW)
    claimed = await store.claim_due_sources(NOW, owner="t", lease_s=60)
    ids = {c.spec.name: c.id for c in claimed}
    later = NOW + timedelta(minutes=10)

    def ok(i):
        return FetchRecord(ok=True, next_check_at=later, interval_s=600 + i, status=304)

    calls = [store.record_fetch(ids[f"s{i}"], ok(i), NOW) for i in range(1, 30)]
    calls += [
        store.record_fetch(ids["s0"], FetchRecord(ok=False, next_check_at=later, interval_s=60,
                                                  status=500, error="HTTP 500"), NOW),
        store.record_fetch(ids["s0"], FetchRecord(ok=False, next_check_at=later, interval_s=120,
                                                  status=502, error="HTTP 502"), NOW),
    ]
    await asyncio.gather(*calls)
    health = {h.name: h for h in await store.list_sources()}
    assert health["s0"].error_count == 2 and health["s0"].last_error == "HTTP 502"
    assert health["s0"].interval_s == 120
    for i in range(1, 30):
        h = health[f"s{i}"]
        assert (h.status, h.interval_s, h.next_check_at) == ("ok", 600 + i, later)
    # Leases released: every source can be claimed again once due.
    again = await store.claim_due_sources(later, owner="u", lease_s=60)
    assert len(again) == 30


async def test_record_fetch_fails_loudly_when_the_database_is_gone(tmp_path):
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'gone.db'}")
    await store.migrate()
    await store.sync_sources([SourceSpec("a", "https://a.example/feed", "news")], NOW)
    (c,) = await store.claim_due_sources(NOW, owner="t", lease_s=60)
    async with store.engine.begin() as conn:
        await conn.exec_driver_sql("DROP TABLE sources")
    with pytest.raises(Exception, match="sources"):
        await store.record_fetch(c.id, FetchRecord(ok=True, next_check_at=NOW, interval_s=60), NOW)
    await store.close()


async def test_upsert_links_same_body_twice_in_one_batch(store):
    body = " ".join(f"word{i}" for i in range(60))
    from aggregator.normalize import content_hash

    h = content_hash(body)
    drafts = [StoryDraft(url=f"https://e.example/{i}", title=f"t{i}", text=body, content_hash=h)
              for i in range(3)]
    res = await store.upsert_stories(drafts, NOW)
    assert len(res.new_ids) == 3 and res.duplicates == 2
    stories = await store.get_stories(res.new_ids)
    first = res.new_ids[0]
    assert [stories[i].duplicate_of for i in res.new_ids] == [None, first, first]
    assert [stories[i].url for i in res.new_ids] == [d.url for d in drafts]


@pytest.fixture
async def feeds_site(shared_data):
    async with LocalSite(shared_data) as s:
        yield s


def _serve_copies(feeds_site, shared_data, version: str = "v") -> list[SourceSpec]:
    """Enough sources for a round to parse in worker processes, each served its own copy of
    a captured feed (distinct story URLs per source and per `version`)."""
    names = ["fast-news-reader/bbc.xml", "rss-parser/guardian.rss", "node-feedparser/tpm.atom",
             "RSParser/aktuality.rss", "RSParser/DaringFireball.json"]
    specs = []
    for i in range(MIN_SOURCES_FOR_POOL):
        body = (shared_data / "news-feeds" / names[i % len(names)]).read_bytes()
        body = body.replace(b"https://", f"https://{version}s{i}.".encode())
        feeds_site.route(f"/f{i}", body=body, etag=f'"{version}{i}"')
        specs.append(SourceSpec(f"src{i}", f"http://feeds.example/f{i}", "news"))
    return specs


async def _pool_sized_sources(feeds_site, shared_data, tmp_path) -> Store:
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'pool.db'}")
    await store.migrate()
    await store.sync_sources(_serve_copies(feeds_site, shared_data), NOW)
    return store


async def test_round_parses_in_worker_processes_and_stops_them(feeds_site, shared_data, tmp_path):
    store = await _pool_sized_sources(feeds_site, shared_data, tmp_path)
    c = Collector(store, FAST, resolver_factory=lambda: LoopbackResolver(port=feeds_site.port),
                  parse_workers=2)
    before = set(multiprocessing.active_children())
    report = await c.run_round(force=True)
    assert [r.error for r in report.sources if not r.ok] == []
    assert sum(r.items for r in report.sources) > 0 and report.new == await store.count_stories()
    assert set(multiprocessing.active_children()) == before  # the pool is shut down
    # Threads only (parse_workers=0) store the same stories on the next round's 304s.
    c0 = Collector(store, FAST, resolver_factory=lambda: LoopbackResolver(port=feeds_site.port),
                   parse_workers=0)
    again = await c0.run_round(force=True)
    assert all(r.not_modified for r in again.sources)
    await store.close()


async def test_pool_results_match_thread_results(shared_data):
    from aggregator.parsepool import parse_and_normalize

    body = (shared_data / "news-feeds" / "rss-parser" / "guardian.rss").read_bytes()
    spec = SourceSpec("g", "http://feeds.example/g", "news")
    args = (body, spec.url, "application/rss+xml", "auto", None, spec, NOW)
    async with ParsePool(2, MIN_SOURCES_FOR_POOL) as pool:
        pooled = await pool.run(*args)
        assert pool._pool is not None
    local = parse_and_normalize(*args)
    assert pooled.drafts == local.drafts and pooled.item_count == len(local.doc.items) == 55
    assert pooled.doc.items == () and pooled.doc.title == local.doc.title


async def test_a_terminal_ctrl_c_leaves_the_parse_workers_to_the_collector(shared_data):
    """Ctrl-C signals the whole process group: the workers must not die of it (a traceback
    each, and a broken pool) while the collector shuts them down in order."""
    import os
    import signal

    body = (shared_data / "news-feeds" / "rss-parser" / "guardian.rss").read_bytes()
    spec = SourceSpec("g", "http://feeds.example/g", "news")
    args = (body, spec.url, "application/rss+xml", "auto", None, spec, NOW)
    before = set(multiprocessing.active_children())
    async with ParsePool(2, MIN_SOURCES_FOR_POOL) as pool:
        await pool.start()
        workers = set(multiprocessing.active_children()) - before
        assert len(workers) == 2
        for w in workers:
            os.kill(w.pid, signal.SIGINT)
        await asyncio.sleep(0.5)
        assert all(w.is_alive() for w in workers)
        parsed = await pool.run(*args)
        assert not pool.broken and parsed.item_count == 55
    assert set(multiprocessing.active_children()) == before


async def test_started_collector_keeps_its_workers_across_rounds(feeds_site, shared_data, tmp_path):
    """`start` spawns the workers before any round; rounds reuse them; a worker killed
    between rounds costs its pool: the next round's first body starts a new one."""
    store = await _pool_sized_sources(feeds_site, shared_data, tmp_path)
    c = Collector(store, FAST, resolver_factory=lambda: LoopbackResolver(port=feeds_site.port),
                  parse_workers=2)
    before = set(multiprocessing.active_children())
    await c.start()
    workers = set(multiprocessing.active_children()) - before
    assert len(workers) == 2 and all(w.is_alive() for w in workers)

    first = await c.run_round(force=True)
    assert [r.error for r in first.sources if not r.ok] == [] and first.new > 0
    assert set(multiprocessing.active_children()) - before == workers  # the same processes

    # New bodies (new ETags, new URLs), then a worker killed between rounds.
    _serve_copies(feeds_site, shared_data, version="w")
    next(iter(workers)).kill()
    second = await c.run_round(force=True)
    assert [r.error for r in second.sources if not r.ok] == [] and second.new > 0

    _serve_copies(feeds_site, shared_data, version="x")
    third = await c.run_round(force=True)  # a new pool, spawned by the round's first body
    assert [r.error for r in third.sources if not r.ok] == [] and third.new > 0
    fresh = set(multiprocessing.active_children()) - before
    assert fresh and not fresh & workers
    await c.close()
    assert set(multiprocessing.active_children()) == before
    await store.close()


def test_parse_workers_end_when_their_collector_is_killed(tmp_path):
    """A collector killed outright (SIGKILL, the OOM killer) never shuts its pool down: its
    workers waited on the task queue for ever, two idle processes left by every such death."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    repo = Path(__file__).resolve().parents[2]
    script = ("import asyncio, multiprocessing\n"
              "from aggregator.parsepool import MIN_SOURCES_FOR_POOL, ParsePool\n"
              "async def main():\n"
              "    pool = ParsePool(2, MIN_SOURCES_FOR_POOL)\n"
              "    await pool.start()\n"
              "    print(*[p.pid for p in multiprocessing.active_children()], flush=True)\n"
              "    await asyncio.sleep(600)\n"
              "asyncio.run(main())\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=repo, stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": str(repo)})
    try:
        pids = [int(p) for p in proc.stdout.readline().split()]
        assert len(pids) >= 2  # the workers (and the resource tracker)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def alive(pid: int) -> bool:
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is gone
        except FileNotFoundError:
            return False

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.2)
    assert not [p for p in pids if alive(p)]


async def test_a_body_past_the_parse_time_limit_fails_and_the_round_goes_on(
        feeds_site, shared_data, tmp_path, monkeypatch):
    """A body whose parse runs past `parse_timeout_s` held its worker (or thread) for as long
    as it took: the round waited for it. Now its source fails with the reason, its worker is
    killed, and the other sources' bodies (queued behind it for the round's one worker) are
    parsed and stored."""
    monkeypatch.setattr(parsepool, "parse_and_normalize", slowparse.slow_parse)
    names = ["rss-parser/guardian.rss", "fast-news-reader/bbc.xml", "RSParser/aktuality.rss"]
    specs = []
    for i, name in enumerate(names):
        body = (shared_data / "news-feeds" / name).read_bytes()
        feeds_site.route(f"/f{i}", body=slowparse.marked(body, slowparse.SLOW_MARK) if i == 0 else body)
        specs.append(SourceSpec(f"src{i}", f"http://feeds.example/f{i}", "news"))
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'slow.db'}")
    await store.migrate()
    await store.sync_sources(specs, NOW)
    c = Collector(store, replace(FAST, parse_timeout_s=3.0),
                  resolver_factory=lambda: LoopbackResolver(port=feeds_site.port))
    before = set(multiprocessing.active_children())

    report = await c.run_round(force=True)

    by = {r.name: r for r in report.sources}
    assert not by["src0"].ok and by["src0"].error == "parsing took over 3 s"
    assert by["src1"].ok and by["src2"].ok and by["src1"].new > 0 and by["src2"].new > 0
    assert await store.count_stories() == report.new
    health = {h.name: h for h in await store.list_sources()}
    assert health["src0"].last_error == "parsing took over 3 s"
    assert report.elapsed_s < slowparse.SLOW_PARSE_S  # it did not wait for the slow parse
    assert set(multiprocessing.active_children()) == before  # the stuck worker is gone too
    await store.close()


def _guardian(shared_data) -> tuple[bytes, tuple]:
    """The Guardian's feed (55 items) and the rest of `ParsePool.run`'s arguments for it."""
    body = (shared_data / "news-feeds" / "rss-parser" / "guardian.rss").read_bytes()
    spec = SourceSpec("g", "http://feeds.example/g", "news")
    return body, (spec.url, "application/rss+xml", "auto", None, spec, NOW)


async def _waiting_in_worker(pool: ParsePool, body: bytes, rest: tuple, flag) -> asyncio.Task:
    """`body` parsing in one of `pool`'s workers, held there until `flag` exists."""
    task = asyncio.create_task(pool.run(slowparse.marked(body, slowparse.waiting_mark(flag)), *rest))
    while not flag.with_suffix(".started").exists():
        await asyncio.sleep(0.01)
    return task


async def test_bodies_in_a_pool_killed_for_another_are_parsed_again(shared_data, tmp_path,
                                                                    monkeypatch):
    """An executor cannot stop one task: past a body's limit, all of the pool's workers are
    killed (`_kill`). A body another worker was parsing then is parsed again in a new pool,
    not failed. (The kill is called here directly: which of two bodies under the same limit
    runs out first is a race.)"""
    monkeypatch.setattr(parsepool, "parse_and_normalize", slowparse.slow_parse)
    body, rest = _guardian(shared_data)
    flag = tmp_path / "go"
    async with ParsePool(2, MIN_SOURCES_FOR_POOL) as pool:
        await pool.start()
        killed = pool._pool
        first = set(killed._processes.values())
        other = await _waiting_in_worker(pool, body, rest, flag)
        await pool._kill(killed)
        assert not any(p.is_alive() for p in first)
        flag.touch()
        parsed = await other
        assert parsed.item_count == 55 and not pool.broken
        assert pool._pool is not killed and not set(pool._pool._processes.values()) & first


@pytest.mark.parametrize("mark", [slowparse.CRASH_MARK, slowparse.KILL_MARK],
                         ids=["os._exit", "SIGKILL"])
async def test_a_body_that_crashes_its_worker_fails_its_source_and_the_round_goes_on(
        feeds_site, shared_data, tmp_path, monkeypatch, mark):
    """A crashed worker (a segfault in lxml, the OOM killer) broke the pool, and the round
    parsed the rest in threads, the crashing body too: in the collector's own process, where
    the same crash took the collector down. Now the body gets one more try in a new pool,
    then its source fails with the reason; the other sources are parsed in a new pool."""
    monkeypatch.setattr(parsepool, "parse_and_normalize", slowparse.slow_parse)
    names = ["rss-parser/guardian.rss", "fast-news-reader/bbc.xml", "RSParser/aktuality.rss"]
    specs = []
    for i, name in enumerate(names):
        body = (shared_data / "news-feeds" / name).read_bytes()
        feeds_site.route(f"/f{i}", body=slowparse.marked(body, mark) if i == 0 else body)
        specs.append(SourceSpec(f"src{i}", f"http://feeds.example/f{i}", "news"))
    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'crash.db'}")
    await store.migrate()
    await store.sync_sources(specs, NOW)
    c = Collector(store, FAST, resolver_factory=lambda: LoopbackResolver(port=feeds_site.port))
    before = set(multiprocessing.active_children())

    report = await c.run_round(force=True)

    exited = "code 1" if mark == slowparse.CRASH_MARK else "signal SIGKILL"
    error = f"the parser crashed on this body (worker exited with {exited})"
    by = {r.name: r for r in report.sources}
    assert not by["src0"].ok and by["src0"].error == error
    assert by["src1"].ok and by["src2"].ok and by["src1"].new > 0 and by["src2"].new > 0
    assert await store.count_stories() == report.new
    health = {h.name: h for h in await store.list_sources()}
    assert health["src0"].last_error == error
    assert set(multiprocessing.active_children()) == before  # no worker left
    await store.close()


async def test_a_body_in_flight_when_its_pool_crashed_is_parsed_again(shared_data, tmp_path,
                                                                      monkeypatch):
    """An executor cannot say which body crashed its worker: the bodies in flight then are
    tried again in a new pool, in workers (not in threads, as before), and one that crashed
    only once is parsed too."""
    monkeypatch.setattr(parsepool, "parse_and_normalize", slowparse.slow_parse)
    body, rest = _guardian(shared_data)
    flag = tmp_path / "go"
    async with ParsePool(2, MIN_SOURCES_FOR_POOL) as pool:
        other = await _waiting_in_worker(pool, body, rest, flag)  # its first body starts it
        crashed = pool._pool
        crasher = asyncio.create_task(
            pool.run(slowparse.marked(body, slowparse.crash_once_mark(tmp_path / "crashed")), *rest))
        while pool._pool is crashed and not pool.broken:  # until the crash is seen
            await asyncio.sleep(0.01)
        flag.touch()
        parsed = await asyncio.gather(other, crasher)
        assert [p.item_count for p in parsed] == [55, 55] and not pool.broken
        assert (tmp_path / "crashed").exists() and pool._pool is not None


async def test_a_round_whose_workers_keep_crashing_stops_restarting_them(shared_data,
                                                                          monkeypatch):
    """Past `MAX_RESTARTS` crashed pools in a round, its remaining bodies fail unparsed
    rather than spawn workers in a loop (or, as before, parse in the collector's process);
    the next round starts afresh."""
    monkeypatch.setattr(parsepool, "parse_and_normalize", slowparse.slow_parse)
    body, rest = _guardian(shared_data)
    crash = slowparse.marked(body, slowparse.CRASH_MARK)
    before = set(multiprocessing.active_children())
    async with ParsePool(1, MIN_SOURCES_FOR_POOL) as pool:
        for _ in range(2):  # two crashes each: the fourth is past MAX_RESTARTS (3)
            with pytest.raises(ParseError, match="crashed on this body"):
                await pool.run(crash, *rest)
        assert pool.broken and pool._pool is None
        with pytest.raises(ParseError, match="not parsed: the parse workers crashed 4 times"):
            await pool.run(body, *rest)
        assert set(multiprocessing.active_children()) == before
        pool.new_round()
        assert (await pool.run(body, *rest)).item_count == 55 and not pool.broken
