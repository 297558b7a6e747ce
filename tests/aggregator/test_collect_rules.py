"""A source's keep and block rules in real collection rounds: a mixed feed served on loopback,
a real SQLite or PostgreSQL store, the sources file reloaded as `run` reloads it, and the
threaded and process-pool parse paths side by side."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from aggregator.collect import Collector
from aggregator.model import SourceSpec
from aggregator.parsepool import MIN_SOURCES_FOR_POOL
from aggregator.settings import CollectSettings, load_settings
from aggregator.store import Store
from api.runner import SourcesWatcher
from tests.localsite import LocalSite, LoopbackResolver

NOW = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
FAST = CollectSettings(connect_timeout_s=2.0, total_timeout_s=5.0, min_interval_s=60,
                       jitter_ratio=0.0, max_body_bytes=2_000_000)
REPO_CONFIG = Path(__file__).resolve().parents[2] / "config" / "tidings.toml"

# A general feed that mixes sections, as the-hill's or Al Jazeera's do: (title, path, author,
# tags, summary).
ITEMS = [
    ("Budget vote in parliament", "/politics/budget", "", ["Politics"], "MPs voted tonight."),
    ("Live: election night as it happens", "/politics/live-1", "", ["Politics"], "Results."),
    ("Cup final ends in penalties", "/sport/cup-final", "", [], "A tense evening."),
    ("Weather warning for the coast", "/news/coast", "", ["UK news"], "Gales expected."),
    ("Ten gadgets for your kitchen", "/deals/kitchen", "Partner Content", [], "Save now."),
    ("The week in Westminster", "/audio/week", "", ["Podcasts"], "Our weekly show."),
    # "sport" only in its summary: summaries are not searched.
    ("Minister resigns over the report", "/politics/minister", "", ["Politics"],
     "She quit an hour after the sport minister did."),
]
GENERAL_BLOCK = r"^live:|/sport/|\bweather\b|\bpartner\b|^podcasts?$"


def feed(base: str, items=ITEMS) -> str:
    out = ['<?xml version="1.0"?><rss version="2.0" xmlns:dc="http://purl.org/dc/elements/1.1/">'
           "<channel><title>General</title><link>http://news.example/</link><description>d"
           "</description>"]
    for title, path, author, tags, summary in items:
        cats = "".join(f"<category>{t}</category>" for t in tags)
        by = f"<dc:creator>{author}</dc:creator>" if author else ""
        out.append(f"<item><title>{title}</title><link>{base}{path}</link>"
                   f"<description>{summary}</description>{by}{cats}</item>")
    return "".join(out) + "</channel></rss>"


@pytest.fixture
async def site():
    async with LocalSite() as s:
        yield s


def collector(store, site, **kw) -> Collector:
    return Collector(store, FAST, resolver_factory=lambda: LoopbackResolver(port=site.port), **kw)


async def titles(store, source: str) -> set[str]:
    ids = await store.latest_ids(100, source=source)
    return {s.title for s in (await store.get_stories(ids)).values()}


async def test_rules_keep_and_block_items_in_a_collect_round(store, site):
    """One general feed split by rules: its sport kept under "sport", the rest but for live
    pages, weather, adverts and podcasts under "politics". Before, every item came in under
    the source's one category."""
    site.route("/all.xml", body=feed("http://news.example"), etag='"v1"',
               content_type="application/rss+xml")
    url = site.url("/all.xml")
    await store.sync_sources([
        SourceSpec("general", url, "politics", block=GENERAL_BLOCK),
        SourceSpec("general-sport", url, "sport", keep="sport"),
        # A source whose rules leave every item out has nothing wanted: not a failure.
        SourceSpec("general-arts", url, "arts", keep=r"\b(theatre|opera)\b"),
    ], NOW)
    report = await collector(store, site).run_round(force=True)
    by_name = {r.name: r for r in report.sources}
    assert all(r.ok for r in report.sources), report.sources
    assert await titles(store, "general") == {"Budget vote in parliament",
                                              "Minister resigns over the report"}
    assert await titles(store, "general-sport") == {"Cup final ends in penalties"}
    assert await titles(store, "general-arts") == set()
    assert [(by_name[n].items, by_name[n].new, by_name[n].left_out)
            for n in ("general", "general-sport", "general-arts")] == [(7, 2, 5), (7, 1, 6), (7, 0, 7)]
    health = {h.name: h.status for h in await store.list_sources()}
    assert health == {"general": "ok", "general-sport": "ok", "general-arts": "ok"}


