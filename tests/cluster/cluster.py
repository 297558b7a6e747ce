"""A Tidings cluster on one machine: real `tidings` processes against a real PostgreSQL.

Pieces the cluster and crash tests share:
- `feed_site`: a LocalSite on 127.0.0.1 serving one small RSS feed per source, built from the
  BBC News corpus in ../shared/data (4 distinct articles a source, a per-source path), with an
  ETag each, so a second poll is a 304 and every request is counted per feed path;
- `Cluster`: starts `tidings collect` / `index --watch` / `serve` as subprocesses with their own
  data dirs, kills them (SIGKILL) or stops them (SIGTERM), and always reaps them;
- `Db`: asyncpg queries that read the truth out of the database (leases, vectors, change log).

Timing knobs come from the environment, so `make soak` and a slow machine can stretch them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

import asyncpg
import httpx

from tests.datasets import bbc_records
from tests.localsite import LocalSite, Route

REPO = Path(__file__).resolve().parents[2]
TIDINGS = [sys.executable, "-m", "api.cli"]
ITEMS_PER_SOURCE = 4
CATEGORIES = ("business", "entertainment", "politics", "sport", "tech")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ------------------------------------------------------------------------------ feeds


def rss(i: int, articles: list[dict], now: datetime) -> bytes:
    """Source i's feed: its articles, each with a link under /s<i>/ and a distinct date."""
    items = []
    for j, a in enumerate(articles):
        when = format_datetime(now - timedelta(minutes=i * ITEMS_PER_SOURCE + j))
        items.append(
            f"<item><title>{escape(a['title'])}</title>"
            f"<link>https://news.example/s{i:04d}/{j}</link>"
            f"<guid>https://news.example/s{i:04d}/{j}</guid>"
            f"<description>{escape(a['text'][:1200])}</description>"
            f"<pubDate>{when}</pubDate></item>")
    return ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
            f"<title>source {i}</title><link>https://news.example/s{i:04d}/</link>"
            f"<description>test feed</description>{''.join(items)}</channel></rss>").encode()


@dataclass
class FeedSite:
    site: LocalSite
    routes: dict[str, Route]  # source name -> its feed route
    stories: int  # distinct story URLs the feeds hold

    def hits(self) -> dict[str, int]:
        return {name: r.hits for name, r in self.routes.items()}

    def set_delay(self, seconds: float) -> None:
        for r in self.routes.values():
            r.delay_s = seconds


async def feed_site(shared_data: Path, n_sources: int) -> FeedSite:
    articles = [a for a in bbc_records(shared_data, CATEGORIES) if a["text"]]
    if len(articles) < n_sources * ITEMS_PER_SOURCE:
        raise ValueError(f"{n_sources} sources need {n_sources * ITEMS_PER_SOURCE} articles, "
                         f"the corpus has {len(articles)}")
    site = LocalSite()
    await site.start()
    now = datetime.now(UTC)
    routes = {}
    for i in range(n_sources):
        mine = articles[i * ITEMS_PER_SOURCE:(i + 1) * ITEMS_PER_SOURCE]
        routes[f"s{i:04d}"] = site.route(f"/feeds/s{i:04d}.xml", body=rss(i, mine, now),
                                          etag=f'"v{i}"', content_type="application/rss+xml")
    return FeedSite(site, routes, n_sources * ITEMS_PER_SOURCE)


def sources_toml(fs: FeedSite) -> str:
    return "".join(
        f'[[source]]\nname = "{name}"\nurl = "{fs.site.url(f"/feeds/{name}.xml")}"\n'
        f'category = "{CATEGORIES[i % len(CATEGORIES)]}"\ninterval = "1h"\n\n'
        for i, name in enumerate(fs.routes))


# ------------------------------------------------------------------------------ database


def asyncpg_dsn(sqlalchemy_url: str) -> str:
    return sqlalchemy_url.replace("postgresql+asyncpg://", "postgresql://")


