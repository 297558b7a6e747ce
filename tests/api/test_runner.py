"""The `run` role's start: the first collection round waits for the indexer's model to load
(bounded), then stories flow to vectors through the indexer loop."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy.exc import OperationalError

from aggregator.collect import Collector
from aggregator.model import StoryDraft
from aggregator.settings import load_settings
from aggregator.store import EventRecord, Store, event_key
from api import runner
from api.machineid import machine_id
from recommender.embed import HashingEmbedder
from tests.cluster.cluster import rss
from tests.localsite import LocalSite

REPO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "tidings.toml"
ARTICLES = [{"title": f"Story {j} about the harbour", "text": f"Body {j} of a local story."}
            for j in range(6)]


def one_feed(site: LocalSite, tmp_path: Path, **env: str):
    """Settings whose one source, `local`, is a feed of ARTICLES on `site` (hash embedder)."""
    site.route("/feed.xml", body=rss(0, ARTICLES, datetime.now(UTC)),
               content_type="application/rss+xml")
    (tmp_path / "sources.toml").write_text(
        f'[[source]]\nname = "local"\nurl = "{site.url("/feed.xml")}"\ncategory = "c"\n'
        'interval = "24h"\n', encoding="utf-8")
    return load_settings(REPO_CONFIG, env={
        "TIDINGS_DATA_DIR": str(tmp_path / "data"),
        "TIDINGS_SOURCES_FILE": str(tmp_path / "sources.toml"),
        "TIDINGS_INDEX_EMBEDDER": "hash", "TIDINGS_LOG_LEVEL": "warning", **env})


async def test_wait_model_returns_when_loaded_or_after_its_bound():
    # Guarded by 30 s, not timed (`< 2` could fail on a loaded machine): a wait that missed
    # the load would run on to its bound of an hour, one that had no bound for ever.
    ready = asyncio.Event()
    asyncio.get_running_loop().call_later(0.2, ready.set)
    await asyncio.wait_for(runner._wait_model(ready, timeout_s=3600), 30)
    assert ready.is_set()  # returned on the load, not before it
    t0 = time.monotonic()
    await asyncio.wait_for(runner._wait_model(asyncio.Event(), timeout_s=0.2), 30)  # never loads
    assert time.monotonic() - t0 >= 0.15  # its bound, not at once (load only makes it later)


class SlowStart(HashingEmbedder):
    """A model whose first call (the session load) takes a while."""

    def __init__(self):
        super().__init__(64)
        self.loaded_at: float | None = None
        self._first = threading.Lock()

    def encode(self, texts, batch_size=32):
        with self._first:
            if self.loaded_at is None:
                time.sleep(0.6)
                self.loaded_at = time.monotonic()
        return super().encode(texts, batch_size)


async def test_first_round_starts_once_the_model_is_loaded(tmp_path, monkeypatch):
    emb = SlowStart()
    monkeypatch.setattr("api.services.make_embedder", lambda *a, **k: emb)
    rounds: list[float] = []
    original = Collector.run_round

    async def run_round(self, **kw):
        rounds.append(time.monotonic())
        return await original(self, **kw)

    monkeypatch.setattr(Collector, "run_round", run_round)
    async with LocalSite() as site:
        settings = one_feed(site, tmp_path)
        started = time.monotonic()
        task = asyncio.create_task(runner.run_roles(settings, serve=False, collect=True,
                                                    index=True))
        probe = Store(settings.database_url)
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                assert not task.done(), task.exception()
                if rounds and len(await probe.vector_ids(emb.recipe)) == len(ARTICLES):
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(f"not all stories embedded (rounds at {rounds})")
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await probe.close()
    assert emb.loaded_at is not None and emb.loaded_at - started >= 0.5
    # The scheduler asked for the round at once; it began only after the model was loaded.
    assert rounds[0] >= emb.loaded_at


def test_index_saves_take_at_most_a_tenth_of_the_time():
    from api.runner import save_due

    assert save_due(100.0, None, 0.0)  # never saved
    assert not save_due(100.0, 80.0, 0.5) and save_due(110.0, 80.0, 0.5)  # fast saves: 30 s
    # A 10 s save (1M stories) waits 90 s after it ends: 10 s of every 100 s.
    assert not save_due(170.0, 100.0, 10.0) and save_due(190.0, 100.0, 10.0)


async def test_a_collecting_process_does_not_start_on_a_bad_sources_file(tmp_path, caplog):
    """At start the error itself stops it (file, line, key): before, it logged and collected
    from whatever sources the database held. A serve-only process, and a later bad edit,
    keep the previous sources; an unreadable file is said once, not at every look."""
    import logging
    import os

    import pytest

    from aggregator.errors import ConfigError
    from api.services import build

    sources, settings = _sources_settings(
        tmp_path, '[[source]]\nname = "a"\nurl = "https://a.example/f"\ncategory = "c"\n'
                  'intervall = "1h"\n')
    with pytest.raises(ConfigError) as info:
        await asyncio.wait_for(runner.run_roles(settings, serve=False, collect=True, index=False), 30)
    assert str(info.value).startswith(f"{sources}:5: ") and "intervall" in str(info.value)
    # Said before the services (and the model, ~20 s on a first start) are built.
    async def no_build(*args, **kwargs):
        raise AssertionError("built the services before reading the sources file")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(runner, "build", no_build)
        with pytest.raises(ConfigError):
            await runner.run_roles(settings, serve=True, collect=True, index=True)

    svc = await build(settings, serve=True)
    try:
        watcher = runner.SourcesWatcher(svc, sources)
        with caplog.at_level(logging.ERROR, logger="tidings"):
            await watcher.check()  # not strict: logged, nothing synced
            assert "sources.invalid" in caplog.text and await svc.store.list_sources() == []
            sources.unlink()
            caplog.clear()
            for _ in range(3):
                await watcher.check()
            assert caplog.text.count("sources.unreadable") == 1
        # The file back, then fixed: each said, so the operator knows the fix was taken.
        with caplog.at_level(logging.INFO, logger="tidings"):
            sources.write_text('[[source]]\nname = "a"\nurl = "https://a.example/f"\n'
                               'category = "c"\nintervall = "1h"\n', encoding="utf-8")
            caplog.clear()
            await watcher.check()
            assert "sources.readable" in caplog.text and "sources.invalid" in caplog.text
            sources.write_text('[[source]]\nname = "a"\nurl = "https://a.example/f"\n'
                               'category = "c"\ninterval = "1h"\n', encoding="utf-8")
            os.utime(sources, (1e9, 1e9))  # another time than the broken one's
            caplog.clear()
            await watcher.check()
            # key=value fields, as every other line: a dict printed in the line matched no
            # `added=` search.
            assert "sources.valid again" in caplog.text and "sources=1 added=1 changed=0" in caplog.text
            assert [s.name for s in await svc.store.list_sources()] == ["a"]
            sources.write_text('[[source]]\nname = "a"\nurl = "https://a.example/f"\ncategory = "c"\n'
                               'interval = "1h"\n[[source]]\nname = "b"\nurl = "https://b.example/f"\ncategory = "c"\n',
                               encoding="utf-8")
            os.utime(sources, (2e9, 2e9))
            caplog.clear()
            await watcher.check()
            assert "sources.synced added=1 changed=0 retired=0 adopted=0" in caplog.text, caplog.text
    finally:
        await svc.close()


async def test_an_invalid_sources_edit_keeps_a_feeds_key_out_of_the_log(tmp_path, caplog):
    """A running collector's `sources.invalid` line quotes the bad value: a private feed's
    key in its URL went to the log whole, where collect's own lines mask it."""
    import logging

    from api.services import build

    sources, settings = _sources_settings(
        tmp_path, '[[source]]\nname = "a"\nurl = "ftp://feeds.example/x?token=s3cret"\n'
                  'category = "c"\n')
    svc = await build(settings)
    try:
        with caplog.at_level(logging.ERROR, logger="tidings"):
            await runner.SourcesWatcher(svc, sources).check()
        assert "sources.invalid" in caplog.text and "token=***" in caplog.text
        assert "s3cret" not in caplog.text
    finally:
        await svc.close()


