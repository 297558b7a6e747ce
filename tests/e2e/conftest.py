"""Run the real `tidings` command in a subprocess with its own data dir and settings."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TIDINGS = [sys.executable, "-m", "api.cli"]


@pytest.fixture
def cli_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    env.update({
        "TIDINGS_DATA_DIR": str(tmp_path / "data"),
        "TIDINGS_INDEX_EMBEDDER": "hash",
        "TIDINGS_LOG_LEVEL": "warning",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(REPO),
    })
    return env


def make_database(env: dict) -> None:
    """The database of `env`'s data dir, made with the real migrations as `collect` or
    `import` make it, without a subprocess: the commands that only read refuse a data dir
    without one (api.services.build)."""
    from aggregator.settings import default_database_url, with_async_driver
    from aggregator.store import Store

    url = env.get("TIDINGS_DATABASE_URL") or default_database_url(Path(env["TIDINGS_DATA_DIR"]))

    async def make() -> None:
        store = Store(with_async_driver(url))
        try:
            await store.migrate()
        finally:
            await store.close()

    asyncio.run(make())


def run_cli(args: list[str], env: dict, *, input: str | None = None, timeout: float = 120):
    return subprocess.run([*TIDINGS, *args], cwd=REPO, env=env, input=input, text=True,
                          capture_output=True, timeout=timeout)


def stop_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM to a process started with `start_new_session=True` and all it started; SIGKILL
    to what is left after `timeout` seconds."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
