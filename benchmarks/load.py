"""Load test: the related and widget endpoints under sustained concurrent load, from another process.

Starts a real API (`tidings serve`, its own process) over a fresh SQLite database and FAISS index
filled by `tidings import` with the BBC politics and entertainment stories from ../shared/data
(hashing embedder, so no model loads), then drives, from this process, `GET /v1/stories/{id}/related`
and `GET /v1/widget?url=` with N concurrent keep-alive connections for a fixed time. Reports
throughput, p50/p99 latency per endpoint, every non-200 answer or transport error, and the
server's resident memory (VmRSS from /proc/<pid>/status) sampled through the run. Loopback only.

    .venv/bin/python -m benchmarks.load [--seconds 60] [--concurrency 16] [--json out.json]

The per-client URL limits are switched off for the run (TIDINGS_API_RELATED_URL_PER_MINUTE=0,
TIDINGS_API_RELATED_URL_READS_AT_ONCE=0): one load generator is one client, and the point is
the server's cost, not the limiter's 429s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()
TIDINGS = Path(sys.executable).with_name("tidings")


@dataclass
class Tally:
    """What one endpoint saw: latencies of 200s, and every other outcome by name."""

    latencies_s: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    def summary(self, elapsed_s: float) -> dict:
        lat = sorted(self.latencies_s)
        return {
            "ok": len(lat),
            "errors": sum(self.errors.values()),
            "error_kinds": dict(self.errors),
            "rps": round(len(lat) / elapsed_s, 1),
            "p50_ms": round(percentile(lat, 50) * 1000, 2) if lat else None,
            "p99_ms": round(percentile(lat, 99) * 1000, 2) if lat else None,
            "max_ms": round(lat[-1] * 1000, 2) if lat else None,
        }


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, min(len(sorted_values), round(pct / 100 * len(sorted_values) + 0.5)))
    return sorted_values[rank - 1]


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stack_env(data_dir: Path, port: int) -> dict[str, str]:
    return {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TIDINGS_DATA_DIR": str(data_dir),
        "TIDINGS_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'tidings.db'}",
        "TIDINGS_INDEX_EMBEDDER": "hash",
        "TIDINGS_API_PORT": str(port),
        "TIDINGS_API_RELATED_URL_PER_MINUTE": "0",
        "TIDINGS_API_RELATED_URL_READS_AT_ONCE": "0",
        "TIDINGS_API_EVENTS_PER_MINUTE": "0",
        "TIDINGS_RELATED_MIN_RELEVANCE": "0",  # hashing vectors: see api_bench._settings
    }


def import_stories(data_dir: Path, env: dict[str, str]) -> list[dict]:
    from tests.datasets import bbc_records, write_jsonl

    records = bbc_records(SHARED_DATA)
    jsonl = write_jsonl(records, data_dir / "bbc.jsonl")
    subprocess.run([str(TIDINGS), "import", str(jsonl)], env=env, cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return records


async def wait_ready(base_url: str, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession() as s:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}")
            try:
                async with s.get(f"{base_url}/healthz") as r:
                    if r.status == 200 and (await r.json()).get("indexed"):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("the server did not become ready")


async def story_ids(base_url: str) -> list[int]:
    ids, cursor = [], None
    async with aiohttp.ClientSession() as s:
        while True:
            params = {"limit": "200", **({"cursor": cursor} if cursor else {})}
            async with s.get(f"{base_url}/v1/stories", params=params) as r:
                page = await r.json()
            ids += [c["id"] for c in page["items"]]
            cursor = page["next"]
            if not cursor:
                return ids


async def drive(base_url: str, ids: list[int], urls: list[str], *, seconds: float,
                concurrency: int, server_pid: int, samples_every_s: float = 5.0) -> dict:
    tallies = {"related": Tally(), "widget": Tally()}
    rss: list[tuple[float, int, int]] = []  # (elapsed_s, requests so far, VmRSS KiB)
    done = 0
    stop_at = time.monotonic() + seconds
    rng = random.Random(7)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal done
        while time.monotonic() < stop_at:
            if rng.random() < 0.5:
                name, url = "related", f"{base_url}/v1/stories/{rng.choice(ids)}/related?k=5"
            else:
                name, url = "widget", f"{base_url}/v1/widget"
            params = {"url": rng.choice(urls), "k": "4"} if name == "widget" else None
            t0 = time.perf_counter()
            try:
                async with session.get(url, params=params) as r:
                    await r.read()
                    status = r.status
            except (TimeoutError, aiohttp.ClientError) as e:
                tallies[name].errors[type(e).__name__] += 1
                continue
            finally:
                done += 1
            if status == 200:
                tallies[name].latencies_s.append(time.perf_counter() - t0)
            else:
                tallies[name].errors[f"http_{status}"] += 1

    async def sampler(t_start: float) -> None:
        while time.monotonic() < stop_at:
            rss.append((round(time.monotonic() - t_start, 1), done, rss_kib(server_pid)))
            await asyncio.sleep(samples_every_s)

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t_start = time.monotonic()
        sample_task = asyncio.create_task(sampler(t_start))
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed_s = time.monotonic() - t_start
        await sample_task
    rss.append((round(elapsed_s, 1), done, rss_kib(server_pid)))
    ok = sum(len(t.latencies_s) for t in tallies.values())
    everything = sorted(x for t in tallies.values() for x in t.latencies_s)
    return {
        "seconds": round(elapsed_s, 1),
        "concurrency": concurrency,
        "requests": done,
        "ok": ok,
        "errors": done - ok,
        "rps": round(ok / elapsed_s, 1),
        "p50_ms": round(percentile(everything, 50) * 1000, 2) if everything else None,
        "p99_ms": round(percentile(everything, 99) * 1000, 2) if everything else None,
        "endpoints": {k: t.summary(elapsed_s) for k, t in tallies.items()},
        "rss_kib": rss,
    }


def rss_report(rss: list[tuple[float, int, int]]) -> dict:
    """Start (first sample, after warm-up), middle and end of the run, and the growth between."""
    start, middle, end = rss[0], rss[len(rss) // 2], rss[-1]
    return {"start_kib": start[2], "middle_kib": middle[2], "end_kib": end[2],
            "growth_middle_to_end_kib": end[2] - middle[2], "growth_start_to_end_kib": end[2] - start[2]}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="measured run length (default 60)")
    ap.add_argument("--concurrency", type=int, default=16, help="concurrent connections (default 16)")
    ap.add_argument("--warmup-seconds", type=float, default=5.0,
                    help="load before measuring, so caches and pools are warm (default 5)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    args = ap.parse_args(argv)
    if not SHARED_DATA.is_dir():
        print(f"load: the BBC stories are needed from {SHARED_DATA}", file=sys.stderr)
        return 2
    if not (1 <= args.concurrency <= 256) or not (1 <= args.seconds <= 3600):
        print("load: --concurrency must be 1..256 and --seconds 1..3600", file=sys.stderr)
        return 2

    data_dir = Path(tempfile.mkdtemp(prefix="tidings-load-"))
    port = free_port()
    env = stack_env(data_dir, port)
    base_url = f"http://127.0.0.1:{port}"
    proc = None
    try:
        records = import_stories(data_dir, env)
        log = (data_dir / "server.log").open("wb")
        proc = subprocess.Popen([str(TIDINGS), "serve", "--host", "127.0.0.1", "--port", str(port)],
                                env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        asyncio.run(wait_ready(base_url, proc))
        ids = asyncio.run(story_ids(base_url))
        urls = [r["url"] for r in records]
        rss_ready_kib = rss_kib(proc.pid)
        asyncio.run(drive(base_url, ids, urls, seconds=args.warmup_seconds,
                          concurrency=args.concurrency, server_pid=proc.pid))
        result = asyncio.run(drive(base_url, ids, urls, seconds=args.seconds,
                                   concurrency=args.concurrency, server_pid=proc.pid))
        result.update(stories=len(ids), rss_ready_kib=rss_ready_kib, rss=rss_report(result["rss_kib"]),
                      machine={"cpus": os.cpu_count(), "python": sys.version.split()[0]})
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(data_dir, ignore_errors=True)

    print(f"stories={result['stories']} concurrency={result['concurrency']} "
          f"seconds={result['seconds']} requests={result['requests']} errors={result['errors']}")
    print(f"all:     {result['rps']:8.1f} req/s  p50 {result['p50_ms']} ms  p99 {result['p99_ms']} ms")
    for name, e in result["endpoints"].items():
        print(f"{name + ':':8} {e['rps']:8.1f} req/s  p50 {e['p50_ms']} ms  p99 {e['p99_ms']} ms  "
              f"errors {e['errors']} {e['error_kinds'] or ''}")
    r = result["rss"]
    print(f"server RSS (MiB): ready {result['rss_ready_kib'] / 1024:.1f}, start {r['start_kib'] / 1024:.1f}, "
          f"middle {r['middle_kib'] / 1024:.1f}, end {r['end_kib'] / 1024:.1f} "
          f"(middle->end {r['growth_middle_to_end_kib'] / 1024:+.1f})")
    print("RSS samples (s, requests, MiB): " + ", ".join(
        f"({t}, {n}, {kib / 1024:.1f})" for t, n, kib in result["rss_kib"]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
