"""`tidings run` as an operator runs it: a real process collecting from a local site,
indexing and serving on loopback; hot reload of sources.toml; clean stop; SIGKILL and restart.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time

import httpx
import pytest

from tests.e2e.conftest import REPO, TIDINGS
from tests.localsite import LocalSite

pytestmark = pytest.mark.slow

SOURCE = """
[[source]]
name = "{name}"
url = "{url}"
category = "{category}"
interval = "5s"
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run:
    def __init__(self, env: dict, port: int):
        self.env, self.port = env, port
        self.proc: subprocess.Popen | None = None
        self.base = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        self.proc = subprocess.Popen([*TIDINGS, "run", "--port", str(self.port)], cwd=REPO,
                                     env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True)

    async def get(self, path: str, **params):
        async with httpx.AsyncClient(base_url=self.base, timeout=10) as c:
            return await c.get(path, params=params)

    async def wait_for(self, check, timeout_s: float = 60.0, what: str = ""):
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"tidings run exited early ({self.proc.returncode}):\n{self.proc.stdout.read()}")
            try:
                last = await check()
                if last is True:
                    return last
            except httpx.HTTPError as e:
                last = e
            await asyncio.sleep(0.3)
        self.proc.kill()
        out = self.proc.stdout.read()[-4000:]
        raise AssertionError(f"timed out waiting for {what}: last={last!r}\n{out}")

    async def stories(self) -> list[dict]:
        items, cursor = [], None
        while True:
            r = await self.get("/v1/stories", limit=200, **({"cursor": cursor} if cursor else {}))
            page = r.json()
            items += page["items"]
            cursor = page["next"]
            if not cursor:
                return items

    def stop(self, sig=signal.SIGTERM, timeout_s: float = 30) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout_s)
        finally:
            self.proc.stdout.close()


@pytest.fixture
async def site(shared_data):
    async with LocalSite(shared_data) as s:
        yield s


FEEDS = [("bbc", "news-feeds/fast-news-reader/bbc.xml", "politics"),
         ("npr", "news-feeds/photojournalism/npr.xml", "politics")]


def collecting_env(site: LocalSite, cli_env: dict, sources, feeds=FEEDS, **extra: str) -> dict:
    """`cli_env` for a `tidings run` collecting `feeds` of `site` (written to the file
    `sources`) every few seconds, indexing within a second."""
    sources.write_text("".join(SOURCE.format(name=n, url=site.data_url(p), category=c) for n, p, c in feeds))
    return {**cli_env, "TIDINGS_SOURCES_FILE": str(sources), "TIDINGS_COLLECT_TICK_S": "0.5",
            "TIDINGS_COLLECT_MIN_INTERVAL_S": "1", "TIDINGS_COLLECT_DEFAULT_INTERVAL_S": "5",
            "TIDINGS_INDEX_TICK_S": "0.5", **extra}


async def collected_run(site: LocalSite, env: dict, feeds=FEEDS) -> Run:
    """A `tidings run` of `env` once it has stored and indexed every story of `feeds` (killed
    if it does not; the caller stops it)."""
    run = Run(env, free_port())
    run.start()
    expected = distinct_urls(site, [p for _, p, _ in feeds])
    await run.wait_for(lambda: _count_at_least(run, expected), what=f"{expected} stories")
    await run.wait_for(lambda: _indexed(run, expected), what="all stories indexed")
    return run