@pytest.mark.postgres
async def test_an_edit_of_the_sources_file_made_while_the_database_is_away_is_applied_after(
        tmp_path, pg_server, pg_url):
    """The watcher took the file's new time as seen before its sync: an edit made while the
    database was away failed once and was then never applied, until the file changed again
    or the process restarted."""
    import os
    from urllib.parse import urlsplit

    from api.services import build
    from tests.api.test_db_outage import bring_database_back, take_database_away

    sources = tmp_path / "sources.toml"
    table = '[[source]]\nname = "{0}"\nurl = "https://{0}.example/f"\ncategory = "c"\n'
    sources.write_text(table.format("a"), encoding="utf-8")
    settings = load_settings(REPO_CONFIG, env={
        "TIDINGS_DATA_DIR": str(tmp_path / "data"), "TIDINGS_SOURCES_FILE": str(sources),
        "TIDINGS_DATABASE_URL": pg_url, "TIDINGS_INDEX_EMBEDDER": "hash"})
    svc = await build(settings, collect=True)
    name = urlsplit(pg_url).path.lstrip("/")
    try:
        watcher = runner.SourcesWatcher(svc, sources)
        await watcher.check(strict=True)
        sources.write_text(table.format("a") + table.format("b"), encoding="utf-8")
        os.utime(sources, (1e9, 1e9))  # another time than the first, whatever the clock's grain
        await take_database_away(pg_server, name)
        try:
            with pytest.raises(Exception):  # noqa: B017 - the driver's own error: logged by _guard
                await watcher.check()
        finally:
            await bring_database_back(pg_server, name)
        await watcher.check()
        assert [s.name for s in await svc.store.list_sources()] == ["a", "b"]
    finally:
        await svc.close()


