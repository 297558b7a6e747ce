"""/healthz and /metrics of the roles that serve no API (`collect`, `index --watch`), on their
own listener (`[metrics] port`, api/opslistener.py), over real HTTP on loopback."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import time

import httpx
import pytest

from aggregator.collect import Collector
from aggregator.settings import load_settings
from api import cli, runner
from tests.api.conftest import free_port
from tests.api.test_metrics import samples
from tests.api.test_runner import ARTICLES, REPO_CONFIG, one_feed
from tests.localsite import LocalSite


async def _until(check, what: str, timeout_s: float = 30):
    """Poll `check` (async, returns a truthy value when done) until it is done."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if got := await check():
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.timeout(120)
async def test_a_collector_and_an_indexer_answer_healthz_and_metrics(tmp_path, monkeypatch):
    """A separate collector's and indexer's counters and job health existed nowhere: only a
    process serving the API had /healthz and /metrics."""
    broken = asyncio.Event()  # set: every collection round fails, as with the database away
    original = Collector.run_round

    async def run_round(self, **kw):
        if broken.is_set():
            raise sqlite3.OperationalError("disk I/O error")
        return await original(self, **kw)

    monkeypatch.setattr(Collector, "run_round", run_round)
    async with LocalSite() as site:
        settings = one_feed(site, tmp_path, TIDINGS_COLLECT_TICK_S="0.1", TIDINGS_INDEX_TICK_S="0.1")
        collect_port, index_port = free_port(), free_port()
        ready = [asyncio.Event(), asyncio.Event()]
        tasks = [asyncio.create_task(runner.run_roles(settings, serve=False, collect=True, index=False,
                                                      metrics_port=collect_port, ready=ready[0])),
                 asyncio.create_task(runner.run_roles(settings, serve=False, collect=False, index=True,
                                                      metrics_port=index_port, ready=ready[1]))]
        try:
            await asyncio.wait_for(asyncio.gather(*(r.wait() for r in ready)), 60)
            async with httpx.AsyncClient(timeout=10) as http:
                collector = f"http://127.0.0.1:{collect_port}"
                indexer = f"http://127.0.0.1:{index_port}"

                async def scrape(base: str) -> dict:
                    r = await http.get(f"{base}/metrics")
                    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
                    return samples(r.text)

                collect_ok = ("tidings_job_ticks_total", (("job", "collect"), ("outcome", "ok")))

                async def collected():
                    # The stories are counted as their source's fetch ends, the tick when the
                    # round ends after it: waiting on the stories alone, a loaded machine
                    # scraped between the two and found no ok tick yet (a KeyError).
                    got = await scrape(collector)
                    done = got[("tidings_stories_collected_total", ())] == len(ARTICLES)
                    return got if done and got.get(collect_ok, 0) >= 1 else None

                got = await _until(collected, "the collector's counters and its round's end")
                assert got[("tidings_fetches_total", (("outcome", "ok"), ("source", "local")))] == 1
                assert got[("tidings_source_stories", (("source", "local"),))] == len(ARTICLES)
                # A collector has no index nor recipe: no gauges of them at 0 to alert on.
                assert not {name for name, _ in got} & {
                    "tidings_embedding_recipe_current", "tidings_embedding_backlog", "tidings_index_size",
                    "tidings_block_cache_total", "tidings_search_ranking_cache_total",
                    "tidings_stories_embedded_total", "tidings_events_total"}

                index_ok = ("tidings_job_ticks_total", (("job", "index"), ("outcome", "ok")))

                async def embedded():  # as for the collector: the run's tick ends after its stories
                    got = await scrape(indexer)
                    done = got[("tidings_stories_embedded_total", ())] == len(ARTICLES)
                    return got if done and got.get(index_ok, 0) >= 1 else None

                got = await _until(embedded, "the indexer's counters and its run's end")
                assert got[("tidings_embedding_recipe_current", ())] == 1
                # Nor the collector's counters at 0 in an indexer: "collection stopped".
                assert not {name for name, _ in got} & {"tidings_stories_collected_total",
                                                        "tidings_fetches_total"}

                async def searchable():  # the index follows the vectors a moment later
                    r = await http.get(f"{indexer}/healthz")
                    return r if r.json()["indexed"] == len(ARTICLES) else None

                r = await _until(searchable, "the indexer's index")
                body = r.json()
                assert r.status_code == 200 and body["roles"] == ["index"] and body["status"] == "ok"
                assert body["recipe_current"] is True and body["jobs"]["index"]["failures"] == 0
                r = await http.get(f"{collector}/healthz")
                body = r.json()
                assert r.status_code == 200 and body["roles"] == ["collect"]
                assert (body["status"], body["database"], body["failing"]) == ("ok", True, [])
                assert body["indexed"] is None and body["recipe_current"] is None
                assert body["jobs"]["collect"]["ok_at"].endswith("Z")
                assert "collect.parse_workers" not in body["jobs"]  # a start-up task, no job

                broken.set()

                async def failing():
                    r = await http.get(f"{collector}/healthz")
                    return r if r.json()["failing"] else None

                r = await _until(failing, "the collect job to be named failing")
                body = r.json()
                # Still 200: the process answers, and says which job is down.
                assert r.status_code == 200 and body["status"] == "degraded"
                assert body["failing"] == ["collect"] and body["jobs"]["collect"]["failures"] >= 3
                assert "disk I/O" not in r.text  # the error's text stays in the logs
                got = await scrape(collector)
                assert got[("tidings_job_ticks_total", (("job", "collect"), ("outcome", "failed")))] >= 3
                assert (await http.get(f"{collector}/v1/stories")).status_code == 404  # no API here
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