async def test_a_rule_edited_in_the_file_is_picked_up_and_leaves_stored_stories_alone(
        store, site, tmp_path):
    """The running collector's reload (`SourcesWatcher`) syncs an edited rule. The next
    check reads the whole feed again (a 304 would have kept a loosened rule's items out
    until the publisher next changed the feed), and a story stored before, which the new
    rule would leave out, is neither removed nor updated nor sent to be embedded again."""
    site.route("/all.xml", body=feed("http://news.example"), etag='"v1"',
               content_type="application/rss+xml")
    sources = tmp_path / "sources.toml"

    def write(rule: str) -> None:
        sources.write_text(f'[[source]]\nname = "general"\nurl = "{site.url("/all.xml")}"\n'
                           f'category = "politics"\nblock = \'{rule}\'\n', encoding="utf-8")

    svc = SimpleNamespace(settings=load_settings(REPO_CONFIG, env={}), store=store, related=None)
    watcher = SourcesWatcher(svc, sources)
    write(GENERAL_BLOCK)
    await watcher.check(strict=True)
    c = collector(store, site)
    await c.run_round(force=True)
    assert await titles(store, "general") == {"Budget vote in parliament",
                                              "Minister resigns over the report"}
    stored = {j.id: j.embed_version for j in await store.embed_backlog("r", 100)}
    await store.save_vectors([(i, v, b"\x00" * 16) for i, v in stored.items()], "r", NOW)
    assert (await c.run_round(force=True)).sources[0].not_modified  # the feed is unchanged

    write(r"^live:|\bminister\b")  # weather, sport, adverts and podcasts let in; ministers not
    await watcher.check()
    site.reset_log()
    (r,) = (await c.run_round(force=True)).sources
    assert [h.get("If-None-Match") for _, _, h in site.requests] == [None]
    assert (r.ok, r.not_modified, r.new, r.updated, r.left_out) == (True, False, 4, 0, 2)
    assert await titles(store, "general") == {
        "Budget vote in parliament", "Minister resigns over the report", "Cup final ends in penalties",
        "Weather warning for the coast", "Ten gadgets for your kitchen", "The week in Westminster"}
    backlog = await store.embed_backlog("r", 100)
    assert len(backlog) == 4 and not {j.id for j in backlog} & set(stored)
    # The next check is conditional again: only a rule's edit dropped the validators.
    site.reset_log()
    assert (await c.run_round(force=True)).sources[0].not_modified
    assert [h.get("If-None-Match") for _, _, h in site.requests] == ['"v1"']


async def test_threads_and_the_process_pool_apply_the_rules_alike(site, tmp_path):
    """A round of enough sources parses in worker processes (`MIN_SOURCES_FOR_POOL`); the
    rules travel with each source to its worker and leave out what a threaded round does."""
    specs = []
    for i in range(MIN_SOURCES_FOR_POOL):
        site.route(f"/f{i}.xml", body=feed(f"http://s{i}.example"), content_type="application/rss+xml")
        rules = {"keep": "politics"} if i % 2 else {"block": GENERAL_BLOCK}
        specs.append(SourceSpec(f"src{i}", site.url(f"/f{i}.xml"), "news", **rules))

    async def collected(workers: int) -> tuple[dict, set]:
        store = Store(f"sqlite+aiosqlite:///{tmp_path / f'w{workers}.db'}")
        await store.migrate()
        await store.sync_sources(specs, NOW)
        c = collector(store, site, parse_workers=workers)
        await c.start()  # keeps the pool, to see below that it parsed
        try:
            report = await c.run_round(force=True)
            pool = c._kept_pool
            assert (pool is not None and pool._pool is not None and not pool.broken) == bool(workers)
            assert all(r.ok for r in report.sources), report.sources
            ids = await store.latest_ids(1000)
            stored = {(s.source, s.url) for s in (await store.get_stories(ids)).values()}
            return {r.name: (r.items, r.new, r.left_out) for r in report.sources}, stored
        finally:
            await c.close()
            await store.close()

    pooled, threaded = await collected(2), await collected(0)
    # Only what differs, in the message (the whole dicts were cut before the difference).
    differ = {name: (counts, threaded[0].get(name)) for name, counts in pooled[0].items()
              if counts != threaded[0].get(name)}
    assert pooled[0].keys() == threaded[0].keys() and not differ, differ
    assert pooled[1] == threaded[1], pooled[1] ^ threaded[1]
    # Odd sources keep the 3 items under /politics/ (or tagged Politics); even ones block 5.
    assert pooled[0]["src0"] == (7, 2, 5) and pooled[0]["src1"] == (7, 3, 4)
    assert len(pooled[1]) == 10 * 2 + 10 * 3


