"""Cached related blocks per second through a real `tidings serve`, driven by wrk.

Synthetic data (as benchmarks/api_bench.py, whose helpers build it): n stories with random
titles and texts and random 384-d unit vectors stored under the MiniLM recipe, so that the
served processes (configured like any deployment, `index.embedder = "minilm"`) load them; the
model itself is never loaded, as no request needs a text embedded. Cost figures only.

Each configuration is a real `tidings serve` started from the command line in its own process
group; the load generator is Debian's `wrk` (C, one thread, `make loadtools` installs it) in
another process. Both share the machine's 2 cores, so the client's CPU is part of the figure.
Configurations, measured in the same run one after the other:

  app       `tidings serve` with `api.fast_path = false`: every request through FastAPI
            (routing, validation, middleware, the app's block cache): the baseline
  fast      `tidings serve`, the fast path (api/fastpath.py) answering from recorded blocks
  fast x2   `tidings serve --workers 2`: two processes on one socket, one memory-mapped index

Loads, each after a warm-up that fills every worker's cache: `json` rotates over `hot` story
ids (`GET /v1/stories/{id}/related?k=5`), `widget` over the same stories' URLs
(`GET /v1/widget?url=...`), `304` repeats the JSON loads with the ETag each answer carried.
For `fast x2` the index mapping of each worker is read from /proc/<pid>/smaps (Rss, Pss,
Shared) next to its smaps_rollup, to show the pages are shared rather than copied.

    .venv/bin/python -m benchmarks.serve_bench [10000]
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import numpy as np

from api.workers import children, mapped_kib, rollup_kib
from benchmarks.api_bench import DIM, _free_port, bulk_fill

REPO = Path(__file__).resolve().parents[1]
CONFIGS = (("app", 1, False), ("fast", 1, True), ("fast x2", 2, True))
LOADS = ("json", "widget", "304")


def _env(tmp: Path, fast_path: bool) -> dict[str, str]:
    return {**os.environ, "TIDINGS_DATA_DIR": str(tmp), "TIDINGS_INDEX_EMBEDDER": "minilm",
            "TIDINGS_LOG_LEVEL": "warning", "TIDINGS_API_FAST_PATH": "true" if fast_path else "false",
            "HF_HUB_OFFLINE": "1"}


async def _fill(tmp: Path, n: int, hot: int) -> list[dict]:
    """The synthetic store; returns `hot` random stories' ids and URLs."""
    from aggregator.settings import load_settings
    from aggregator.store import Store
    from recommender.embed import make_embedder

    settings = load_settings(REPO / "config" / "tidings.toml", env=_env(tmp, True))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    store = Store(settings.database_url)
    try:
        await store.migrate()
        embedder = make_embedder(settings.index.embedder)  # the recipe only: no model is loaded
        assert embedder.dim == DIM
        rng = np.random.default_rng(n)
        ids, _ = await bulk_fill(store, n, embedder.recipe, rng)
        picks = [int(i) for i in rng.choice(ids, size=hot, replace=False)]
        stories = await store.get_stories(picks)
        return [{"id": i, "url": stories[i].url} for i in picks]
    finally:
        await store.close()


async def cpu_per_answer(tmp: Path, hot: list[dict], n: int = 2000) -> dict:
    """CPU microseconds per cached answer inside the ASGI app, HTTP server and client left out:
    the part the fast path changes, and a figure the machine's other load hardly moves (CPU
    time, not wall time). Both apps run in this process over the same store, one at a time."""
    from aggregator.settings import load_settings
    from api.app import create_app
    from api.services import build

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    statuses: list[int] = []

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    out: dict = {}
    for fast_path in (False, True):
        svc = await build(load_settings(REPO / "config" / "tidings.toml", env=_env(tmp, fast_path)),
                          serve=True)
        try:
            await svc.corpus.start()
            app = create_app(svc)
            story = hot[0]
            first = f"/v1/stories/{story['id']}/related"
            cases = {"json": (first, b"k=5", []),
                     "widget": ("/v1/widget", urllib.parse.urlencode({"url": story["url"]}).encode(), [])}
            for name, (path, query, headers) in list(cases.items()):
                scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                         "method": "GET", "scheme": "http", "path": path, "raw_path": path.encode(),
                         "query_string": query, "root_path": "", "headers": [(b"host", b"bench")],
                         "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000)}
                result: list[tuple] = []
                for label, extra in ((name, headers), (name + " 304", None)):
                    if extra is None:  # revalidate with the ETag the answer carries
                        etag = await _etag_of(app, scope, receive)
                        extra = [(b"if-none-match", etag)]
                    s = {**scope, "headers": [*scope["headers"], *extra]}
                    for _ in range(50):  # recorded, warm
                        await app(dict(s), receive, send)
                    statuses.clear()
                    c0 = time.process_time()
                    for _ in range(n):
                        await app(dict(s), receive, send)
                    result.append((label, round((time.process_time() - c0) / n * 1e6, 1),
                                   sorted(set(statuses))))
                for label, us, seen in result:
                    out.setdefault(label, {})["fast" if fast_path else "app"] = us
                    out[label]["statuses"] = seen
        finally:
            await svc.close()
    return out


