"""Per-client token buckets (api/ratelimit.py): pure, with an injected clock; the buckets
shared by the workers of `serve --workers` also across real processes, and in a real serve."""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import itertools
import json
import multiprocessing
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from api.ratelimit import RateLimiter, SharedRateLimiter


@pytest.fixture(params=["memory", "shared"])
def make_limiter(request, tmp_path):
    """Either kind of limiter, given a clock: both must charge a client alike."""
    made = []

    def make(clock):
        if request.param == "memory":
            return RateLimiter(clock=clock)
        path = tmp_path / "buckets"
        if not path.exists():
            SharedRateLimiter.create(path)
        made.append(SharedRateLimiter(path, clock=clock))
        return made[-1]

    yield make
    for rl in made:
        rl.close()


def test_a_bucket_empties_and_refills_with_time(make_limiter):
    now = [0.0]
    rl = make_limiter(lambda: now[0])
    assert all(rl.allow(("a",), 60) for _ in range(60))
    assert not rl.allow(("a",), 60)
    assert rl.allow(("b",), 60)  # another client has its own bucket
    now[0] = 1.0  # a token a second at 60 a minute
    assert rl.allow(("a",), 60) and not rl.allow(("a",), 60)
    now[0] = 31.0  # refilled for 30 s, never past a minute's worth
    assert [rl.allow(("a",), 60, cost=10) for _ in range(4)] == [True, True, True, False]
    now[0] = 1000.0
    assert sum(rl.allow(("a",), 60) for _ in range(100)) == 60
    assert rl.allow(("off",), 0)  # 0 = no limit


def test_a_flood_of_new_clients_does_not_reset_a_throttled_one():
    """Memory stays bounded, and the client that keeps knocking stays throttled: clearing
    every bucket when full (as before) handed it a fresh one after 1,000 new addresses."""
    rl = RateLimiter(clock=lambda: 0.0, max_keys=1_000)
    while rl.allow(("abuser",), 10):
        pass
    for i in range(5_000):
        rl.allow((f"10.0.{i // 256}.{i % 256}",), 10)
        if i % 100 == 0:
            assert not rl.allow(("abuser",), 10), i
    assert len(rl._buckets) <= 1_000


@dataclasses.dataclass(frozen=True)
class Stopped:
    """A clock stopped at `t`: picklable, for a spawned process (no refill while it runs)."""

    t: float

    def __call__(self) -> float:
        return self.t


# One client's minute: each worker alone could take it all, so buckets of their own would
# have allowed twice as much. Many, so that the two processes do charge at the same time.
BUDGET = 10_000
CLIENT = ("events", "192.0.2.7")


def charge_a_minutes_worth(path: str, start, answers) -> None:
    """A worker's share of one client's requests, sent once both workers are ready."""
    rl = SharedRateLimiter(path, clock=Stopped(0.0))
    start.wait(timeout=60)
    answers.put(sum(rl.allow(CLIENT, BUDGET) for _ in range(BUDGET)))


@pytest.mark.timeout(60)
def test_workers_sharing_the_file_share_each_clients_budget(tmp_path):
    """Two processes charging one client together get its limit between them, not the limit
    each (with a bucket per worker, `serve --workers N` allowed N times the limit)."""
    path = tmp_path / "buckets"
    SharedRateLimiter.create(path)
    spawn = multiprocessing.get_context("spawn")  # as uvicorn starts its workers
    start, answers = spawn.Barrier(2), spawn.Queue()
    procs = [spawn.Process(target=charge_a_minutes_worth, args=(str(path), start, answers))
             for _ in range(2)]
    for p in procs:
        p.start()
    shares = [answers.get(timeout=50) for _ in procs]
    for p in procs:
        p.join(timeout=10)
        assert p.exitcode == 0
    assert sum(shares) == BUDGET, shares
    # What they left is what a third process finds: empty, then refilled with time.
    rl = SharedRateLimiter(path, clock=Stopped(0.0))
    try:
        assert not rl.allow(CLIENT, BUDGET)
        rl.clock = Stopped(3.0)  # 3 s of 10,000 a minute
        assert sum(rl.allow(CLIENT, BUDGET) for _ in range(1_000)) == 500
    finally:
        rl.close()


@pytest.mark.timeout(60)
def test_threads_of_one_worker_share_each_clients_budget_too(tmp_path):
    """Threads sharing one mapped file: its flock is held by the descriptor, so it kept no
    thread of the same process out (the GIL goes to another thread during the flock call)."""
    path = tmp_path / "buckets"
    SharedRateLimiter.create(path)
    rl = SharedRateLimiter(path, clock=Stopped(0.0))
    start = threading.Barrier(4)

    def share() -> int:
        start.wait(timeout=30)
        return sum(rl.allow(CLIENT, BUDGET) for _ in range(BUDGET))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads taking turns mid-charge, as a busy process's may
    try:
        with ThreadPoolExecutor(4) as pool:
            shares = list(pool.map(lambda _: share(), range(4)))
    finally:
        sys.setswitchinterval(interval)
        rl.close()
    assert sum(shares) == BUDGET, shares