class Db:
    """Read-only views of the cluster's database, straight from SQL (the ground truth)."""

    def __init__(self, url: str):
        self.dsn = asyncpg_dsn(url)

    async def fetch(self, sql: str, *args):
        conn = await asyncpg.connect(self.dsn)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    async def value(self, sql: str, *args):
        rows = await self.fetch(sql, *args)
        return rows[0][0] if rows else None

    async def execute(self, sql: str, *args) -> None:
        conn = await asyncpg.connect(self.dsn)
        try:
            await conn.execute(sql, *args)
        finally:
            await conn.close()

    async def exists(self) -> bool:
        """The schema is there (the first process has migrated)."""
        return bool(await self.value("SELECT to_regclass('public.sources') IS NOT NULL"))

    async def stories(self) -> int:
        return await self.value("SELECT count(*) FROM stories")

    async def distinct_urls(self) -> int:
        return await self.value("SELECT count(DISTINCT url) FROM stories")

    async def vectors(self) -> int:
        return await self.value("SELECT count(*) FROM story_vectors")

    async def adds_per_story(self) -> dict[int, int]:
        """How many times each story's vector was stored: one `add` in the change log each."""
        rows = await self.fetch("SELECT story_id, count(*) FROM index_changes WHERE op = 'add' "
                                "GROUP BY story_id")
        return {r[0]: r[1] for r in rows}

    async def indexable_ids(self) -> set[int]:
        rows = await self.fetch("SELECT id FROM stories WHERE duplicate_of IS NULL")
        return {r[0] for r in rows}

    async def leases(self) -> dict[str, tuple[str, datetime]]:
        """Sources claimed now: name -> (owner, lease_until)."""
        rows = await self.fetch("SELECT name, lease_owner, lease_until FROM sources "
                                "WHERE lease_owner IS NOT NULL AND lease_until > now()")
        return {r[0]: (r[1], r[2]) for r in rows}

    async def checked_since(self, at: datetime) -> set[str]:
        rows = await self.fetch("SELECT name FROM sources WHERE last_check_at >= $1 "
                                "AND lease_owner IS NULL", at)
        return {r[0] for r in rows}

    async def make_all_due(self) -> datetime:
        """Start a new round: every source due now (as if its interval had passed)."""
        now = await self.value("SELECT now()")
        await self.execute("UPDATE sources SET next_check_at = now()")
        return now


async def create_database(admin_dsn: str) -> str:
    name = f"tidings_cluster_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    base = admin_dsn.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
    return f"{base}/{name}"


async def drop_database(admin_dsn: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


# ------------------------------------------------------------------------------ processes


@dataclass
class Proc:
    role: str  # collect | index | serve
    name: str
    popen: subprocess.Popen
    log: Path
    port: int | None = None

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, n: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-n:]
        except OSError:
            return ""