async def test_run_collects_indexes_serves_reloads_and_survives_kill(site, cli_env, tmp_path):
    sources = tmp_path / "sources.toml"
    feeds = FEEDS
    env = collecting_env(site, cli_env, sources, TIDINGS_COLLECT_RELOAD_SOURCES_S="0.5",
                         TIDINGS_LOG_LEVEL="info")
    run = await collected_run(site, env)
    try:
        metrics = (await run.get("/metrics")).text
        assert 'tidings_fetches_total{outcome="ok",source="bbc"}' in metrics
        assert 'tidings_source_consecutive_errors{source="npr"} 0.0' in metrics
        assert 'tidings_job_ticks_total{job="collect",outcome="ok"}' in metrics
        health = (await run.get("/healthz")).json()  # the roles' jobs, as they ticked
        assert health["status"] == "ok" and health["failing"] == []
        for job in ("collect", "index", "follow"):
            assert health["jobs"][job]["ok_at"] and health["jobs"][job]["failures"] == 0, job
        story = (await run.stories())[0]
        block = (await run.get(f"/v1/stories/{story['id']}/related", k=3)).json()
        assert len(block["related"]) == 3 and story["id"] not in [c["id"] for c in block["related"]]

        # Hot reload: a new source appears without a restart; a broken edit changes nothing.
        sources.write_text(sources.read_text() + SOURCE.format(
            name="guardian", url=site.data_url("news-feeds/rss-parser/guardian.rss"), category="politics"))
        await run.wait_for(lambda: _source_ok(run, "guardian"), what="guardian collected")
        good = sources.read_text()
        sources.write_text(good + "\n[[source]]\nname = 'x'\nurl = 'http://a/b'\ncategory = 'c'\nbogus = 1\n")
        await asyncio.sleep(1.5)
        names = [s["name"] for s in (await run.get("/v1/sources")).json()["items"]]
        assert sorted(names) == ["bbc", "guardian", "npr"]
        sources.write_text(good)
        total = len(await run.stories())
        assert total == distinct_urls(site, [p for _, p, _ in feeds] + ["news-feeds/rss-parser/guardian.rss"])
        assert run.stop() == 0  # clean stop on SIGTERM
    finally:
        if run.proc.poll() is None:
            run.proc.kill()

    # Restart: nothing lost, nothing duplicated, the saved index matches.
    run.start()
    try:
        await run.wait_for(lambda: _indexed(run, total), what="index loaded after restart")
        stories = await run.stories()
        assert len(stories) == total and len({s["url"] for s in stories}) == total
        # Heavy ingest, then SIGKILL in the middle of it.
        sources.write_text(good + SOURCE.format(
            name="heise", url=site.data_url("news-feeds/fast-news-reader/heise.xml"), category="tech"))
        await run.wait_for(lambda: _count_at_least(run, total + 1), what="ingest started")
        run.stop(signal.SIGKILL)
    finally:
        if run.proc.poll() is None:
            run.proc.kill()

    run.start()
    try:
        final = distinct_urls(site, [p for _, p, _ in feeds] + ["news-feeds/rss-parser/guardian.rss",
                                                             "news-feeds/fast-news-reader/heise.xml"])
        await run.wait_for(lambda: _count_at_least(run, final), what="ingest finished after kill")
        await run.wait_for(lambda: _indexed(run, final), what="index repaired after kill")
        stories = await run.stories()
        assert len({s["url"] for s in stories}) == len(stories) == final
    finally:
        assert run.stop() == 0


def distinct_urls(site: LocalSite, paths: list[str]) -> int:
    """How many stories these captured feeds hold: distinct canonical URLs of usable items."""
    from datetime import UTC, datetime

    from aggregator.normalize import normalize
    from aggregator.parse import parse_document

    urls = set()
    for p in paths:
        doc = parse_document((site.data_dir / p).read_bytes(), base_url=site.data_url(p))
        urls |= {d.url for i in doc.items if (d := normalize(i, source=None, now=datetime.now(UTC)))}
    return len(urls)


async def _count_at_least(run: Run, n: int):
    count = len(await run.stories())
    return count >= n or f"only {count} stories"


async def _indexed(run: Run, n: int):
    h = (await run.get("/healthz")).json()
    return h["indexed"] == n and len(await run.stories()) == n


async def _source_ok(run: Run, name: str):
    items = (await run.get("/v1/sources")).json()["items"]
    return any(s["name"] == name and s["status"] == "ok" and s["stories"] > 0 for s in items)