def test_the_shared_file_stays_its_size_and_a_knocking_client_its_bucket(tmp_path):
    """A flood of distinct clients takes the slots charged longest ago, within a short probe:
    the file never grows, a client gone quiet is forgotten, and one that keeps knocking is
    recent, so it stays throttled."""
    path = tmp_path / "buckets"
    SharedRateLimiter.create(path, slots=1_024)
    size = path.stat().st_size
    ticks = itertools.count()
    rl = SharedRateLimiter(path, clock=lambda: next(ticks) / 1000)  # a millisecond a charge
    try:
        assert rl.allow(("quiet",), 1) and not rl.allow(("quiet",), 1)
        assert rl.allow(("abuser",), 1)
        for i in range(5_000):
            rl.allow((f"10.0.{i // 256}.{i % 256}",), 10)
            if i % 100 == 0:
                assert not rl.allow(("abuser",), 1), i
        assert path.stat().st_size == size
        assert rl.allow(("quiet",), 1)  # its slot went to a newer client: a fresh bucket
    finally:
        rl.close()


def limits_file_of(pid: int) -> str | None:
    """The buckets' file a `serve --workers` worker was told of (its environment)."""
    from api.ratelimit import SHARED_LIMITS_ENV

    for entry in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
        name, _, value = entry.decode().partition("=")
        if name == SHARED_LIMITS_ENV:
            return value
    return None


@pytest.mark.timeout(120)
async def test_serve_workers_hold_a_clients_limit_between_them(tmp_path):
    """A client sending events over new connections, which the kernel hands to either worker,
    is refused past `api.events_per_minute` by both: with a bucket per worker it got twice
    the limit through `serve --workers 2`."""
    from api.workers import children
    from tests.api.conftest import free_port
    from tests.api.serveworkers import owner_of_connection, serve_env, start_serve_workers
    from tests.e2e.conftest import run_cli, stop_group

    limit = 2  # a token back every 30 s: none while the requests below are sent
    env = serve_env(tmp_path, TIDINGS_API_EVENTS_PER_MINUTE=str(limit))
    story = {"url": "https://news.example/limits", "title": "A story read over and over"}
    imported = run_cli(["import", "-"], env, input=json.dumps(story) + "\n", timeout=60)
    assert imported.returncode == 0, imported.stderr
    event = json.dumps({"reader": "r-limit", "url": story["url"], "type": "impression"})
    port = free_port()
    proc = start_serve_workers(env, port)
    statuses: list[int] = []
    refused_by: set[int] = set()
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and len(refused_by) < 2:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            workers = children(proc.pid)
            try:  # several connections waiting at once, so that both workers accept some
                conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(6)]
                for c in conns:
                    c.connect()
            except ConnectionRefusedError:  # not listening yet
                await asyncio.sleep(0.2)
                continue
            if not statuses:
                deadline = min(deadline, time.monotonic() + 60 / limit - 5)
            for c in conns:  # one request each, one after another
                c.request("POST", "/v1/events", event, {"Content-Type": "application/json"})
                resp = c.getresponse()
                resp.read()
                statuses.append(resp.status)
                if resp.status == 429:
                    refused_by.add(owner_of_connection(port, c.sock.getsockname()[1], workers))
                    refused_by.discard(None)
                c.close()
            await asyncio.sleep(0.1)
        assert len(refused_by) == 2, f"both workers never answered: {statuses}"
        assert statuses.count(202) == limit, statuses  # not the limit for each worker
        assert statuses == [202] * limit + [429] * (len(statuses) - limit), statuses
        files = {limits_file_of(pid) for pid in refused_by}
        assert len(files) == 1 and None not in files, files
        buckets = Path(files.pop())
        assert buckets.is_file()
    finally:
        stop_group(proc)
    assert proc.returncode == 0
    assert not buckets.parent.exists()  # removed with the serve


def test_an_ipv6_client_is_one_bucket_for_its_whole_64():
    """Keyed by the whole address, a host with a /64 took a fresh address per request (privacy
    addresses do it by themselves) and never met the limit."""
    from api.ratelimit import client_key

    assert client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff:ffff:ffff:fffe")
    assert client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:2::1") != client_key("2001:db8:1:3::1")
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key("::ffff:192.0.2.7") == client_key("192.0.2.7") == "192.0.2.7"
    assert client_key("192.0.2.7") != client_key("192.0.2.8")
    assert client_key("testclient") == "testclient"
