"""`tidings backup DEST` as an operator uses it: taken while `tidings run` collects and takes
readers' events, restored into a fresh data dir, started again (README, Backup and restore)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess

import httpx
import pytest

from tests.e2e.conftest import REPO, TIDINGS, make_database, run_cli
from tests.e2e.test_run import Run, _indexed, collected_run, collecting_env, free_port
from tests.localsite import LocalSite

pytestmark = pytest.mark.slow


@pytest.fixture
async def site(shared_data):
    async with LocalSite(shared_data) as s:
        yield s


async def _post_events(base: str, reader: str, story_ids: list[int], start: int = 0) -> None:
    events = [{"reader": reader, "story_id": sid, "type": "click", "id": f"{reader}-{start + i}"}
              for i, sid in enumerate(story_ids)]
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        r = await c.post("/v1/events", json={"events": events})
        assert r.status_code == 202 and r.json()["accepted"] == len(events), r.text


async def _reader_events(run: Run, reader: str) -> list[dict]:
    r = await run.get(f"/v1/readers/{reader}")
    return r.json()["events"] if r.status_code == 200 else []


async def test_a_backup_taken_while_run_writes_restores_stories_events_and_takedowns(
        site, cli_env, tmp_path):
    sources = tmp_path / "sources.toml"
    env = collecting_env(site, cli_env, sources, TIDINGS_API_EVENTS_PER_MINUTE="100000")
    run = await collected_run(site, env)
    try:
        stories = await run.stories()
        ids = [s["id"] for s in stories]
        await _post_events(run.base, "reader-1", ids[:5])
        async with httpx.AsyncClient(base_url=run.base, timeout=10) as c:
            gone = await c.delete(f"/v1/stories/{ids[-1]}", params={"reason": "court order"})
        assert gone.status_code == 200, gone.text

        async def stored(reader: str, n: int):
            return len(await _reader_events(run, reader)) >= n or "events not stored yet"

        await run.wait_for(lambda: stored("reader-1", 5), what="reader-1's events")

        # A second reader's events keep coming, one request after another, while the backup
        # copies the database: the copy must be whole and consistent all the same.
        writing = True

        async def keep_writing() -> int:
            sent = 0
            while writing:
                await _post_events(run.base, "reader-2", ids[:3], start=sent)
                sent += 3
                await asyncio.sleep(0.02)
            return sent

        writer = asyncio.create_task(keep_writing())
        await run.wait_for(lambda: stored("reader-2", 3), what="reader-2's first events")
        dest = tmp_path / "backups" / "b1"
        dest.parent.mkdir()
        proc = await asyncio.create_subprocess_exec(
            *TIDINGS, "backup", str(dest), cwd=REPO, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 120)
        writing = False
        sent = await writer
        assert proc.returncode == 0, err.decode()
        assert out.decode().startswith("backed up "), out
        await run.wait_for(lambda: stored("reader-2", sent), what="every reader-2 event")

        reader_1 = await _reader_events(run, "reader-1")
        reader_2 = await _reader_events(run, "reader-2")
        takedowns = json.loads(run_cli(["takedown", "list", "--json"], env).stdout)
        kept = {s["id"]: s["url"] for s in await run.stories()}
    finally:
        run.stop()

    assert sorted(os.listdir(dest)) == ["backup.json", "sources.toml", "tidings.db", "tidings.toml"]
    assert not [p for p in dest.parent.iterdir() if p.name.startswith(".")]  # no partial left
    assert (dest / "sources.toml").read_bytes() == sources.read_bytes()
    manifest = json.loads((dest / "backup.json").read_text())
    assert manifest["counts"]["stories"] == len(kept) and len(takedowns) == 1
    with sqlite3.connect(dest / "tidings.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)

    # Restore: the database into a fresh data dir, the sources file where the settings read it.
    restored = tmp_path / "restored"
    restored.mkdir()
    shutil.copyfile(dest / "tidings.db", restored / "tidings.db")
    shutil.copyfile(dest / "sources.toml", tmp_path / "restored-sources.toml")
    env2 = {**env, "TIDINGS_DATA_DIR": str(restored),
            "TIDINGS_SOURCES_FILE": str(tmp_path / "restored-sources.toml"),
            "TIDINGS_COLLECT_ENABLED": "false"}  # the same stories: nothing new collected
    again = Run(env2, free_port())
    again.start()
    try:
        await again.wait_for(lambda: _indexed(again, len(kept)), what="the restored index")
        assert {s["id"]: s["url"] for s in await again.stories()} == kept
        assert await _reader_events(again, "reader-1") == reader_1
        # reader-2's events as of the copy: those stored before it began, and none half-made.
        copied = await _reader_events(again, "reader-2")
        assert 3 <= len(copied) <= len(reader_2) and copied == reader_2[:len(copied)]
        assert json.loads(run_cli(["takedown", "list", "--json"], env2).stdout) == takedowns
        block = (await again.get(f"/v1/stories/{ids[0]}/related", k=3)).json()
        assert len(block["related"]) == 3
        assert ids[-1] not in [c["id"] for c in block["related"]]
    finally:
        again.stop()


def test_backup_refuses_what_it_cannot_write_in_one_line(cli_env, tmp_path):
    """An existing file or folder is never written over, a missing folder is named, a
    PostgreSQL database is pointed at pg_dump, a missing database is the data dir's."""
    r = run_cli(["backup", str(tmp_path / "b")], cli_env)
    assert r.returncode == 2 and r.stderr.startswith("tidings: error: no database at "), r.stderr
    make_database(cli_env)
    (tmp_path / "taken").write_text("yesterday's backup")
    for dest in (tmp_path / "taken", tmp_path / "data"):
        r = run_cli(["backup", str(dest)], cli_env)
        assert (r.returncode, r.stderr) == (
            2, f"tidings: error: {dest} exists; a backup is never written over: give a new name "
               "(a date, say)\n")
    assert (tmp_path / "taken").read_text() == "yesterday's backup"
    r = run_cli(["backup", str(tmp_path / "nope" / "b")], cli_env)
    assert (r.returncode, r.stderr) == (
        2, f"tidings: error: cannot write {tmp_path / 'nope' / 'b'}: no such folder "
           f"{tmp_path / 'nope'}\n")
    r = run_cli(["backup", str(tmp_path / "b")],
                {**cli_env, "TIDINGS_DATABASE_URL": "postgresql://postgres@127.0.0.1/test"})
    assert r.returncode == 2 and "pg_dump" in r.stderr and len(r.stderr.splitlines()) == 1
    assert not (tmp_path / "b").exists()
    r = run_cli(["backup", str(tmp_path / "b")], cli_env)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "b")) == ["backup.json", "sources.toml", "tidings.db", "tidings.toml"]