async def test_a_serve_only_process_leaves_the_clusters_sources_alone(tmp_path):
    """The sources file is the collectors' config. A replica started on another machine with
    its own (or the shipped) sources.toml synced it into the shared database: every source
    not in it was retired, and the cluster's collectors fetched only the replica's."""
    from aggregator.model import SourceSpec
    from benchmarks.api_bench import _free_port

    sources = tmp_path / "sources.toml"
    sources.write_text('[[source]]\nname = "replica-only"\nurl = "https://r.example/f"\n'
                       'category = "c"\n', encoding="utf-8")
    settings = load_settings(REPO_CONFIG, env={
        "TIDINGS_DATA_DIR": str(tmp_path / "data"), "TIDINGS_SOURCES_FILE": str(sources),
        "TIDINGS_INDEX_EMBEDDER": "hash"})
    store = Store(settings.database_url)
    await store.migrate()
    cluster = [SourceSpec(name=f"cluster-{i}", url=f"https://c{i}.example/f", category="c")
               for i in range(2)]
    await store.sync_sources(cluster)
    ready = asyncio.Event()
    task = asyncio.create_task(runner.run_roles(settings, serve=True, collect=False, index=False,
                                                host="127.0.0.1", port=_free_port(), ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        rows = {s.name: s.enabled for s in await store.list_sources()}
        assert rows == {"cluster-0": True, "cluster-1": True}
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


async def test_retention_prunes_the_change_log_past_its_days(store):
    """The index change log grew for ever (two rows a story); retention now keeps the shipped
    `change_log_days` of it, and its stories' removals just logged stay."""
    settings = load_settings(REPO_CONFIG, env={})
    assert settings.retention.change_log_days == 30
    now = datetime.now(UTC)
    ids = (await store.upsert_stories(
        [StoryDraft(url=f"https://e.org/{i}", title=f"Story {i}") for i in range(4)], now)).new_ids
    await store.save_vectors([(i, 1, b"\x01" * 8) for i in ids[:3]], "r", now - timedelta(days=31))
    await store.save_vectors([(ids[3], 1, b"\x01" * 8)], "r", now - timedelta(days=29))
    svc = SimpleNamespace(settings=settings, store=store, owner="test", machine=None)
    await runner.retention(svc)
    assert [c[1:] for c in await store.changes_since(await store.change_horizon())] == [(ids[3], "add")]


async def test_retention_keeps_the_reports_days_past_the_events(store):
    """The report counted its days from the events, so an `events_days` under its 90 days
    cut its past days short. The days' counts (no reader in them) are kept for the
    longest report whatever `events_days`; older ones go in the same run."""
    settings = load_settings(REPO_CONFIG, env={})
    settings = replace(settings, retention=replace(settings.retention, events_days=30))
    now = datetime.now(UTC)
    (sid,) = (await store.upsert_stories([StoryDraft(url="https://e.org/a", title="A")], now)).new_ids
    at = [now - timedelta(days=60), now - timedelta(days=95)]
    await store.add_events([EventRecord(event_key(f"r{n}", sid, "click", t, None), f"r{n}", sid, "click", t)
                            for n, t in enumerate(at)], now)
    await runner.retention(SimpleNamespace(settings=settings, store=store, owner="test", machine=None), now)
    assert await store.reader_events("r0") == []  # the events went
    got = await store.widget_stats(now - timedelta(days=100), now)
    assert got.days == [(at[0].date().isoformat(), 0, 1, 0)]


async def _deleted_reader_ids(store: Store) -> list[str]:
    from sqlalchemy import select

    from aggregator.schema import ReaderDeletionRow

    async with store.session() as s:
        return sorted((await s.scalars(select(ReaderDeletionRow.reader_id))).all())


async def test_retention_forgets_a_forgotten_readers_id_after_its_minute(store):
    """A deleted reader's id stays a minute, so that their events still on their way are
    dropped; it was removed only by the next deletion, so the last reader forgotten stayed
    in the database for as long as nobody else was. Retention removes it, whatever its
    settings (the shipped ones keep stories and delete events)."""
    now = datetime.now(UTC)
    (sid,) = (await store.upsert_stories([StoryDraft(url="https://e.org/a", title="A")], now)).new_ids
    for reader in ("gone", "just-gone"):
        await store.add_events([EventRecord(event_key(reader, sid, "click", now, None), reader,
                                            sid, "click", now)], now)
    await store.delete_reader("gone", now)
    await store.delete_reader("just-gone", now + timedelta(seconds=50))
    assert await _deleted_reader_ids(store) == ["gone", "just-gone"]
    svc = SimpleNamespace(settings=load_settings(REPO_CONFIG, env={}), store=store, owner="test",
                          machine=None)
    await runner.retention(svc, now + timedelta(seconds=90))
    assert await _deleted_reader_ids(store) == ["just-gone"]  # still within its minute


async def test_retention_forgets_the_readers_it_left_with_nothing(store):
    """Every event stored a reader row (id, first and last seen) that outlived the events
    retention deleted: one a browser for ever. A reader with no events left, no preferences
    and not seen since the events' cutoff goes with them; one with preferences (chosen to be
    kept) or a later event stays. The dry run counts them."""
    settings = load_settings(REPO_CONFIG, env={})
    settings = replace(settings, retention=replace(settings.retention, events_days=30))
    now = datetime.now(UTC)
    (sid,) = (await store.upsert_stories([StoryDraft(url="https://e.org/a", title="A")], now)).new_ids
    old, recent = now - timedelta(days=40), now - timedelta(days=2)

    def click(reader, at):
        return EventRecord(event_key(reader, sid, "click", at, None), reader, sid, "click", at)

    await store.add_events([click("idle", old), click("settled", old), click("back", old)], old)
    await store.add_events([click("back", recent)], recent)
    await store.set_preferences("settled", {"mute_topics": ["Budget"]}, old)
    svc = SimpleNamespace(settings=settings, store=store, owner="test", machine=None)
    preview = await runner.retention_preview(svc, now)
    report = await runner.retention(svc, now)
    assert await store.reader("idle") is None
    assert (await store.reader("settled"))["preferences"] == {"mute_topics": ["Budget"]}
    assert [e.at for e in await store.reader_events("back")] == [recent]
    assert (report.events, report.readers, preview.readers) == (3, 1, 1)


async def test_retention_forgets_a_reader_who_cleared_their_preferences(store):
    """Preferences saved with every list empty (a settings page's "clear all") were stored
    as five empty lists, which retention read as preferences chosen to be kept: that reader
    stayed for ever, as every reader did before. They read back the same either way."""
    settings = load_settings(REPO_CONFIG, env={})
    settings = replace(settings, retention=replace(settings.retention, events_days=30))
    now = datetime.now(UTC)
    old = now - timedelta(days=40)
    (sid,) = (await store.upsert_stories([StoryDraft(url="https://e.org/a", title="A")], now)).new_ids
    await store.add_events([EventRecord(event_key("cleared", sid, "click", old, None), "cleared",
                                        sid, "click", old)], old)
    await store.set_preferences("cleared", {"mute_topics": ["Budget"]}, old)
    await store.set_preferences("cleared", {"mute_topics": []}, old)
    svc = SimpleNamespace(settings=settings, store=store, owner="test", machine=None)
    report = await runner.retention(svc, now)
    assert report.readers == 1 and await store.reader("cleared") is None


async def test_a_failed_retention_run_is_run_again_at_the_next_tick(store, monkeypatch):
    """Retention claimed its hour before deleting: a run whose deletion failed (the database
    busy, a disk error) was not tried again by any process for an hour."""
    settings = load_settings(REPO_CONFIG, env={})
    settings = replace(settings, retention=replace(settings.retention, stories_days=30))
    svc = SimpleNamespace(settings=settings, store=store, owner="test", machine=None)
    now = datetime.now(UTC)

    async def old_story(i: int) -> int:
        (sid,) = (await store.upsert_stories([StoryDraft(
            url=f"https://e.org/{i}", title=f"Story {i}",
            published_at=now - timedelta(days=40))], now)).new_ids
        return sid

    first = await old_story(1)
    real = store.delete_stories_before

    async def busy(before):
        raise OperationalError("DELETE FROM stories", {}, Exception("database is locked"))

    monkeypatch.setattr(store, "delete_stories_before", busy)
    with pytest.raises(OperationalError):
        await runner.retention(svc, now)
    monkeypatch.setattr(store, "delete_stories_before", real)
    assert await store.get_story(first) is not None
    tick = timedelta(seconds=runner.RETENTION_TICK_S)
    await runner.retention(svc, now + tick)
    assert await store.get_story(first) is None
    # Done: the other ticks of its hour leave the job alone.
    second = await old_story(2)
    await runner.retention(svc, now + 2 * tick)
    assert await store.get_story(second) is not None
    await runner.retention(svc, now + tick + timedelta(seconds=runner.RETENTION_EVERY_S))
    assert await store.get_story(second) is None


async def test_a_retention_run_longer_than_its_lease_keeps_its_claim(store, monkeypatch):
    """The first run after `stories_days` is lowered can delete for longer than its claim's
    lease: unrenewed, another process's tick then claimed the job and ran the same
    deletions beside it. The claim is renewed while the run goes on (a lease of 3 s here,
    renewed every second; the deletion lasts until the other process has ticked a second
    past the lease's first end)."""
    settings = load_settings(REPO_CONFIG, env={})
    settings = replace(settings, retention=replace(settings.retention, stories_days=30))
    lease = 3.0
    monkeypatch.setattr(runner, "RETENTION_LEASE_S", lease)
    real = store.delete_stories_before
    deleting, outlived = asyncio.Event(), asyncio.Event()

    async def slow(before):
        deleting.set()
        await outlived.wait()
        return await real(before)

    monkeypatch.setattr(store, "delete_stories_before", slow)
    svc = SimpleNamespace(settings=settings, store=store, owner="a", machine=None)
    now = datetime.now(UTC)
    run = asyncio.create_task(runner.retention(svc, now))
    await asyncio.wait_for(deleting.wait(), 10)
    # Another process's ticks, all through the run, on the run's clock (as `_keep_claim`
    # counts it): they counted 0.1 s a tick, and on a loaded machine, where a tick takes
    # longer, fell behind the run's renewals (fewer than the 20 ticks asked for, or by
    # chance a tick past a renewal that came late). Only a renewal later than 2 s (a lease
    # less its renewal interval; 1 s on PostgreSQL for a renewal whose round trip took over
    # 0.5 s, `on_database_clock` counting whole seconds) lets one through; an unrenewed
    # claim lets them in at 3 s.
    started = time.monotonic()
    taken = []
    while not run.done():
        elapsed = time.monotonic() - started
        taken.append(await store.claim_job("retention", owner="b", every_s=runner.RETENTION_EVERY_S,
                                           lease_s=1, now=now + timedelta(seconds=elapsed)))
        if elapsed >= lease + 1:
            outlived.set()
        await asyncio.sleep(0.1)
    await run
    assert not any(taken), taken


async def _keeper_and_cutter(store, keeper: str, cutter: str, machines=(None, None)):
    """Two processes on `store`, keeping stories for ever and for 30 days (owners and machine
    ids as given), now, and a story of 40 days ago."""
    base = load_settings(REPO_CONFIG, env={})

    def process(days: int, owner: str, machine: str | None):
        return SimpleNamespace(settings=replace(base, retention=replace(base.retention, stories_days=days)),
                               store=store, owner=owner, machine=machine)

    now = datetime.now(UTC)
    (old,) = (await store.upsert_stories([StoryDraft(
        url="https://e.org/old", title="Old", published_at=now - timedelta(days=40))], now)).new_ids
    return process(0, keeper, machines[0]), process(30, cutter, machines[1]), now, old


async def _cut_waits(keep, cut, now: datetime, old: int, caplog) -> str:
    """`keep` runs retention at `now`; `cut`, an hour later, leaves the job alone and the
    story `old` stays: its WARNING line."""
    assert await runner.retention(keep, now) is not None
    with caplog.at_level("WARNING", logger="tidings.run"):
        assert await runner.retention(cut, now + timedelta(seconds=runner.RETENTION_EVERY_S)) is None
    assert await cut.store.get_story(old) is not None
    (line,) = [r.getMessage() for r in caplog.records if "retention.settings_differ" in r.getMessage()]
    return line


async def test_retention_settings_that_delete_more_than_the_last_runs_wait_for_the_operator(
        store, caplog):
    """The hourly job ran with the `[retention]` of whichever process took it: a machine set
    to 30 days deleted for a cluster whose other machines kept stories for ever. Each run now
    records its settings; a process whose own delete more logs both and leaves the job alone
    until the operator runs `tidings retention` with them."""
    keep, cut, now, old = await _keeper_and_cutter(store, "keeper:1", "cutter:2")
    hour = timedelta(seconds=runner.RETENTION_EVERY_S)
    line = await _cut_waits(keep, cut, now, old, caplog)
    assert "stories_days=30" in line and "stories_days=0" in line and "keeper:1" in line

    # The operator's run is the confirmation: it deletes, and its settings become the last run's.
    assert (await runner.retention(cut, now + hour, every_s=0)).stories == 1
    assert await store.get_story(old) is None
    assert await runner.retention(cut, now + 2 * hour) is not None
    # Settings that keep more still run (and are recorded): a cluster that disagrees keeps the most.
    assert await runner.retention(keep, now + 3 * hour) is not None
    assert await runner.retention(cut, now + 4 * hour) is None


async def test_retention_settings_that_keep_more_are_logged_by_the_run_not_each_tick(
        store, caplog):
    """Every process ticks the job every 10 minutes and one of them runs it an hour. A process
    whose `[retention]` keeps more than the last run's logged "run with these" at each of its
    ticks, whether it ran the job or not (another had run it within the hour): a cluster's
    logs said, several times an hour, that settings were applied which no run used."""
    keep, cut, now, old = await _keeper_and_cutter(store, "keeper:1", "cutter:2")
    assert (await runner.retention(cut, now, every_s=0)).stories == 1  # the operator's run

    def differs() -> list[str]:
        return [r.getMessage() for r in caplog.records
                if "retention.settings_differ" in r.getMessage()]

    with caplog.at_level("WARNING", logger="tidings.run"):
        assert await runner.retention(keep, now + timedelta(seconds=runner.RETENTION_TICK_S)) is None
        assert differs() == []
        assert await runner.retention(keep, now + timedelta(seconds=runner.RETENTION_EVERY_S)) is not None
    (line,) = differs()
    assert "keeps more" in line and "stories_days=30" in line and "(by cutter:2)" in line, line


async def test_retention_settings_lowered_on_the_machine_that_ran_last_apply_at_once(store):
    """One machine, its `stories_days` lowered and the process restarted: the operator's own
    edit, not another machine's disagreement. It applies at the next hourly run."""
    before, after, now, old = await _keeper_and_cutter(store, "box:1", "box:2")
    hour = timedelta(seconds=runner.RETENTION_EVERY_S)
    assert await runner.retention(before, now) is not None
    assert (await runner.retention(after, now + hour)).stories == 1
    assert await store.get_story(old) is None
    assert runner.same_host("box:1", "box:2") and not runner.same_host("a:1", "b:1")
    assert not runner.same_host("odd", "odd")  # no host:pid form: not known to be one machine


async def test_retention_lowered_in_a_recreated_container_applies_at_once(store, tmp_path):
    """A container recreated on the same data dir gets a new host name (Docker's default is
    its id; a Kubernetes pod's changes each rollout): its own earlier run looked another
    machine's, and a lowered `stories_days` waited for the operator, with a WARNING every
    10 minutes. The runs record the data dir's machine id, which says "this machine"."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    before, after, now, old = await _keeper_and_cutter(
        store, "3f2a9c1be0d4:1", "8d01e7a4c2f9:1", (machine_id(data_dir), machine_id(data_dir)))
    hour = timedelta(seconds=runner.RETENTION_EVERY_S)
    assert await runner.retention(before, now) is not None
    report = await runner.retention(after, now + hour)
    assert report is not None and report.stories == 1
    assert await store.get_story(old) is None


async def test_retention_lowered_on_another_data_dir_of_the_same_host_name_waits(
        store, tmp_path, caplog):
    """Two machines given one host name (compose's `hostname:`, a cloned VM), each with its
    own data dir: the host name made them one machine, and the one set to 30 days deleted
    what the other keeps for ever. Where both have machine ids, the ids decide."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    keep, cut, now, old = await _keeper_and_cutter(
        store, "tidings:1", "tidings:1", (machine_id(tmp_path / "a"), machine_id(tmp_path / "b")))
    line = await _cut_waits(keep, cut, now, old, caplog)
    assert f"(by tidings:1, machine {keep.machine})" in line


async def test_retention_recorded_without_a_machine_id_goes_by_the_host_name(store, tmp_path):
    """A run of a version before the ids (or on a read-only data dir) recorded none: a
    process that has one goes by the host name, as before."""
    (tmp_path / "d").mkdir()
    machine = machine_id(tmp_path / "d")
    before, after, now, old = await _keeper_and_cutter(store, "box:1", "box:2", (None, machine))
    hour = timedelta(seconds=runner.RETENTION_EVERY_S)
    assert await runner.retention(before, now) is not None
    assert runner.machine_of_json((await store.job_last_run("retention"))[0]) is None
    assert (await runner.retention(after, now + hour)).stories == 1
    # Its run recorded its id; an older version reads the settings past it.
    recorded, _ = await store.job_last_run("retention")
    assert runner.machine_of_json(recorded) == machine
    assert runner.retention_of_json(recorded) == after.settings.retention


async def test_a_claim_that_failed_does_not_make_the_last_run_this_hosts(store, caplog):
    """A claim wrote its owner over the row's while the settings are written when a run is
    done: after a process on host b claimed the job and died, the last run (a's, keeping
    stories for ever, without a machine id) read as b's, and b's next process, set to 30
    days, took its own lowered settings for this machine's edit and deleted. The owner that
    ran is recorded with the run's settings."""
    keep, cut, now, old = await _keeper_and_cutter(store, "a:1", "b:3")
    hour = timedelta(seconds=runner.RETENTION_EVERY_S)
    assert await runner.retention(keep, now) is not None
    # b:2 (keeping for ever too) claims the next run and is killed before recording it.
    assert await store.claim_job("retention", owner="b:2", every_s=runner.RETENTION_EVERY_S,
                                 lease_s=runner.RETENTION_LEASE_S, now=now + hour)
    later = now + hour + timedelta(seconds=runner.RETENTION_LEASE_S + 1)
    with caplog.at_level("WARNING", logger="tidings.run"):
        assert await runner.retention(cut, later) is None
    assert await store.get_story(old) is not None
    (line,) = [r.getMessage() for r in caplog.records if "retention.settings_differ" in r.getMessage()]
    assert "(by a:1)" in line, line


def test_same_machine_goes_by_the_ids_where_both_have_one():
    assert runner.same_machine("a:1", "m1", "b:2", "m1")  # a new host name, one data dir
    assert not runner.same_machine("box:1", "m1", "box:2", "m2")  # one host name, two data dirs
    assert runner.same_machine("box:1", None, "box:2", "m2")  # an older run's: host names
    assert not runner.same_machine("a:1", "m1", "b:1", None)


def test_deletes_more_names_the_keys_that_delete_what_the_last_run_kept():
    from aggregator.settings import RetentionSettings as R

    assert runner.deletes_more(R(30, 90, 30), R(0, 90, 30)) == ["stories_days"]
    assert runner.deletes_more(R(0, 30, 0), R(0, 90, 30)) == ["events_days"]
    assert runner.deletes_more(R(0, 0, 0), R(30, 90, 30)) == []  # for ever deletes nothing
    assert runner.deletes_more(R(60, 90, 30), R(30, 90, 30)) == []
    assert runner.retention_of_json(runner.retention_json_of(R(7, 8, 9))) == R(7, 8, 9)
    assert runner.retention_of_json(runner.retention_json_of(R(7, 8, 9), "m1")) == R(7, 8, 9)


async def _settings_with_stories(tmp_path, n: int):
    """Settings over a fresh SQLite database holding `n` stories, none embedded yet."""
    settings = load_settings(REPO_CONFIG, env={"TIDINGS_DATA_DIR": str(tmp_path / "data"),
                                               "TIDINGS_INDEX_EMBEDDER": "hash"})
    store = Store(settings.database_url)
    await store.migrate()
    await store.upsert_stories([StoryDraft(url=f"https://e.org/{i}", title=f"Story {i}",
                                           text=f"words {i}") for i in range(n)])
    await store.close()
    return settings


async def test_index_rebuild_without_saved_files_builds_once(tmp_path, monkeypatch, capsys):
    """`tidings index --rebuild` with no usable saved index: the start built the index from
    the database's vectors, and the rebuild then did it all again (minutes at a million)."""
    from api.cli import index_once
    from recommender.corpus import Corpus

    settings = await _settings_with_stories(tmp_path, 12)
    rebuilds = []
    real = Corpus.rebuild

    async def counting(self, progress=None):
        rebuilds.append(1)
        return await real(self, progress)

    monkeypatch.setattr(Corpus, "rebuild", counting)
    assert await index_once(settings, rebuild=True) == 0
    assert rebuilds == [] and "12 vectors (once, at the start" in capsys.readouterr().out
    assert await index_once(settings, rebuild=True) == 0  # files saved now: a real rebuild
    assert rebuilds == [1] and "rebuilt the index from the database: 12 vectors" in capsys.readouterr().out


async def test_a_rebuild_whose_save_was_skipped_says_so_and_fails(tmp_path, monkeypatch, capsys):
    """The folder's save lock held by another process past the wait: `tidings index
    --rebuild` printed "rebuilt the index" and exited 0 though nothing was written."""
    import fcntl

    import recommender.corpus as corpus_module
    from api.cli import index_once

    settings = await _settings_with_stories(tmp_path, 6)
    assert await index_once(settings, rebuild=False) == 0  # the files exist: a real rebuild next
    folder = next((tmp_path / "data" / "index").iterdir())
    monkeypatch.setattr(corpus_module, "SAVE_LOCK_WAIT_S", 0.0)
    capsys.readouterr()
    with open(folder / corpus_module.SAVE_LOCK, "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        assert await index_once(settings, rebuild=True) == 1
        out = capsys.readouterr()
        assert "rebuilt" not in out.out and "were not written" in out.err
        assert await index_once(settings, rebuild=False) == 0  # embedding went on; said so
        assert "were not written" in capsys.readouterr().err


async def with_one_story(tmp_path: Path, monkeypatch):
    """Settings, a migrated store and its one story, for a server whose event sink gathers a
    batch for an hour: only its shutdown can write the events it accepted."""
    import functools
    import json

    from aggregator.importer import read_jsonl
    from aggregator.store import utcnow
    from api.events import EventSink

    monkeypatch.setattr("api.app.EventSink", functools.partial(EventSink, flush_s=3600))
    (tmp_path / "sources.toml").write_text("", encoding="utf-8")
    settings = load_settings(REPO_CONFIG, env={
        "TIDINGS_DATA_DIR": str(tmp_path / "data"), "TIDINGS_INDEX_EMBEDDER": "hash",
        "TIDINGS_SOURCES_FILE": str(tmp_path / "sources.toml"), "TIDINGS_LOG_LEVEL": "warning"})
    store = Store(settings.database_url)
    await store.migrate()
    record = {"url": "https://news.example/a", "title": "A story", "text": "Its text."}
    await store.upsert_stories(list(read_jsonl([json.dumps(record)], utcnow())))
    return settings, store, (await store.latest_stories(limit=1))[0]


async def post_event(port: int, event: dict) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=20) as client:
        assert (await client.post("/v1/events", json=event)).status_code == 202


async def test_events_accepted_before_a_shutdown_are_written(tmp_path, monkeypatch):
    """A 202 is a promise: the sink writes events in batches after the answer, and a SIGTERM
    (a deploy, a restart) stopped the process with the last batch still queued, lost."""
    import os
    import signal

    from benchmarks.api_bench import _free_port

    settings, store, story = await with_one_story(tmp_path, monkeypatch)
    port = _free_port()
    ready = asyncio.Event()
    task = asyncio.create_task(runner.run_roles(settings, serve=True, collect=False, index=False,
                                                host="127.0.0.1", port=port, ready=ready))
    try:
        await asyncio.wait_for(ready.wait(), 60)
        await post_event(port, {"reader": "r-shutdown", "story_id": story.id, "type": "click"})
        os.kill(os.getpid(), signal.SIGTERM)  # the runner's handler stops the server
        await asyncio.wait_for(task, 60)
        assert [e.type for e in await store.reader_events("r-shutdown")] == ["click"]
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


async def test_a_serve_worker_writes_its_accepted_events_when_it_stops(tmp_path, monkeypatch):
    """The same for each worker of `serve --workers N`: its lifespan's shutdown wrote nothing
    of what its sink still held."""
    import uvicorn

    from api.app import server_config
    from api.workers import WorkerApp
    from benchmarks.api_bench import _free_port

    settings, store, story = await with_one_story(tmp_path, monkeypatch)
    port = _free_port()
    server = uvicorn.Server(server_config(WorkerApp(settings), "127.0.0.1", port, lifespan="on"))
    task = asyncio.create_task(server.serve())
    try:
        for _ in range(600):
            if server.started or task.done():
                break
            await asyncio.sleep(0.05)
        assert server.started
        await post_event(port, {"reader": "r-worker-stop", "story_id": story.id, "type": "read"})
        server.should_exit = True  # as uvicorn does on the supervisor's SIGTERM
        await asyncio.wait_for(task, 60)
        assert [e.type for e in await store.reader_events("r-worker-stop")] == ["read"]
    finally:
        server.should_exit = True
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


async def test_a_retention_preview_counts_what_the_run_then_removes(store):
    """`tidings retention --dry-run` counts with the run's own cutoffs: each kind as many as
    the run removes right after (the change log's prefix too, up to its first recent entry)."""
    settings = load_settings(REPO_CONFIG, env={})
    settings = replace(settings, retention=replace(settings.retention, stories_days=30,
                                                   events_days=60))
    now = datetime.now(UTC)
    ids = list((await store.upsert_stories(
        [StoryDraft(url=f"https://e.org/{i}", title=f"Story {i}",
                    published_at=now - timedelta(days=40 if i < 3 else 1)) for i in range(5)],
        now)).new_ids)
    await store.save_vectors([(i, 1, b"\x01" * 8) for i in ids[:2]], "r", now - timedelta(days=31))
    await store.save_vectors([(ids[2], 1, b"\x01" * 8)], "r", now - timedelta(days=29))
    await store.save_vectors([(ids[3], 1, b"\x01" * 8)], "r", now - timedelta(days=40))
    at = [now - timedelta(days=d) for d in (95, 70, 2)]
    await store.add_events([EventRecord(event_key("r", ids[4], "click", t, None), "r", ids[4],
                                        "click", t) for t in at], now)
    svc = SimpleNamespace(settings=settings, store=store, owner="test", machine=None)
    preview = await runner.retention_preview(svc, now)
    assert (preview.stories, preview.events, preview.event_days) == (3, 2, 1)
    # Logged at -31, -31, -29, -40 days (in that order): the prefix before -29 goes.
    assert preview.change_log == 2
    done = await runner.retention(svc, now, every_s=0)
    assert done == preview
    assert await runner.retention(svc, now, every_s=0) == replace(preview, stories=0, events=0,
                                                                   event_days=0, change_log=0)


def _sources_settings(tmp_path, text: str):
    """A sources file of `text` and the shipped settings pointed at it (hashing embedder)."""
    sources = tmp_path / "sources.toml"
    sources.write_text(text, encoding="utf-8")
    return sources, load_settings(REPO_CONFIG, env={
        "TIDINGS_DATA_DIR": str(tmp_path / "data"), "TIDINGS_SOURCES_FILE": str(sources),
        "TIDINGS_INDEX_EMBEDDER": "hash"})


async def test_a_second_edit_in_the_same_tick_of_the_files_clock_is_picked_up(tmp_path):
    """The watcher remembered the mtime of the file it had read and skipped every look that
    found the same one. A file's mtime has the kernel's coarse grain (a few ms; 1 or 2 s on
    FAT, SMB and some bind mounts): a save that landed in the same tick as the look before
    (an editor's truncate-then-write, a script's two writes) was never applied, until the
    file changed again or the process restarted. A file written so recently is read again."""
    import os

    from api.services import build

    table = '[[source]]\nname = "{0}"\nurl = "https://{0}.example/f"\ncategory = "c"\n'
    sources, settings = _sources_settings(tmp_path, table.format("a"))
    tick_ns = time.time_ns()
    os.utime(sources, ns=(tick_ns, tick_ns))
    svc = await build(settings, collect=True)
    try:
        watcher = runner.SourcesWatcher(svc, sources, clock=lambda: tick_ns / 1e9)
        await watcher.check(strict=True)
        sources.write_text(table.format("a") + table.format("b"), encoding="utf-8")
        os.utime(sources, ns=(tick_ns, tick_ns))  # the same tick as the first save
        await watcher.check()
        assert [s.name for s in await svc.store.list_sources()] == ["a", "b"]
    finally:
        await svc.close()


async def test_an_api_on_any_free_port_logs_the_port_it_listens_on(tmp_path, monkeypatch, caplog):
    """`[api] port = 0` is "any free port": `api.listening` said "http://127.0.0.1:0", so the
    operator could not learn where the API was. The line names the port bound."""
    import logging
    import os
    import re
    import signal

    import httpx

    settings, store, _story = await with_one_story(tmp_path, monkeypatch)
    ready = asyncio.Event()
    task = asyncio.create_task(runner.run_roles(settings, serve=True, collect=False, index=False,
                                                host="127.0.0.1", port=0, ready=ready))
    try:
        with caplog.at_level(logging.INFO, logger="tidings.run"):
            await asyncio.wait_for(ready.wait(), 60)
        found = re.search(r"api\.listening http://127\.0\.0\.1:(\d+)", caplog.text)
        assert found and found[1] != "0", caplog.text
        async with httpx.AsyncClient(timeout=20) as client:
            answer = await client.get(f"http://127.0.0.1:{found[1]}/healthz")
        assert answer.status_code == 200
        os.kill(os.getpid(), signal.SIGTERM)  # the runner's handler stops the server
        await asyncio.wait_for(task, 60)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await store.close()


async def test_a_sources_file_emptied_mid_save_keeps_the_sources(tmp_path, caplog):
    """An editor's save caught between truncate and write (or a file emptied by mistake)
    retired every source with one info line, `sources.synced retired=2`: the collector
    stopped with nothing in the log to say why. Such a file is refused while sources are
    configured; `source = []` retires them all on purpose, with a warning."""
    import logging

    from aggregator.errors import ConfigError
    from api.services import build

    two = ('[[source]]\nname = "a"\nurl = "https://a.example/f"\ncategory = "c"\n'
           '[[source]]\nname = "b"\nurl = "https://b.example/f"\ncategory = "c"\n')
    sources, settings = _sources_settings(tmp_path, "# no source yet\n")
    svc = await build(settings, collect=True)
    try:
        watcher = runner.SourcesWatcher(svc, sources)
        await watcher.check(strict=True)  # a new install's empty file: nothing to retire
        sources.write_text(two, encoding="utf-8")
        await watcher.check()
        assert [s.name for s in await svc.store.list_sources()] == ["a", "b"]

        sources.write_text("", encoding="utf-8")  # the save, caught midway
        with caplog.at_level(logging.INFO, logger="tidings"):
            await watcher.check()
        said = [r for r in caplog.records if r.getMessage().startswith("sources.")]
        assert [r.levelname for r in said] == ["ERROR"], caplog.text
        assert said[0].getMessage() == (
            f"sources.invalid keeping previous sources: {sources}: names no [[source]] table "
            "(emptied, or read while being saved): applied, it would retire all 2 configured "
            "sources, so they are kept; to retire every source on purpose, write `source = []` in it")
        assert [s.name for s in await svc.store.list_sources()] == ["a", "b"]
        with pytest.raises(ConfigError, match="would retire all 2 configured sources"):
            await runner.SourcesWatcher(svc, sources).check(strict=True)  # a start stops on it

        sources.write_text("source = []  # collect nothing for now\n", encoding="utf-8")
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="tidings"):
            await watcher.check()
        warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert warned == [f"sources.retired_all file={sources} retired=2: the file names no "
                          "source, nothing is collected until it does"], caplog.text
        assert await svc.store.list_sources() == []
    finally:
        await svc.close()