@pytest.mark.timeout(60)
async def test_a_runaway_rule_loses_no_story_and_the_round_says_which_rule(store, site):
    """A block rule that backtracks without end ("(a|aa)+$" against a title of a's: with `re`,
    hours for one item, the parse worker and every source behind it held) is stopped after
    50 ms; the source's items are all stored and its report names the rule."""
    items = [*ITEMS[:3], ("a" * 60 + "!", "/odd/a", "", [], "An odd headline.")]
    site.route("/all.xml", body=feed("http://news.example", items), content_type="application/rss+xml")
    await store.sync_sources([SourceSpec("general", site.url("/all.xml"), "politics",
                                         block=r"^live:|(a|aa)+$")], NOW)
    (r,) = (await collector(store, site).run_round(force=True)).sources
    assert (r.ok, r.items, r.new, r.left_out) == (True, 4, 3, 1), r  # "Live: …" left out
    assert any("block rule took over 50 ms" in p for p in r.problems), r.problems
    assert "a" * 60 + "!" in await titles(store, "general")


async def test_items_older_than_retention_keeps_are_not_stored_again(store, site):
    """`[retention] stories_days` deleted a feed's old items every hour, and the next round
    that read the feed stored them again as new (new ids, embedded again): a weekly blog's
    feed holds months of items. Those published before the horizon are not stored; a feed
    of old items only is still a source that works."""
    def rss(*items: tuple[str, str, str]) -> str:
        body = "".join(f"<item><title>{t}</title><link>http://news.example{p}</link>"
                       f"<description>About {t}.</description><pubDate>{d}</pubDate></item>"
                       for t, p, d in items)
        return (f'<?xml version="1.0"?><rss version="2.0"><channel><title>Blog</title>'
                f"<link>http://news.example/</link><description>d</description>{body}"
                "</channel></rss>")

    fresh = ("Budget vote in parliament", "/fresh", "Sun, 04 Jan 2026 09:00:00 GMT")
    old = ("Autumn statement reviewed", "/old", "Mon, 03 Nov 2025 09:00:00 GMT")  # 63 days
    site.route("/blog.xml", body=rss(fresh, old), content_type="application/rss+xml")
    site.route("/archive.xml", body=rss(old), content_type="application/rss+xml")
    await store.sync_sources([SourceSpec("blog", site.url("/blog.xml"), "politics"),
                              SourceSpec("archive", site.url("/archive.xml"), "politics")], NOW)
    report = await collector(store, site, clock=lambda: NOW, keep_days=30).run_round(force=True)
    by_name = {r.name: r for r in report.sources}
    assert await titles(store, "blog") == {"Budget vote in parliament"}
    assert await titles(store, "archive") == set()
    assert (by_name["blog"].ok, by_name["blog"].items, by_name["blog"].new) == (True, 2, 1)
    assert by_name["archive"].ok and by_name["archive"].new == 0, by_name["archive"]
    # Retention off (0, the default): every item is stored, however old.
    # (Both feeds hold the old item: it is stored once, under whichever source came first.)
    await collector(store, site, clock=lambda: NOW).run_round(force=True)
    stored = await titles(store, "blog") | await titles(store, "archive")
    assert stored == {"Budget vote in parliament", "Autumn statement reviewed"}