@pytest.mark.timeout(120)
async def test_failure_counters_are_exposed_at_zero_before_the_first_failure(tmp_path):
    """tidings_job_ticks_total{outcome="failed"} and tidings_fetches_total{outcome="error"}
    appeared only with their first increment, at 1: `increase()` and `rate()` need two
    samples of a series, so the alerts on them missed each job's and each source's first
    failure (a source failing once a day never showed one)."""
    async with LocalSite() as site:
        settings = one_feed(site, tmp_path)
        port, ready = free_port(), asyncio.Event()
        task = asyncio.create_task(runner.run_roles(settings, serve=False, collect=True, index=False,
                                                    metrics_port=port, ready=ready))
        try:
            await asyncio.wait_for(ready.wait(), 60)
            async with httpx.AsyncClient(timeout=10) as http:
                ok = ("tidings_fetches_total", (("outcome", "ok"), ("source", "local")))

                async def fetched():
                    got = samples((await http.get(f"http://127.0.0.1:{port}/metrics")).text)
                    return got if got.get(ok) == 1 else None

                got = await _until(fetched, "the first fetch of the source")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    for outcome in ("error", "not_modified"):
        assert got[("tidings_fetches_total", (("outcome", outcome), ("source", "local")))] == 0
    ticks = {labels: v for (name, labels), v in got.items() if name == "tidings_job_ticks_total"}
    for job in ("collect", "sources", "retention"):  # the collector's scheduled jobs
        for outcome in ("failed", "skipped"):
            assert ticks[(("job", job), ("outcome", outcome))] == 0, ticks


async def test_a_taken_metrics_port_stops_the_role_with_the_address(tmp_path):
    (tmp_path / "sources.toml").write_text("", encoding="utf-8")
    settings = load_settings(REPO_CONFIG, env={
        "TIDINGS_DATA_DIR": str(tmp_path / "data"), "TIDINGS_SOURCES_FILE": str(tmp_path / "sources.toml"),
        "TIDINGS_INDEX_EMBEDDER": "hash"})
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(OSError, match=f"^cannot listen on 127.0.0.1:{port} for /healthz.*: "
                                          "Address already in use$"):
            await asyncio.wait_for(runner.run_roles(settings, serve=False, collect=True, index=False,
                                                    metrics_port=port), 30)


@pytest.mark.parametrize("args", [["collect", "--once"], ["collect", "--source", "a"], ["index"]])
def test_metrics_port_is_refused_on_the_one_off_forms(args, capsys):
    assert cli.main([*args, "--metrics-port", "9100"]) == cli.EXIT_USAGE
    assert "--metrics-port is for the long-running forms" in capsys.readouterr().err
