"""Backfills that resume (issue 6): `tidings import` and `tidings index --rebuild` interrupted
in a real subprocess, then run again, checked on the SQLite file they leave behind."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from aggregator.store import Store
from recommender.indexer import Indexer
from tests.datasets import bbc_records, write_jsonl
from tests.e2e.conftest import REPO, TIDINGS, run_cli

IMPORT_BATCH = 500  # lines per commit in `cmd_import`


def _count(db: Path, sql: str) -> int:
    with sqlite3.connect(db, timeout=30) as con:
        return con.execute(sql).fetchone()[0]


def _wait_for(predicate, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.05)


def _stored(db: Path) -> int:
    try:
        return _count(db, "SELECT count(*) FROM stories")
    except sqlite3.Error:  # not created / migrated yet
        return 0


@pytest.fixture
def records(shared_data) -> list[dict]:
    recs = bbc_records(shared_data)  # politics + entertainment: ~800 stories
    assert len(recs) > IMPORT_BATCH + 100
    return recs


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_interrupted_import_resumes(cli_env, tmp_path, records, sig):
    db = tmp_path / "data" / "tidings.db"
    lines = [json.dumps(r) for r in records]
    # Feed the first batch and a bit more through a pipe and stop mid-way, so the interrupt
    # comes after one batch is committed and before the rest is read.
    proc = subprocess.Popen([*TIDINGS, "import", "-"], cwd=REPO, env=cli_env, text=True,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        proc.stdin.write("\n".join(lines[:IMPORT_BATCH + 50]) + "\n")
        proc.stdin.flush()
        _wait_for(lambda: _stored(db) >= IMPORT_BATCH - 50)  # linked copies also count as rows
        proc.send_signal(sig)
        if sig == signal.SIGINT:
            proc.stdin.close()  # the interrupt lands at the next await, after the blocked read
        code = proc.wait(timeout=60)
        err = proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == (-9 if sig == signal.SIGKILL else 130)
    if sig == signal.SIGINT:  # what is kept, and how to go on: "stopped" alone left it to guess
        assert err.strip().splitlines() == [
            f"tidings: -: {IMPORT_BATCH} lines stored before the stop; run the same import "
            "again to go on (stored lines are skipped)",
            "tidings: stopped by SIGINT (Ctrl-C)"], err
    before = _stored(db)
    originals_before = _count(db, "SELECT count(*) FROM stories WHERE duplicate_of IS NULL")
    assert 0 < before < len(records)
    assert _count(db, "SELECT count(*) FROM story_vectors") == 0  # never got to embedding

    path = write_jsonl(records, tmp_path / "all.jsonl")
    r = run_cli(["import", str(path)], cli_env)
    assert r.returncode == 0, r.stderr
    after = _stored(db)
    assert after == len({rec["url"] for rec in records})
    # What was stored is skipped (no write, no second embedding), the rest goes in; "new"
    # is what the index gains, the linked copies counted apart.
    originals = _count(db, "SELECT count(*) FROM stories WHERE duplicate_of IS NULL")
    copies = (after - before) - (originals - originals_before)
    assert f"{originals - originals_before} new" in r.stdout, r.stdout
    assert f"{before} already stored, {copies} linked duplicates" in r.stdout, r.stdout
    assert f"embedded {originals} stories; index holds {originals}" in r.stdout
    assert _count(db, "SELECT count(*) FROM story_vectors") == originals
    assert "still lack a vector" not in r.stdout


def test_killed_rebuild_leaves_a_consistent_index(cli_env, tmp_path, records):
    db = tmp_path / "data" / "tidings.db"
    path = write_jsonl(records[:300], tmp_path / "s.jsonl")
    assert run_cli(["import", str(path)], cli_env).returncode == 0
    vectors = _count(db, "SELECT count(*) FROM story_vectors")
    assert vectors > 0
    proc = subprocess.Popen([*TIDINGS, "index", "--rebuild"], cwd=REPO, env=cli_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.5)  # start-up or the rebuild itself, depending on the machine: both must hold
    proc.kill()
    proc.wait(timeout=30)
    # The next run repairs whatever the killed one left against the database, then rebuilds.
    r = run_cli(["index", "--rebuild"], cli_env)
    assert r.returncode == 0, r.stderr
    assert f"{vectors} vectors" in r.stdout and f"index holds {vectors};" in r.stdout
    assert _count(db, "SELECT count(*) FROM story_vectors") == vectors


def test_claims_of_a_killed_indexer_are_reported(cli_env, tmp_path, records):
    """A SIGKILLed indexer cannot hand back its claims: the next run says what is left."""
    db = tmp_path / "data" / "tidings.db"
    path = write_jsonl(records[:40], tmp_path / "s.jsonl")
    assert run_cli(["import", str(path), "--no-index"], cli_env).returncode == 0
    from recommender.embed import make_embedder

    recipe = make_embedder("hash").recipe

    async def claim() -> int:
        store = Store(f"sqlite+aiosqlite:///{db}")
        try:
            return len(await store.claim_embed_backlog(recipe, 25, lease_s=600))
        finally:
            await store.close()

    claimed = asyncio.run(claim())
    r = run_cli(["index"], cli_env)
    assert r.returncode == 0, r.stderr
    originals = _count(db, "SELECT count(*) FROM stories WHERE duplicate_of IS NULL")
    assert f"embedded {originals - claimed} stories" in r.stdout
    assert f"{claimed} stories still lack a vector" in r.stdout


class _BlockingEmbedder:
    """Holds `encode` until released, so the indexer can be interrupted mid-chunk."""

    dim = 8
    recipe = "blocking-test"

    def __init__(self):
        self.started, self.release = threading.Event(), threading.Event()

    def encode(self, texts, batch_size=32):
        self.started.set()
        self.release.wait(30)
        return np.ones((len(texts), self.dim), dtype=np.float32) / np.sqrt(self.dim)


async def test_interrupted_chunk_hands_back_its_claims(tmp_path, records):
    from aggregator.importer import read_jsonl
    from aggregator.store import utcnow

    store = Store(f"sqlite+aiosqlite:///{tmp_path / 'claims.db'}")
    try:
        await store.migrate()
        lines = [json.dumps(r) for r in records[:20]]
        await store.upsert_stories(list(read_jsonl(lines, utcnow())))
        emb = _BlockingEmbedder()
        indexer = Indexer(store, emb, chunk=8)
        task = asyncio.create_task(indexer.run_once())
        await asyncio.to_thread(emb.started.wait, 30)
        task.cancel()  # what Ctrl-C does to `tidings import` / `tidings index`
        with pytest.raises(asyncio.CancelledError):
            await task
        emb.release.set()
        # The 8 stories of the interrupted chunk are claimable again at once.
        jobs = await store.claim_embed_backlog(emb.recipe, 100, lease_s=600)
        assert len(jobs) == await store.backlog_size(emb.recipe) > 8
    finally:
        await store.close()


# `tidings` with a hash embedder that takes 2 s a call: a run is still embedding when the test
# has seen its first vectors stored, whatever the machine's speed.
SLOW_TIDINGS = [TIDINGS[0], "-c", (
    "import sys, time\n"
    "from recommender.embed import HashingEmbedder\n"
    "fast = HashingEmbedder.encode\n"
    "HashingEmbedder.encode = lambda self, texts, batch_size=32: (time.sleep(2), fast(self, texts, batch_size))[1]\n"
    "from api.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n")]


def _vectors(db: Path) -> int:
    try:
        return _count(db, "SELECT count(*) FROM story_vectors")
    except sqlite3.Error:  # not created / migrated yet
        return 0


def _held(db: Path) -> int:
    """Stories whose embedding claim has not run out."""
    return _count(db, "SELECT count(*) FROM stories WHERE embed_lease_until > "
                      "strftime('%Y-%m-%d %H:%M:%f', 'now')")


@pytest.mark.parametrize("command", ["index", "import"])
def test_sigterm_hands_back_the_claims(cli_env, tmp_path, records, command):
    """systemd, `docker stop` and timeout(1) stop a command with SIGTERM: like Ctrl-C, it hands
    its embedding claims back, so the next run embeds everything at once (not after 10 min)."""
    db = tmp_path / "data" / "tidings.db"
    path = write_jsonl(records, tmp_path / "s.jsonl")
    if command == "index":
        assert run_cli(["import", str(path), "--no-index"], cli_env).returncode == 0
        args = ["index"]
    else:
        args = ["import", str(path)]
    proc = subprocess.Popen([*SLOW_TIDINGS, *args], cwd=REPO, env=cli_env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # Interrupted between two saves of one claim: some stored, the rest claimed.
        _wait_for(lambda: _vectors(db) > 0)
        assert _held(db) > 0
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM
    said = ["tidings: stopped by SIGTERM"]  # and no traceback
    if command == "import":  # what is kept, and how to go on: "stopped" alone left it to guess
        said.insert(0, f"tidings: {path}: all its lines are stored ({len(records)}), not all "
                       "embedded yet: `tidings index`, or the same import again, embeds the rest")
    assert err.strip().splitlines() == said, err
    assert _held(db) == 0
    r = run_cli(["index"], cli_env)
    assert r.returncode == 0, r.stderr
    assert "still lack a vector" not in r.stdout
    originals = _count(db, "SELECT count(*) FROM stories WHERE duplicate_of IS NULL")
    assert _count(db, "SELECT count(*) FROM story_vectors") == originals


async def test_interrupt_during_a_save_hands_back_the_claims(tmp_path, records):
    """Ctrl-C while a piece's vectors are being written: that save ends (or rolls back) before
    the claims are handed back. Cancelled mid-statement, its connection kept SQLite's write
    lock and the release failed ("database is locked") after the 30 s busy timeout, silently:
    ~1 interrupt in 8 left a claim held for the whole lease."""
    from sqlalchemy import event

    from aggregator.importer import read_jsonl
    from aggregator.store import utcnow
    from recommender.embed import make_embedder

    db = tmp_path / "claims.db"
    store = Store(f"sqlite+aiosqlite:///{db}")
    try:
        await store.migrate()
        lines = [json.dumps(r) for r in records[:300]]
        await store.upsert_stories(list(read_jsonl(lines, utcnow())))
        emb = make_embedder("hash")
        indexer = Indexer(store, emb, piece=64)
        loop = asyncio.get_running_loop()
        task = asyncio.create_task(indexer.run_once())

        # The interrupt lands exactly while the driver writes the first piece's vectors.
        fired = []

        def cancel_in_insert(conn, cursor, statement, *args):
            if not fired and statement.lstrip().upper().startswith("INSERT INTO STORY_VECTORS"):
                fired.append(statement)
                loop.call_soon(task.cancel)

        event.listen(store.engine.sync_engine, "before_cursor_execute", cancel_in_insert)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert fired
    finally:
        await store.close()
    assert _held(db) == 0
    # The rest is claimable at once: a rerun embeds all of it.
    store = Store(f"sqlite+aiosqlite:///{db}")
    try:
        backlog = await store.backlog_size(emb.recipe)
        assert backlog > 0
        rep = await Indexer(store, emb).drain()
        assert (rep.embedded, rep.backlog) == (backlog, 0)
    finally:
        await store.close()
