"""`tidings retention`: the hourly retention job as a one-shot, for deployments driven by cron
(`collect --once`), which never ran it (real subprocesses, real SQLite)."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta

from aggregator.model import StoryDraft
from aggregator.settings import load_settings
from aggregator.store import EventRecord, Store, event_key
from recommender.corpus import Corpus
from recommender.embed import HashingEmbedder
from recommender.indexer import Indexer
from recommender.vindex import FaissIndex
from tests.e2e.conftest import REPO, make_database, run_cli

EMB = HashingEmbedder(32)


async def cli(args: list[str], env: dict):
    return await asyncio.to_thread(run_cli, args, env)


async def test_retention_runs_once_from_the_command_line(cli_env):
    """Retention ran only inside the long-running roles: a deployment of one-shots never
    deleted a story or an event. `tidings retention` runs the same job once; `--dry-run`
    counts and deletes nothing; a running process's index drops the stories it removed
    (the change log); a run under way elsewhere is waited for, not run beside."""
    env = {**cli_env, "TIDINGS_RETENTION_STORIES_DAYS": "30", "TIDINGS_RETENTION_EVENTS_DAYS": "60"}
    settings = load_settings(REPO / "config" / "tidings.toml", env=env)
    settings.data_dir.mkdir(parents=True)
    store = Store(settings.database_url)
    await store.migrate()
    try:
        now = datetime.now(UTC)
        drafts = [StoryDraft(url=f"https://e.org/{i}", title=f"Story {i} about the harbour",
                             text=f"Body {i} of a harbour story.",
                             published_at=now - timedelta(days=40 if i < 3 else 1))
                  for i in range(5)]
        ids = list((await store.upsert_stories(drafts, now)).new_ids)
        old, kept = ids[:3], ids[3:]
        events = [EventRecord(event_key("r", ids[4], "click", at, None), "r", ids[4], "click", at)
                  for at in (now - timedelta(days=70), now - timedelta(days=2))]
        await store.add_events(events, now)
        await Indexer(store, EMB).drain()
        running = Corpus(store, recipe=EMB.recipe, dim=EMB.dim, index_dir=settings.data_dir / "ix",
                         owner=False, index_factory=lambda: FaissIndex(EMB.dim))
        await running.start()
        assert sorted(running.meta) == ids

        r = await cli(["retention", "--dry-run"], env)
        assert r.returncode == 0, r.stderr
        lines = r.stdout.splitlines()
        assert lines[1].split()[:3] == ["stories", "3", "would"], r.stdout
        assert lines[2].split()[:3] == ["events", "1", "would"], r.stdout
        assert "Dry run: nothing was deleted." in r.stdout
        assert len(await store.get_stories(ids)) == 5

        r = await cli(["retention", "--json"], env)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        assert (got["dry_run"], got["stories"], got["events"]) == (False, 3, 1), got
        assert got["before"]["stories"].endswith("Z"), got  # as the API writes times, not "+00:00"
        assert sorted(await store.get_stories(ids)) == kept
        assert [e.at for e in await store.reader_events("r")] == [events[1].at]
        await running.follow()  # what a running API process does every second
        assert sorted(running.meta) == kept and not set(old) & set(running.meta)
        assert sorted(running.vindex.ids().tolist()) == kept

        # Again at once: the operator's run waits for no hour (the job's would skip it).
        r = await cli(["retention"], env)
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines()[1].split()[:3] == ["stories", "0", "removed:"], r.stdout

        # Another process's run under way: refused in one line, not run beside it.
        assert await store.claim_job("retention", owner="elsewhere:1", every_s=0, lease_s=300,
                                     now=datetime.now(UTC))
        r = await cli(["retention"], env)
        assert r.returncode == 1 and r.stdout == "", r.stdout
        (line,) = r.stderr.strip().splitlines()
        assert line.startswith("tidings: error: another process is running retention now"), line
        # A dry run only counts: it needs no claim.
        assert (await cli(["retention", "--dry-run"], env)).returncode == 0
    finally:
        await store.close()


def test_retention_keeps_for_ever_what_its_settings_keep(cli_env):
    """The shipped `stories_days = 0` keeps the stories: said, not counted as 0 removed."""
    make_database(cli_env)
    r = run_cli(["retention", "--dry-run"], cli_env)
    assert r.returncode == 0, r.stderr
    row = next(line for line in r.stdout.splitlines() if line.startswith("stories"))
    assert "kept for ever ([retention] stories_days = 0)" in row, r.stdout
