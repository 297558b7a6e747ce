"""Stopping `tidings run` whatever the sources and the API's clients do: a signal ends the
process within seconds, with exit status 0, its claims handed back and its database whole.

The bound asserted (STOP_BOUND_S) is a hang check, not a timing goal: the stop takes about
one second, plus the API's grace (api.services.STOP_GRACE_S) when a request is still under way.
"""

from __future__ import annotations

import asyncio
import signal
import socket
import sqlite3
import subprocess
import time

import pytest

from tests.e2e.conftest import REPO, TIDINGS
from tests.e2e.test_run import free_port
from tests.localsite import LocalSite

pytestmark = pytest.mark.slow

STOP_BOUND_S = 15.0

RSS = b"""<?xml version="1.0"?><rss version="2.0"><channel><title>Slow</title>
<item><title>A story from a slow site</title><link>http://127.0.0.1/slow-story</link></item>
</channel></rss>"""

SOURCE = """
[[source]]
name = "{name}"
url = "{url}"
category = "politics"
interval = "5s"
"""


async def _until(check, timeout_s: float, what: str, proc: subprocess.Popen) -> None:
    """Poll `check` without blocking the loop (the local site answers on it)."""
    deadline = time.monotonic() + timeout_s
    while not check():
        if proc.poll() is not None:
            raise AssertionError(f"tidings exited early ({proc.returncode}):\n{proc.stdout.read()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.1)


def _api_up(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def _half_sent_request(port: int) -> socket.socket:
    """A client that announced a body and sent a tenth of it, then went quiet: uvicorn waited
    for the rest without end, and the process with it."""
    client = socket.create_connection(("127.0.0.1", port))
    client.sendall(b"POST /v1/related HTTP/1.1\r\nHost: tidings\r\nContent-Type: application/json\r\n"
                   b"Content-Length: 1000\r\n\r\n" + b'{"title": "' + b"x" * 89)
    return client


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
async def test_run_stops_within_seconds_during_slow_fetches_and_a_stalled_request(cli_env, tmp_path, sig):
    async with LocalSite() as site:
        site.route("/slow.xml", body=RSS, delay_s=4.0, content_type="application/rss+xml")
        sources = tmp_path / "sources.toml"
        sources.write_text(SOURCE.format(name="slow", url=site.url("/slow.xml"))
                           + SOURCE.format(name="trickle", url=site.url("/trickle")))
        port = free_port()
        env = {**cli_env, "TIDINGS_SOURCES_FILE": str(sources), "TIDINGS_COLLECT_TICK_S": "0.5",
               "TIDINGS_COLLECT_MIN_INTERVAL_S": "1", "TIDINGS_LOG_LEVEL": "info"}
        proc = subprocess.Popen([*TIDINGS, "run", "--port", str(port)], cwd=REPO, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        client = None
        try:
            await _until(lambda: site.in_flight >= 2, 60, "both feeds' fetches under way", proc)
            await _until(lambda: _api_up(port), 60, "the API", proc)
            client = _half_sent_request(port)
            await asyncio.sleep(0.5)  # the request reaches the app and waits for its body
            proc.send_signal(sig)
            try:
                await _until(lambda: proc.poll() is not None, STOP_BOUND_S, "the stop", proc)
            except AssertionError:
                proc.kill()
                raise AssertionError(f"still running {STOP_BOUND_S:g} s after {sig.name}:\n"
                                     f"{proc.communicate()[0][-3000:]}") from None
            out = proc.stdout.read()
            assert proc.returncode == 0, out
        finally:
            if client is not None:
                client.close()
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    db = sqlite3.connect(tmp_path / "data" / "tidings.db")
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        # The fetches cut short hold no claim (fetched again at the next start) and stored
        # nothing of the trickling feed.
        assert db.execute("SELECT name FROM sources WHERE lease_owner IS NOT NULL").fetchall() == []
        assert db.execute("SELECT count(*) FROM stories WHERE source = 'trickle'").fetchone() == (0,)
    finally:
        db.close()
    assert "collect.released" in out