def _mount_tmpfs(path, options: str) -> None:
    path.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs",
                                            str(path)], capture_output=True).returncode != 0:
        pytest.skip("no tmpfs mount here (needs root)")


def test_backup_to_a_read_only_or_full_disk_fails_and_leaves_nothing(cli_env, tmp_path, shared_data):
    """The disk said no: exit 1 (the path was right), its reason named, and no folder that
    looks like a backup, nor a partial one, left on it."""
    from tests.datasets import bbc_records, write_jsonl

    path = write_jsonl(bbc_records(shared_data, limit=40), tmp_path / "stories.jsonl")
    assert run_cli(["import", str(path), "--no-index"], cli_env).returncode == 0
    ro, small = tmp_path / "ro", tmp_path / "small"
    _mount_tmpfs(ro, "ro,size=64k")
    try:
        _mount_tmpfs(small, "size=64k")  # smaller than the database
        try:
            r = run_cli(["backup", str(ro / "b")], cli_env)
            assert (r.returncode, r.stderr) == (
                1, f"tidings: error: cannot write {ro / 'b'}: Read-only file system\n")
            r = run_cli(["backup", str(small / "b")], cli_env)
            assert (r.returncode, r.stderr) == (
                1, f"tidings: error: cannot write {small / 'b'}: No space left on device\n")
            assert os.listdir(small) == []
        finally:
            subprocess.run(["umount", str(small)], check=True)
    finally:
        subprocess.run(["umount", str(ro)], check=True)