@dataclass
class Cluster:
    """Tidings processes of one test; `close()` reaps every one of them, whatever happened."""

    db_url: str
    sources_file: Path
    workdir: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    procs: list[Proc] = field(default_factory=list)

    def env(self, data_dir: Path) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
        env.update({
            "TIDINGS_DATABASE_URL": self.db_url,
            "TIDINGS_DATA_DIR": str(data_dir),
            "TIDINGS_SOURCES_FILE": str(self.sources_file),
            "TIDINGS_INDEX_EMBEDDER": "hash",  # coordination is under test, not quality
            "TIDINGS_LOG_LEVEL": "info",
            "TIDINGS_COLLECT_TICK_S": "0.5",
            "TIDINGS_COLLECT_RELOAD_SOURCES_S": "0",
            # Every feed lives on 127.0.0.1: the per-host politeness cap would serialise them.
            "TIDINGS_COLLECT_PER_HOST_LIMIT": "20",
            "TIDINGS_INDEX_TICK_S": "0.5",
            "HF_HUB_OFFLINE": "1",
            "PYTHONPATH": str(REPO),
        })
        env.update(self.env_extra)
        return env

    def start(self, role: str, name: str | None = None, **env_extra: str) -> Proc:
        name = name or f"{role}{sum(p.role == role for p in self.procs)}"
        data_dir = self.workdir / name
        data_dir.mkdir(parents=True, exist_ok=True)
        port = None
        args = {"collect": ["collect"], "index": ["index", "--watch"]}.get(role)
        if role == "serve":
            port = free_port()
            args = ["serve", "--port", str(port)]
        assert args is not None, role
        log = self.workdir / f"{name}.{len(self.procs)}.log"
        with open(log, "w") as out:
            popen = subprocess.Popen([*TIDINGS, *args], cwd=REPO, stdout=out,
                                     stderr=subprocess.STDOUT,
                                     env={**self.env(data_dir), **env_extra})
        proc = Proc(role, name, popen, log, port)
        self.procs.append(proc)
        return proc

    def by_owner(self, owner: str) -> Proc | None:
        """The process behind a lease owner ("host:pid")."""
        pid = int(owner.rsplit(":", 1)[1])
        return next((p for p in self.procs if p.pid == pid), None)

    def kill(self, proc: Proc) -> None:
        proc.popen.send_signal(signal.SIGKILL)
        proc.popen.wait(10)

    def stop(self, proc: Proc, timeout_s: float = 30) -> int:
        proc.popen.send_signal(signal.SIGTERM)
        try:
            return proc.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            proc.popen.kill()
            proc.popen.wait(10)
            raise

    def check_alive(self) -> None:
        dead = [p for p in self.procs if p.popen.poll() not in (None, -signal.SIGKILL, 0)]
        if dead:
            p = dead[0]
            raise AssertionError(f"{p.name} exited with {p.popen.returncode}:\n{p.tail()}")

    def close(self) -> None:
        for p in self.procs:
            if p.alive():
                p.popen.kill()
        for p in self.procs:
            try:
                p.popen.wait(10)
            except subprocess.TimeoutExpired:
                pass

    def logs(self) -> str:
        return "\n".join(f"--- {p.name} (pid {p.pid}, rc {p.popen.returncode})\n{p.tail(1500)}"
                         for p in self.procs)

    async def wait_for(self, check, timeout_s: float, what: str, every_s: float = 0.25):
        """Poll `check()` until it returns True; fail with the last answer and the logs."""
        deadline = time.monotonic() + timeout_s
        last = None
        while time.monotonic() < deadline:
            self.check_alive()
            try:
                last = await check()
            except (httpx.HTTPError, OSError, asyncpg.PostgresError) as e:
                last = repr(e)
            if last is True:
                return
            await asyncio.sleep(every_s)
        raise AssertionError(f"timed out after {timeout_s:.0f}s waiting for {what}: "
                             f"last={last!r}\n{self.logs()}")


async def get_json(client: httpx.AsyncClient, url: str, **params):
    r = await client.get(url, params=params)
    r.raise_for_status()
    return r.json()


async def indexed(client: httpx.AsyncClient, proc: Proc) -> int | None:
    try:
        return (await get_json(client, proc.base + "/healthz"))["indexed"]
    except (httpx.HTTPError, ValueError):
        return None


async def block_ids(client: httpx.AsyncClient, proc: Proc, story_id: int, k: int = 5):
    """A replica's related block for a story: (id, score) in order, nothing else."""
    b = await get_json(client, f"{proc.base}/v1/stories/{story_id}/related", k=k)
    return [(c["id"], c["score"]) for c in b["related"]]


def same_block(a: list[tuple[int, float]], b: list[tuple[int, float]]) -> bool:
    """Same ids in the same order; scores equal but for float noise. Each replica builds its
    FAISS index in its own steps (start-up load, then followed batches), which changes the
    summation order of inner products in the last bits; the API rounds scores to 4 decimals,
    so a noise of 1e-7 can show as 0.78 on one replica and 0.7799 on the other."""
    return ([i for i, _ in a] == [i for i, _ in b]
            and all(abs(x - y) <= 2e-4 for (_, x), (_, y) in zip(a, b, strict=True)))


async def untouched_until(cl: Cluster, fs: FeedSite, names: set[str], lease_end: datetime) -> None:
    """No process fetches these sources while a dead collector's lease on them runs."""
    at = fs.hits()
    while (lease_end - datetime.now(UTC)).total_seconds() > 1.0:
        now = fs.hits()
        stolen = [n for n in names if now[n] != at[n]]
        assert not stolen, f"{len(stolen)} leased sources fetched before the lease ran out"
        cl.check_alive()
        await asyncio.sleep(0.2)


def replicas_hold(client: httpx.AsyncClient, replicas: list[Proc], want: int):
    """A check for Cluster.wait_for: every replica's index holds `want` vectors."""
    async def check():
        sizes = [await indexed(client, r) for r in replicas]
        return all(s == want for s in sizes) or f"replicas hold {sizes}, want {want}"

    return check