async def _etag_of(app, scope: dict, receive) -> bytes:
    found: list[bytes] = []

    async def send(message):
        if message["type"] == "http.response.start":
            found.extend(v for k, v in message["headers"] if k == b"etag")

    await app(dict(scope), receive, send)
    return found[0]


def _get(url: str, headers: dict | None = None, timeout: float = 30) -> tuple[int, dict, bytes]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class Server:
    """`tidings serve` in its own process group, stopped with SIGTERM (then SIGKILL)."""

    def __init__(self, tmp: Path, workers: int, fast_path: bool):
        self.port = _free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        args = [str(REPO / ".venv" / "bin" / "tidings"), "serve", "--port", str(self.port)]
        if workers > 1:
            args += ["--workers", str(workers)]
        self.log = open(tmp / f"serve-{self.port}.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, env=_env(tmp, fast_path), cwd=REPO, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)

    def wait_ready(self, index_file: str, timeout_s: float = 300) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.flush()
                tail = Path(self.log.name).read_text(errors="replace")[-2000:]
                raise RuntimeError(f"tidings serve exited with {self.proc.returncode}:\n{tail}")
            try:
                if _get(self.base + "/healthz", timeout=5)[0] == 200 and (
                        self.workers == 1 or len(self.worker_pids(index_file)) == self.workers):
                    return
            except OSError:
                pass
            time.sleep(0.3)
        raise TimeoutError("tidings serve did not come up")

    def worker_pids(self, index_file: str) -> list[int]:
        """The workers: the children that map the index file (not multiprocessing's tracker)."""
        return [p for p in children(self.proc.pid) if mapped_kib(p, index_file)]

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=10)
        self.log.close()


def wrk(base: str, requests: list[tuple[str, dict]], *, seconds: float, connections: int,
        tmp: Path) -> dict:
    """One wrk run rotating over `requests` (path, headers); req/s, p50/p99 ms, errors."""
    script = tmp / "rotate.lua"
    entries = ",\n".join(
        "{" + json.dumps(path) + ", {" + ", ".join(f"[{json.dumps(k)}] = {json.dumps(v)}"
                                                    for k, v in headers.items()) + "}}"
        for path, headers in requests)
    # No `response` callback: it makes wrk parse every answer in Lua, and it would be the
    # client's cost we measure. wrk counts statuses other than 2xx/3xx itself.
    script.write_text(
        "local reqs = {\n" + entries + "\n}\nlocal i = 0\n"
        "request = function()\n  i = i % #reqs + 1\n"
        "  return wrk.format('GET', reqs[i][1], reqs[i][2])\nend\n"
        "done = function(summary, latency, requests)\n"
        "  io.write(string.format('JSON {\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"requests\": %d, "
        "\"seconds\": %.3f, \"socket_errors\": %d}\\n', latency:percentile(50) / 1000, "
        "latency:percentile(99) / 1000, summary.requests, summary.duration / 1e6, "
        "summary.errors.connect + summary.errors.read + summary.errors.write + "
        "summary.errors.timeout))\nend\n", encoding="utf-8")
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script),
                          base], capture_output=True, text=True, timeout=seconds + 60, check=True)
    line = next(x for x in out.stdout.splitlines() if x.startswith("JSON "))
    data = json.loads(line[5:])
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    data["bad_status"] = int(non_2xx.group(1)) if non_2xx else 0
    data["rps"] = round(data["requests"] / data["seconds"], 1)
    data["p50_ms"], data["p99_ms"] = round(data["p50_ms"], 2), round(data["p99_ms"], 2)
    return data


