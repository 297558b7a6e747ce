"""A real `tidings serve --workers N` for the tests that need several API processes: the
fast path's shared index, the summed metrics, the shared rate limits."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import subprocess
import time
from pathlib import Path

from tests.e2e.conftest import REPO, TIDINGS, run_cli


def serve_env(data_dir: Path, **settings: str) -> dict[str, str]:
    """An environment for the CLI on `data_dir` with the hashing embedder, `settings` added
    (`TIDINGS_…` names). Inherited TIDINGS_ and PROMETHEUS_ variables are dropped: a
    developer's own settings, or a supervisor's shared folders, would change the run."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TIDINGS_", "PROMETHEUS_"))}
    env.update({"TIDINGS_DATA_DIR": str(data_dir), "TIDINGS_INDEX_EMBEDDER": "hash",
                "TIDINGS_LOG_LEVEL": "warning", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO),
                **settings})
    return env


def start_serve_workers(env: dict[str, str], port: int, workers: int = 2) -> subprocess.Popen:
    """`tidings serve --workers N` in its own process group (stop it with `stop_group`)."""
    return subprocess.Popen([*TIDINGS, "serve", "--workers", str(workers), "--port", str(port)],
                            env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)


def serve_workers_on_bbc(data_dir: Path, shared_data: Path, limit: int = 40
                         ) -> tuple[subprocess.Popen, int]:
    """`tidings serve --workers 2` (`start_serve_workers`) on `data_dir`, into which the
    first `limit` BBC stories are imported first (something to rank); its port."""
    from tests.api.conftest import free_port
    from tests.datasets import bbc_records

    env = serve_env(data_dir)
    lines = "".join(json.dumps(r) + "\n" for r in bbc_records(shared_data, limit=limit))
    imported = run_cli(["import", "-"], env, input=lines, timeout=60)
    assert imported.returncode == 0, imported.stderr
    port = free_port()
    return start_serve_workers(env, port), port


async def serving_workers(proc: subprocess.Popen, port: int, workers: int = 2,
                          timeout_s: float = 60) -> list[int]:
    """The pids of `proc`'s workers once `workers` of them run and /healthz answers 200."""
    from api.workers import children

    deadline = time.monotonic() + timeout_s
    while True:
        assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the workers never answered"
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            conn.request("GET", "/healthz")
            ok = conn.getresponse().status == 200
            conn.close()
        except OSError:
            ok = False
        pids = children(proc.pid)
        if ok and len(pids) == workers:
            return pids
        await asyncio.sleep(0.2)


def owner_of_connection(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """Which process holds the server side of a loopback TCP connection (/proc/net/tcp)."""
    want_local, want_remote = f":{server_port:04X}", f":{client_port:04X}"
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if f[1].endswith(want_local) and f[2].endswith(want_remote):
            inode = f[9]
    if inode is None:
        return None
    for pid in pids:
        try:
            fds = list(Path(f"/proc/{pid}/fd").iterdir())
        except OSError:  # the process died since the list was made (a test killed it)
            continue
        for fd in fds:
            try:
                if os.readlink(fd) == f"socket:[{inode}]":
                    return pid
            except OSError:
                continue
    return None
