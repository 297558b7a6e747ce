"""/metrics as an operator reads it: each series counts what its name says, and the text
parses with Prometheus's own parser."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from aggregator.model import StoryDraft
from tests.api.conftest import free_port, make_stack, stop_stack
from tests.api.serveworkers import (
    owner_of_connection,
    serve_env,
    serve_workers_on_bbc,
    serving_workers,
    start_serve_workers,
)
from tests.e2e.conftest import REPO, TIDINGS, stop_group


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Every sample of an exposition, keyed by name and sorted labels (parses it strictly)."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


async def test_stories_embedded_counts_what_the_indexer_embeds(tmp_path, shared_data):
    # tidings_stories_embedded_total stayed 0 in `tidings run` while the index grew: nothing
    # ever incremented it, so an operator's "is the indexer keeping up" graph read flat.
    st, server, task = await make_stack(tmp_path, shared_data, limit=5)
    try:
        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            before = samples((await http.get("/metrics")).text)[("tidings_stories_embedded_total", ())]
            await st.svc.store.upsert_stories([
                StoryDraft(url=f"https://news.example/metrics-{i}", title=f"Embedded story {i}")
                for i in range(3)])
            assert await st.svc.indexer.run_once() == 3
            after = samples((await http.get("/metrics")).text)
        assert after[("tidings_stories_embedded_total", ())] - before == 3
    finally:
        await stop_stack(st, server, task)


def _scrape_count(conn) -> float:
    """The /metrics requests answered so far, as one scrape over `conn` reports them."""
    conn.request("GET", "/metrics")
    resp = conn.getresponse()
    text = resp.read().decode()
    assert resp.status == 200
    return samples(text).get(("tidings_request_seconds_count",
                              (("method", "GET"), ("route", "/metrics"), ("status", "200"))), 0.0)


async def _settled_through_another(port: int, victim: int, workers: list[int],
                                   scraped: int) -> list[float] | None:
    """Scrapes through a connection that a worker other than `victim` accepted, until one
    sees the `scraped` scrapes before it and the earlier of these; the counts it saw, or
    None if no other worker accepted one."""

    for _ in range(200):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        conn.connect()
        if owner_of_connection(port, conn.sock.getsockname()[1], workers) not in (victim, None):
            break
        conn.close()
        await asyncio.sleep(0.05)
    else:  # accepts stuck on the victim (a loaded machine): its last count may not be in
        return None  # yet (1 s of sleep was to be enough), so it is not killed this round
    seen: list[float] = []
    try:
        for k in range(50):  # the k-th look sees k more: each look is a scrape too
            seen.append(_scrape_count(conn))
            if seen[-1] == scraped + k:
                return seen
            await asyncio.sleep(0.2)
    finally:
        conn.close()
    raise AssertionError(f"the scrapes never all showed: {seen[-1]} of {scraped + k}")


@pytest.mark.timeout(120)
async def test_serve_workers_counters_only_go_up_whichever_worker_answers(tmp_path):
    # Each `serve --workers` process kept its own registry and a scrape reached whichever
    # worker accepted it: the request counter read 14, 12, 15, 11 on four scrapes in a row,
    # each drop a "reset" to Prometheus, so rate() and increase() were nonsense.
    from api.workers import children

    env = serve_env(tmp_path)
    port = free_port()
    proc = start_serve_workers(env, port)
    try:
        deadline = time.monotonic() + 90
        counts: list[float] = []
        owners: set[int] = set()
        killed = False
        while time.monotonic() < deadline and not (killed and len(owners) >= 2):
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            workers = children(proc.pid)
            try:
                conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(6)]
                for c in conns:
                    c.connect()
            except ConnectionRefusedError:
                await asyncio.sleep(0.2)
                continue
            round_owners = {owner_of_connection(port, c.sock.getsockname()[1], workers) for c in conns}
            for c in conns:  # one after another: each scrape sees every earlier one
                counts.append(_scrape_count(c))
                c.close()
            # Owners gathered over rounds: one socket's accepts can go to the same worker
            # many times in a row on a loaded machine (90 s of it once, in the full suite).
            owners |= round_owners - {None}
            if len(owners) >= 2 and not killed:  # a replaced worker's counts stay in the sum
                victim = next(iter(owners))
                # The victim counts a request once its answer is sent: killed right after its
                # last scrape's answer, that scrape was never counted (one short, seen once in
                # the full suite). Looked at through the other worker until every scrape so
                # far shows, the victim has nothing left to count.
                seen = await _settled_through_another(port, victim, workers, len(counts))
                if seen is not None:
                    counts += seen
                    os.kill(victim, signal.SIGKILL)
                    killed, owners = True, set()
            await asyncio.sleep(0.2)
        assert killed and len(owners) >= 2, "both workers never answered"
        assert counts == sorted(counts), counts
        # Every scrape counted, none lost with the killed worker: a request is counted once
        # its answer is sent, so the last ones may land a moment late (0.3 s was not always
        # enough on a loaded machine). Each look is a scrape too: the k-th sees k more.
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for k in range(50):
            seen = _scrape_count(conn)
            if seen == len(counts) + k:
                break
            await asyncio.sleep(0.2)
        conn.close()
        assert seen == len(counts) + k, (seen, len(counts), k)
        # The supervisor looks at its workers every 0.5 s and says a death before it starts the
        # replacement: stopped before its next look, it never said it (the log was empty once
        # in the full suite). Wait for the replacement.
        for _ in range(100):
            alive = children(proc.pid)
            if victim not in alive and len(alive) >= len(workers):
                break
            await asyncio.sleep(0.1)
    finally:
        stop_group(proc)
    # The killed worker is said once, in one line: uvicorn said it at INFO, which the API's
    # servers do not show, so an OOM-killed worker left no trace in the log.
    log = proc.stderr.read().decode()
    died = [line for line in log.splitlines() if "worker.died" in line]
    assert len(died) == 1 and f"pid={victim} signal=SIGKILL" in died[0], log[-2000:]
    assert "Traceback" not in log, log[-2000:]


@pytest.mark.timeout(120)
async def test_serve_workers_say_each_worker_that_dies_during_a_health_check(tmp_path):
    """The supervisor looked for dead workers before uvicorn's health check, which pings each
    worker in turn and waits up to 5 s for one that does not answer: a worker that died during
    that wait was found by the check, replaced and said at uvicorn's INFO only (no worker.died
    line, as the full suite saw twice), and so was the stopped worker the check killed."""
    from api.workers import children

    env = serve_env(tmp_path)
    port = free_port()
    proc = start_serve_workers(env, port)
    try:
        hung, dying = sorted(await serving_workers(proc, port))  # checked in this order: started in it
        os.kill(hung, signal.SIGSTOP)  # the next look waits on its ping for 5 s
        await asyncio.sleep(1.5)
        os.kill(dying, signal.SIGKILL)  # dies inside that look, after its start
        for _ in range(200):
            alive = children(proc.pid)
            if hung not in alive and dying not in alive and len(alive) == 2:
                break
            await asyncio.sleep(0.1)
        assert hung not in alive and dying not in alive, alive
    finally:
        stop_group(proc)
    log = proc.stderr.read().decode()
    died = [line for line in log.splitlines() if "worker.died" in line]
    assert any(f"pid={dying} signal=SIGKILL" in line for line in died), log[-2000:]
    assert any(f"pid={hung} signal=SIGKILL" in line for line in died), log[-2000:]


def _answered_by(port: int, path: str, pids: list[int]) -> tuple[int | None, str]:
    """Which worker answered a GET of `path` (on a new connection), and its body (a 200's)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path)
        owner = owner_of_connection(port, conn.sock.getsockname()[1], pids)
        resp = conn.getresponse()
        body = resp.read().decode()
    finally:
        conn.close()
    assert resp.status == 200, (path, resp.status, body[:500])
    return owner, body


@pytest.mark.timeout(120)
async def test_serve_workers_sum_the_search_ranking_cache_counts(tmp_path, shared_data):
    # Each worker keeps its own rankings and counts its own reads: a scrape, whichever worker
    # answers it, shows every worker's, as for the other counters (api/metrics.py).
    proc, port = serve_workers_on_bbc(tmp_path, shared_data)
    try:
        workers = await serving_workers(proc, port)
        deadline = time.monotonic() + 60
        searched_by: set[int | None] = set()
        searches = 0
        while not set(workers) <= searched_by:  # a new query each: a miss in whichever worker
            assert time.monotonic() < deadline, f"one worker answered all {searches} searches"
            owner, _ = _answered_by(port, f"/v1/search?q=budget+plans+{searches}&k=10", workers)
            searched_by.add(owner)
            searches += 1
        scraped: dict[int | None, dict] = {}
        while not set(workers) <= set(scraped):
            assert time.monotonic() < deadline, f"only {set(scraped)} of {workers} scraped"
            owner, text = _answered_by(port, "/metrics", workers)
            scraped[owner] = {dict(labels)["result"]: n for (name, labels), n in samples(text).items()
                              if name == "tidings_search_ranking_cache_total"}
    finally:
        stop_group(proc)
    want = {"hit": 0, "miss": searches, "stale": 0, "joined": 0}
    assert all(got == want for got in scraped.values()), (want, scraped)


async def test_a_source_removed_from_the_file_leaves_the_per_source_series(tmp_path, shared_data):
    # The per-source gauges kept the last value of every source ever seen: a failing source
    # removed from sources.toml went on reporting its consecutive errors (and firing the
    # alert on them) until the API restarted.
    from aggregator.model import SourceSpec

    st, server, task = await make_stack(tmp_path, shared_data, limit=3)
    store = st.svc.store
    kept, gone = (SourceSpec("kept", "http://a.example/feed", "politics"),
                  SourceSpec("gone", "http://b.example/feed", "politics"))
    try:
        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            await store.sync_sources([kept, gone])
            text = (await http.get("/metrics")).text
            assert 'tidings_source_consecutive_errors{source="gone"}' in text
            await store.sync_sources([kept])
            after = samples((await http.get("/metrics")).text)
        by_source = {labels: v for (name, labels), v in after.items()
                     if name.startswith("tidings_source_")}
        assert by_source and all(labels == (("source", "kept"),) for labels in by_source), by_source
    finally:
        await stop_stack(st, server, task)


async def test_a_source_removed_from_the_file_leaves_the_fetch_counter(tmp_path):
    # tidings_fetches_total kept a removed source's series until the collector restarted
    # (the gauges above went at once): a dashboard of fetches went on listing it.
    import os

    from api.metrics import Metrics
    from api.runner import SourcesWatcher
    from api.services import build
    from tests.api.test_runner import one_feed
    from tests.localsite import LocalSite

    async with LocalSite() as site:
        settings = one_feed(site, tmp_path)  # the source "local"
        sources = tmp_path / "sources.toml"
        kept = sources.read_text(encoding="utf-8")
        sources.write_text(kept + kept.replace('"local"', '"gone"').replace("/feed.xml", "/gone.xml"),
                           encoding="utf-8")
        svc = await build(settings, collect=True)
        try:
            watcher = SourcesWatcher(svc, sources)
            await watcher.check(strict=True)
            metrics = Metrics(api=False)
            metrics.watch(svc)
            await svc.collector.run_round(force=True)  # local ok, gone a 404
            before = samples((await metrics.scrape(svc)).decode())
            sources.write_text(kept, encoding="utf-8")
            os.utime(sources, (2e9, 2e9))  # another time than the first file's
            await watcher.check()
            after = samples((await metrics.scrape(svc)).decode())
        finally:
            await svc.close()
    fetched = lambda got: {labels: v for (name, labels), v in got.items()  # noqa: E731
                           if name == "tidings_fetches_total"}
    # Every outcome of a configured source has its series (at 0 until it happens).
    assert fetched(before) == {
        **{(("outcome", o), ("source", s)): 0.0 for o in ("ok", "not_modified", "error")
           for s in ("local", "gone")},
        (("outcome", "ok"), ("source", "local")): 1.0,
        (("outcome", "error"), ("source", "gone")): 1.0}, before
    assert set(fetched(after)) == {(("outcome", o), ("source", "local"))
                                   for o in ("ok", "not_modified", "error")}, after


async def test_a_source_that_stops_bringing_stories_shows_when_it_last_did(tmp_path):
    # A feed that goes on answering the same items (frozen, or moved to a new URL while the
    # old one still answers) is fetched "ok" every round: no error, a fresh last success,
    # and its stored stories steady. The time of its last new story is the one sign.
    from api.metrics import Metrics
    from api.runner import SourcesWatcher
    from api.services import build
    from tests.api.test_runner import ARTICLES, one_feed
    from tests.localsite import LocalSite

    async with LocalSite() as site:
        settings = one_feed(site, tmp_path)  # the source "local"
        svc = await build(settings, collect=True)
        try:
            await SourcesWatcher(svc, tmp_path / "sources.toml").check(strict=True)
            metrics = Metrics(api=False)
            metrics.watch(svc)
            await svc.collector.run_round(force=True)  # every item new
            first = samples((await metrics.scrape(svc)).decode())
            await svc.collector.run_round(force=True)  # the same feed again: nothing new
            again = samples((await metrics.scrape(svc)).decode())
        finally:
            await svc.close()
    new_story = ("tidings_source_last_new_story_timestamp_seconds", (("source", "local"),))
    success = ("tidings_source_last_success_timestamp_seconds", (("source", "local"),))
    assert first[("tidings_stories_collected_total", ())] == len(ARTICLES)
    assert first[new_story] == first[success]
    assert again[success] > first[success] and again[new_story] == first[new_story]


def test_counters_and_histograms_have_no_created_series():
    # prometheus_client wrote a `*_created` gauge beside every counter and histogram series,
    # doubling the counters' series in Prometheus for a value no query read.
    from api.metrics import Metrics

    m = Metrics()
    m.requests.labels("/v1/related", "GET", "200").observe(0.01)
    m.observe_job("collect", "ok")
    names = {name for name, _ in samples(m.exposition().decode())}
    assert "tidings_job_ticks_total" in names and "tidings_request_seconds_count" in names
    assert not [name for name in names if name.endswith("_created")], sorted(names)


async def test_a_disabled_source_reports_no_consecutive_errors(tmp_path, shared_data):
    # Disabling a failing source (enabled = false) kept its error count in
    # tidings_source_consecutive_errors, so the alert on it fired for a source nothing
    # fetches any more, while `sources list` and /v1/sources said `disabled`.
    from aggregator.model import SourceSpec
    from aggregator.store import FetchRecord

    st, server, task = await make_stack(tmp_path, shared_data, limit=3)
    store, now = st.svc.store, datetime.now(UTC)
    spec = SourceSpec("flaky", "http://a.example/feed", "politics")
    try:
        await store.sync_sources([spec], now)
        (c,) = await store.claim_due_sources(now, owner="t", lease_s=60)
        await store.record_fetch(c.id, FetchRecord(ok=False, next_check_at=now, interval_s=900,
                                                   status=503, error="HTTP 503"), now)
        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            before = samples((await http.get("/metrics")).text)
            await store.sync_sources([dataclasses.replace(spec, enabled=False)], now)
            after = samples((await http.get("/metrics")).text)
        key = ("tidings_source_consecutive_errors", (("source", "flaky"),))
        assert before[key] == 1 and key not in after
        assert ("tidings_source_stories", (("source", "flaky"),)) in after  # still listed
    finally:
        await stop_stack(st, server, task)


def test_block_cache_series_start_at_zero():
    # Only the outcome seen so far was exposed: a fresh process (no miss yet) gave a hit-rate
    # query nothing to divide by.
    from prometheus_client import generate_latest

    from api.metrics import Metrics

    text = generate_latest(Metrics().registry).decode()
    got = samples(text)
    for result in ("hit", "miss", "joined"):
        assert got[("tidings_block_cache_total", (("result", result),))] == 0.0


async def test_serve_exports_its_own_series_not_the_collectors_at_zero(tmp_path, shared_data):
    # A `serve` (no collector, no indexer here) exposed tidings_stories_collected_total 0 and
    # tidings_stories_embedded_total 0: on a dashboard, collection and indexing "stopped". And
    # tidings_events_total had no series before the first event, so rate() over a fresh
    # process gave nothing rather than 0.
    from aggregator.settings import load_settings
    from api.app import create_app
    from api.services import build
    from tests.api.conftest import start_server

    settings = load_settings(REPO / "config" / "tidings.toml", env={
        "TIDINGS_DATA_DIR": str(tmp_path), "TIDINGS_INDEX_EMBEDDER": "hash"})
    svc = await build(settings, serve=True)
    await svc.corpus.start()
    port = free_port()
    server, task = await start_server(create_app(svc), port)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as http:
            got = samples((await http.get("/metrics")).text)
    finally:
        server.should_exit = True
        await task
        await svc.close()
    names = {name for name, _ in got}
    assert not names & {"tidings_stories_collected_total", "tidings_stories_embedded_total",
                        "tidings_fetches_total"}, sorted(names)
    for kind in ("impression", "click", "read"):
        assert got[("tidings_events_total", (("type", kind),))] == 0.0
    assert got[("tidings_database_up", ())] == 1.0


@pytest.mark.timeout(120)
async def test_serve_workers_log_lines_say_which_worker_wrote_them(tmp_path):
    # The N workers of `serve --workers N` write to one stream, and their lines carried no
    # process id: two workers' `worker.index_loaded`, or errors, could not be told apart.
    from api.workers import children

    log_path = tmp_path / "serve.log"
    env = serve_env(tmp_path / "data", TIDINGS_LOG_LEVEL="info")
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen([*TIDINGS, "serve", "--workers", "2", "--port", str(free_port())],
                                env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=log_file,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()[-2000:]
            loaded = [line for line in log_path.read_text().splitlines() if "worker.index_loaded" in line]
            if len(loaded) == 2:
                break
            await asyncio.sleep(0.2)
        workers = children(proc.pid)
    finally:
        stop_group(proc)
    assert len(loaded) == 2, log_path.read_text()[-2000:]
    found = [re.search(r"\[(\d+)\] worker\.index_loaded", line) for line in loaded]
    assert all(found), loaded
    assert {int(m[1]) for m in found} == set(workers), (loaded, workers)


def test_a_worker_that_fails_to_start_says_so_in_the_log_format(tmp_path):
    # A `serve --workers` worker set up its logging only after importing the app: a failure
    # there (a broken install, a missing library) was written by Python's last-resort handler,
    # a bare "worker.start_failed" with no time, level, logger nor process id.
    code = """
import asyncio, sys
from aggregator.settings import load_settings
from api.workers import WorkerApp
sys.modules["api.app"] = None  # importing it fails, as a broken install would
messages = [{"type": "lifespan.startup"}]
async def receive():
    return messages.pop(0)
async def send(message):
    print(message["type"])
asyncio.run(WorkerApp(load_settings())._lifespan(receive, send))
"""
    env = serve_env(tmp_path / "data", TIDINGS_LOG_LEVEL="info")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.stdout.strip() == "lifespan.startup.failed", out.stderr
    first = out.stderr.splitlines()[0]
    assert re.fullmatch(r"\S+ \S+ ERROR tidings\.workers\[\d+\] worker\.start_failed", first), out.stderr


async def test_access_log_writes_one_line_per_request_without_the_readers_id(tmp_path, shared_data, caplog):
    # uvicorn's access log was off and nothing replaced it: an operator had no line per
    # request to follow a client's errors or a slow route with. `[api] access_log` turns one
    # on, naming the route (not the path: a forgotten reader's id stayed in the logs).
    import logging

    st, server, task = await make_stack(tmp_path, shared_data, limit=5,
                                        env={"TIDINGS_API_ACCESS_LOG": "true"})
    try:
        async with httpx.AsyncClient(base_url=st.base_url, timeout=20) as http:
            with caplog.at_level(logging.INFO, logger="tidings.access"):
                assert (await http.get("/healthz")).status_code == 200
                assert (await http.head("/healthz")).status_code == 200
                assert (await http.get("/v1/readers/alice-4242/feed")).status_code == 200
                assert (await http.get("/no/such/path")).status_code == 404
                sid = (await http.get("/v1/stories?limit=1")).json()["items"][0]["id"]
                for _ in range(2):  # the second replayed by the fast path, logged all the same
                    assert (await http.get(f"/v1/stories/{sid}/related")).status_code == 200
    finally:
        await stop_stack(st, server, task)
    lines = [r.getMessage() for r in caplog.records if r.name == "tidings.access"]
    assert len(lines) == 7, lines
    assert [line.split(" ms=")[0] for line in lines[5:]] == [
        "http.request method=GET route=/v1/stories/{id}/related status=200"] * 2
    assert lines[0].startswith("http.request method=GET route=/healthz status=200 ms=")
    assert lines[1].startswith("http.request method=HEAD route=/healthz status=200 ms=")
    assert lines[2].startswith("http.request method=GET route=/v1/readers/{reader}/feed status=200 ")
    assert lines[3].startswith("http.request method=GET route=unmatched status=404 ")
    assert "alice-4242" not in caplog.text


async def test_a_requests_traceback_is_logged_through_the_processs_handler(caplog):
    # uvicorn's logging config gave its loggers a handler of their own: a 500's traceback came
    # out as "ERROR:    Exception in ASGI application", without the time or the process of
    # every other line, and beside (not through) the process's handler.
    import logging

    from tests.api.conftest import start_server

    async def broken(scope, receive, send):
        raise RuntimeError("a bug in a route")

    port = free_port()
    with caplog.at_level(logging.WARNING):
        server, task = await start_server(broken, port)
        try:
            async with httpx.AsyncClient(timeout=20) as http:
                assert (await http.get(f"http://127.0.0.1:{port}/x")).status_code == 500
        finally:
            server.should_exit = True
            await task
    errors = [r for r in caplog.records if r.name == "uvicorn.error" and r.exc_info]
    assert errors and "a bug in a route" in caplog.text