def _loads(base: str, hot: list[dict]) -> dict[str, list[tuple[str, dict]]]:
    json_paths = [f"/v1/stories/{h['id']}/related?k=5" for h in hot]
    widget_paths = ["/v1/widget?" + urllib.parse.urlencode({"url": h["url"]}) for h in hot]
    revalidate = []
    for path in json_paths:
        status, headers, _ = _get(base + path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status}")
        revalidate.append((path, {"If-None-Match": headers["etag"]}))
    return {"json": [(p, {}) for p in json_paths], "widget": [(p, {}) for p in widget_paths],
            "304": revalidate}


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(n: int = 10_000, *, seconds: float = 5.0, connections: int = 32, hot: int = 16) -> dict:
    if shutil.which("wrk") is None:
        return {"skipped": "wrk is not installed (make loadtools)"}
    with tempfile.TemporaryDirectory(prefix="tidings-serve-bench-") as tmp_name:
        tmp = Path(tmp_name)
        t0 = time.perf_counter()
        hot_set = asyncio.run(_fill(tmp, n, hot))
        cpu = asyncio.run(cpu_per_answer(tmp, hot_set))
        result: dict = {"data": "synthetic stories + random unit vectors", "n": n,
                        "fill_s": round(time.perf_counter() - t0, 1), "seconds": seconds,
                        "connections": connections, "hot": hot, "loadavg_start": _loadavg(),
                        "rows": [], "cpu_us": cpu}
        for name, workers, fast_path in CONFIGS:
            server = Server(tmp, workers, fast_path)
            try:
                t0 = time.perf_counter()
                server.wait_ready("index.faiss")
                row: dict = {"config": name, "workers": workers, "fast_path": fast_path,
                             "start_s": round(time.perf_counter() - t0, 1)}
                loads = _loads(server.base, hot_set)
                for load in LOADS:
                    # Warm-up: every worker answers each request once and records it.
                    wrk(server.base, loads[load], seconds=1, connections=connections, tmp=tmp)
                    row[load] = wrk(server.base, loads[load], seconds=seconds,
                                    connections=connections, tmp=tmp)
                # Fresh connections land on any worker: each must know the ETag another gave.
                row["revalidated_304"] = sum(
                    _get(server.base + path, headers)[0] == 304 for path, headers in loads["304"])
                if workers > 1:
                    row["memory"] = [{"pid": p, "index_mapping_kib": mapped_kib(p, "index.faiss"),
                                      "rollup_kib": rollup_kib(p)}
                                     for p in server.worker_pids("index.faiss")]
                row["loadavg"] = _loadavg()
                result["rows"].append(row)
            finally:
                server.stop()
        result["loadavg_end"] = _loadavg()
        index = next(tmp.glob("data/index/*/index.faiss"), None) or next(tmp.glob("index/*/index.faiss"), None)
        result["index_file_kib"] = index.stat().st_size // 1024 if index else None
    return result


def format_table(r: dict) -> list[str]:
    out = ["| configuration | JSON req/s | p50 / p99 ms | widget req/s | p50 / p99 ms "
           "| 304 req/s | p50 / p99 ms | bad status | 304 on a fresh connection |",
           "|---|---|---|---|---|---|---|---|---|"]
    for row in r["rows"]:
        cells = [row["config"]]
        bad = 0
        for load in LOADS:
            m = row[load]
            cells += [f"{m['rps']:,.0f}", f"{m['p50_ms']} / {m['p99_ms']}"]
            bad += m["bad_status"] + m["socket_errors"]
        out.append("| " + " | ".join(cells) + f" | {bad} | {row['revalidated_304']}/{r['hot']} |")
    return out


def format_cpu(r: dict) -> list[str]:
    out = ["| cached answer | CPU µs in the app (fast path off) | with the fast path | ratio |",
           "|---|---|---|---|"]
    for label, m in r.get("cpu_us", {}).items():
        out.append(f"| {label} (status {', '.join(map(str, m['statuses']))}) | {m['app']} "
                   f"| {m['fast']} | {m['app'] / m['fast']:.0f}× |")
    return out if len(out) > 2 else []


def format_memory(r: dict) -> list[str]:
    out = []
    for row in r["rows"]:
        for w in row.get("memory", []):
            m, roll = w["index_mapping_kib"] or {}, w["rollup_kib"]
            out.append(f"| {row['config']} pid {w['pid']} | {m.get('Rss', 0):,} | {m.get('Pss', 0):,} "
                       f"| {m.get('Shared_Clean', 0):,} | {roll.get('Rss', 0):,} | {roll.get('Pss', 0):,} "
                       f"| {roll.get('Shared_Clean', 0):,} |")
    if not out:
        return []
    return ["| worker | index.faiss Rss KiB | Pss | Shared | process Rss KiB | Pss | Shared |",
            "|---|---|---|---|---|---|---|", *out]


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    res = run(n)
    print(json.dumps(res, indent=1))
    if "rows" in res:
        print("\n".join(format_table(res) + [""] + format_cpu(res) + [""] + format_memory(res)))
