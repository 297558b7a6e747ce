"""Publishers' corrections as the collector meets them: real feeds on a local site, a real
SQLite store. A story edited in place is tested in test_collect.py and tests/api; here, a
story whose URL moves (a new slug) with the same body."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from html import escape

import pytest

from aggregator.collect import Collector
from aggregator.model import SourceSpec
from aggregator.settings import CollectSettings
from tests.localsite import LocalSite, LoopbackResolver

FAST = CollectSettings(connect_timeout_s=1.0, total_timeout_s=2.0, min_interval_s=60,
                       jitter_ratio=0.0, max_body_bytes=2_000_000, public_links_only=False)
# Over 40 words: a body long enough to be hashed, so a second URL with it is a linked copy.
BODY = ("Dock workers at Portmouth harbour walked out on Monday over pay, halting container "
        "traffic. Pickets gathered at the main gate before dawn, and lorry drivers said they "
        "had been turned away without warning by security staff employed by the harbour "
        "company. The union said the strike would last a week.")
OLD, NEW = "https://news.example/harbour-strike", "https://news.example/harbour-strike-ends"
OTHER = ("The summer music festival announced its lineup of bands, with tickets on sale Friday. "
         "Organisers said the headline acts would be revealed at a launch party next month, and "
         "that camping passes had already sold out within hours of the presale opening online.")


def rss(*items: tuple[str, ...]) -> bytes:
    """A feed of (link, title, description[, guid]) items, newest first; without a guid the
    link is the item's guid (a permalink)."""
    now = datetime.now(UTC)
    body = "".join(
        f"<item><title>{escape(t)}</title><link>{u}</link>"
        + (f'<guid isPermaLink="false">{escape(g[0])}</guid>' if g else f"<guid>{u}</guid>")
        + f"<description>{escape(d)}</description>"
        f"<pubDate>{format_datetime(now - timedelta(minutes=i + 1))}</pubDate></item>"
        for i, (u, t, d, *g) in enumerate(items))
    return ("<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel><title>t</title>"
            f"<link>https://news.example/</link><description>d</description>{body}</channel></rss>"
            ).encode()


@pytest.fixture
async def site():
    async with LocalSite() as s:
        yield s


async def collect(store, site, *feeds: tuple[str, bytes]) -> None:
    """One forced round over sources named by their feed paths, serving these bodies."""
    for path, body in feeds:
        site.route(path, body=body, content_type="application/rss+xml")
    await store.sync_sources([SourceSpec(p.strip("/").removesuffix(".xml"), site.url(p), "news")
                              for p, _ in feeds])
    c = Collector(store, FAST, resolver_factory=lambda: LoopbackResolver(port=site.port))
    report = await c.run_round(force=True)
    assert all(r.ok for r in report.sources), report.sources


async def embed_versions(store) -> dict[str, int]:
    from sqlalchemy import select

    from aggregator.schema import StoryRow

    async with store.session() as s:
        return dict((await s.execute(select(StoryRow.url, StoryRow.embed_version))).tuples().all())


async def test_a_story_moved_to_a_new_slug_takes_its_new_headline(site, sqlite_store):
    # Before: the new URL was a linked copy (hidden) of the story readers see, which kept the
    # old headline, and every later correction at the new URL went to the copy.
    await collect(sqlite_store, site, ("/desk.xml", rss((OLD, "Dock workers strike at Portmouth harbour", BODY))))
    story = await sqlite_store.get_story_by_url(OLD)
    before = (await embed_versions(sqlite_store))[OLD]
    await collect(sqlite_store, site, ("/desk.xml", rss((NEW, "Portmouth harbour strike ends", BODY))))
    moved = await sqlite_store.get_story_by_url(NEW)
    old = await sqlite_store.get_story_by_url(OLD)
    assert moved.id == story.id and moved.duplicate_of is None  # the story moved to its new URL
    assert old.duplicate_of == story.id  # still one story: no duplicate in blocks or searches
    assert moved.title == "Portmouth harbour strike ends"
    assert (await embed_versions(sqlite_store))[NEW] == before + 1  # embedded again
    # A later correction at the new URL reaches it too, and an unchanged round changes nothing.
    await collect(sqlite_store, site, ("/desk.xml", rss((NEW, "Portmouth harbour strike is over", BODY))))
    await collect(sqlite_store, site, ("/desk.xml", rss((NEW, "Portmouth harbour strike is over", BODY))))
    assert (await sqlite_store.get_story(story.id)).title == "Portmouth harbour strike is over"
    assert (await embed_versions(sqlite_store))[NEW] == before + 2
    assert await sqlite_store.count_stories() == 2  # the story and its old URL


async def test_a_copy_beside_its_story_or_from_another_source_leaves_its_headline(site, sqlite_store):
    """Two URLs of one body in one feed (a wire story in two sections), or another source's
    syndicated copy, are copies: the story keeps its own headline."""
    await collect(sqlite_store, site, ("/desk.xml", rss((OLD, "Dock workers strike", BODY),
                                                        ("https://news.example/x", "Festival", OTHER))))
    await collect(sqlite_store, site,
                  ("/desk.xml", rss((NEW, "Strike: dock workers walk out", BODY), (OLD, "Dock workers strike", BODY))),
                  ("/wire.xml", rss(("https://wire.example/a", "Wire: harbour strike", BODY),
                                    ("https://wire.example/b", "Wire: festival lineup", OTHER))))
    assert (await sqlite_store.get_story_by_url(OLD)).title == "Dock workers strike"
    assert (await sqlite_store.get_story_by_url("https://news.example/x")).title == "Festival"
    wire = await sqlite_store.get_story_by_url("https://wire.example/b")
    assert wire.duplicate_of == (await sqlite_store.get_story_by_url("https://news.example/x")).id


# The story rewritten: a new slug, a new headline and a new lead, one item id throughout.
REWRITE = ("Portmouth harbour reopened on Thursday after dock workers accepted a pay offer, "
           "ending a four-day strike. Container ships that had waited offshore began docking "
           "at first light, and the harbour company said the backlog of lorries would clear "
           "by the weekend. Union leaders called the deal a fair settlement for members.")


def atom(*items: tuple[str, str, str, str]) -> bytes:
    """An Atom feed of (link, title, summary, id) entries."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = "".join(f"<entry><id>{escape(i)}</id><title>{escape(t)}</title><link href='{u}'/>"
                   f"<updated>{now}</updated><summary>{escape(d)}</summary></entry>"
                   for u, t, d, i in items)
    return ("<?xml version='1.0' encoding='utf-8'?><feed xmlns='http://www.w3.org/2005/Atom'>"
            f"<title>t</title><id>urn:feed</id><updated>{now}</updated>{body}</feed>").encode()


def jsonfeed(*items: tuple[str, str, str, str]) -> bytes:
    """A JSON Feed of (url, title, content_text, id) items."""
    import json

    return json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": [
        {"id": i, "url": u, "title": t, "content_text": d} for u, t, d, i in items]}).encode()


FORMATS = {"rss": (rss, "application/rss+xml"), "atom": (atom, "application/atom+xml"),
           "json": (jsonfeed, "application/feed+json")}


async def collect_as(store, site, fmt: str, *items: tuple[str, str, str, str]) -> None:
    build, content_type = FORMATS[fmt]
    site.route("/desk.xml", body=build(*items), content_type=content_type)
    await store.sync_sources([SourceSpec("desk", site.url("/desk.xml"), "news")])
    c = Collector(store, FAST, resolver_factory=lambda: LoopbackResolver(port=site.port))
    report = await c.run_round(force=True)
    assert all(r.ok for r in report.sources), report.sources


async def listed(store) -> list[str]:
    return [s.url for s in await store.latest_stories(limit=50)]


@pytest.mark.parametrize("fmt", FORMATS)
async def test_a_story_rewritten_under_a_new_url_is_found_by_its_item_id(site, sqlite_store, fmt):
    # Before: a new body at a new URL was a second story: readers saw both versions.
    await collect_as(sqlite_store, site, fmt, (OLD, "Dock workers strike at Portmouth harbour", BODY, "post-4411"),
                     ("https://news.example/x", "Festival lineup", OTHER, "post-4400"))
    story = await sqlite_store.get_story_by_url(OLD)
    before = (await embed_versions(sqlite_store))[OLD]
    await collect_as(sqlite_store, site, fmt, (NEW, "Portmouth harbour strike ends", REWRITE, "post-4411"),
                     ("https://news.example/x", "Festival lineup", OTHER, "post-4400"))
    moved = await sqlite_store.get_story_by_url(NEW)
    assert (moved.id, moved.title, moved.duplicate_of) == (story.id, "Portmouth harbour strike ends", None)
    assert "accepted a pay offer" in moved.summary + moved.text
    assert (await embed_versions(sqlite_store))[NEW] == before + 1  # embedded (and indexed) again
    assert sorted(await listed(sqlite_store)) == sorted([NEW, "https://news.example/x"])
    # The old URL still finds the story (a widget on the old page, a block asked by it).
    assert (await sqlite_store.get_story_by_url(OLD)).duplicate_of == story.id
    # A later edit in place leaves the old URL with the story: not a second story again.
    await collect_as(sqlite_store, site, fmt, (NEW, "Portmouth harbour strike ends", REWRITE + " More soon.", "post-4411"),
                     ("https://news.example/x", "Festival lineup", OTHER, "post-4400"))
    assert sorted(await listed(sqlite_store)) == sorted([NEW, "https://news.example/x"])
    old, edited = await sqlite_store.get_story_by_url(OLD), await sqlite_store.get_story_by_url(NEW)
    assert (old.duplicate_of, old.text) == (story.id, edited.text)  # it follows the edit


async def test_item_ids_that_tell_no_story_apart_move_nothing(site, sqlite_store):
    """One id on every item, an id that is the link, another source's item with the same id:
    new stories, the stored one left as it was."""
    async def round_(*items):
        await collect(sqlite_store, site, ("/desk.xml", rss(*items)))

    await round_((OLD, "Dock workers strike", BODY, "same"), ("https://news.example/x", "Festival", OTHER, "same"))
    await round_((NEW, "Harbour strike ends", REWRITE, "same"), ("https://news.example/y", "Festival 2", OTHER + " Again.", "same"))
    assert (await sqlite_store.get_story_by_url(OLD)).title == "Dock workers strike"
    assert set(await listed(sqlite_store)) == {OLD, NEW, "https://news.example/x", "https://news.example/y"}


async def test_an_id_that_is_the_link_or_another_sources_moves_nothing(site, sqlite_store):
    await collect(sqlite_store, site, ("/desk.xml", rss((OLD, "Dock workers strike", BODY),
                                                        ("https://news.example/x", "Festival", OTHER, "p1"))))
    # The link as id (a permalink guid): the new URL's id is the new link.
    # Another source's item with a stored id (the desk no longer carries that story).
    await collect(sqlite_store, site, ("/desk.xml", rss((NEW, "Harbour strike ends", REWRITE))),
                  ("/wire.xml", rss(("https://wire.example/z", "Wire festival", OTHER + " Wire.", "p1"))))
    assert (await sqlite_store.get_story_by_url(OLD)).title == "Dock workers strike"
    assert (await sqlite_store.get_story_by_url("https://news.example/x")).title == "Festival"
    assert set(await listed(sqlite_store)) == {OLD, NEW, "https://news.example/x", "https://wire.example/z"}


async def test_the_migration_adds_item_ids_to_a_stored_database(db_url):
    """0022 on SQLite and PostgreSQL: stored stories keep their rows, without an item id,
    and the (source, item id) index is there."""
    import sqlalchemy as sa

    from aggregator.store import Store
    from tests.aggregator.test_store import migrate_to

    store = Store(db_url)
    try:
        await migrate_to(store, "0021")
        now = datetime.now(UTC)
        async with store.engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO stories (url, original_url, title, summary, text, author, image_url,"
                " collected_at, updated_at, sort_at, site, source, category, source_key, category_key,"
                " content_hash, embed_version) VALUES (:u, :u, 'T', '', '', '', '', :t, :t, :t,"
                " 'news.example', 'desk', 'news', 'desk', 'news', '', 1)"), {"u": OLD, "t": now})
        await store.migrate()
        async with store.engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT url, item_id FROM stories"))).all() == [(OLD, None)]
            indexes = await conn.run_sync(lambda c: sa.inspect(c).get_indexes("stories"))
        assert {"name": "ix_stories_source_item_id", "cols": ["source", "item_id"]} in [
            {"name": i["name"], "cols": i["column_names"]} for i in indexes]
        await migrate_to(store, "0021", down=True)
        await store.migrate()  # down and up again
    finally:
        await store.close()


# A "daily briefing" feed: one item, one id every day, today's news under today's URL.
BRIEFINGS = [
    ("https://news.example/briefing/monday", "Morning briefing: what you need to know",
     "Good morning. Dock workers at Portmouth harbour walked out over pay, halting container "
     "traffic; the union said the strike would last a week. Also today: heavy rain is forecast "
     "across the north, with flood warnings issued for several rivers."),
    ("https://news.example/briefing/tuesday", "Morning briefing: what you need to know",
     "Good morning. The summer music festival announced its lineup, with tickets on sale "
     "Friday and camping passes already sold out. Also today: parliament debates the budget, "
     "and the central bank publishes its inflation report."),
    ("https://news.example/briefing/wednesday", "Morning briefing: what you need to know",
     "Good morning. A new library opened in the city centre after three years of building "
     "work, with a rooftop garden and a children's floor. Also today: the national football "
     "team names its squad for the spring qualifiers."),
]


async def test_a_feed_that_keeps_one_item_id_for_each_days_story_keeps_every_day(site, sqlite_store):
    # Before: each day's item, with the id of the day before's under a new URL, moved that
    # story: one story left, yesterday's URLs only hidden copies of today's.
    ids = []
    for url, title, summary in BRIEFINGS:
        await collect(sqlite_store, site, ("/desk.xml", rss((url, title, summary, "daily-briefing"))))
        ids.append((await sqlite_store.get_story_by_url(url)).id)
    assert len(set(ids)) == 3
    assert sorted(await listed(sqlite_store)) == sorted(u for u, _, _ in BRIEFINGS)
    monday = await sqlite_store.get_story_by_url(BRIEFINGS[0][0])
    assert (monday.id, monday.duplicate_of) == (ids[0], None) and "Portmouth" in monday.summary


async def test_a_round_of_known_urls_asks_for_no_item_ids(site, sqlite_store):
    """Only a draft at a URL not stored as a story can move one: a steady round (every URL
    stored) skips the lookup of item ids, the collector's every fetch; a new URL makes it."""
    from sqlalchemy import event

    items = [(OLD, "Dock workers strike", BODY, "post-1"), ("https://news.example/x", "Festival", OTHER, "post-2")]
    await collect(sqlite_store, site, ("/desk.xml", rss(*items)))
    statements: list[str] = []

    def seen(conn, cursor, statement, *args):
        statements.append(" ".join(statement.split()))

    def id_lookups() -> list[str]:
        return [q for q in statements if q.startswith("SELECT") and "stories.item_id IN" in q]

    event.listen(sqlite_store.engine.sync_engine, "before_cursor_execute", seen)
    try:
        await collect(sqlite_store, site, ("/desk.xml", rss(*items)))
        assert not id_lookups(), id_lookups()
        await collect(sqlite_store, site, ("/desk.xml", rss(("https://news.example/y", "Library opens",
                                                             BRIEFINGS[2][2], "post-3"), *items)))
        assert id_lookups()
    finally:
        event.remove(sqlite_store.engine.sync_engine, "before_cursor_execute", seen)


async def test_a_copy_a_move_deletes_hands_its_events_and_counts_to_the_story(site, store):
    """The story takes the URL of its copy (the same body, already stored there) and the copy
    row goes: events naming the copy (the API names it for an event that gives its URL) and
    its counts now name the story. Before, the export showed them as of a removed story and
    the counts went with the copy's row (cascade)."""
    from aggregator.store import EventRecord

    await collect(store, site, ("/desk.xml", rss((OLD, "Dock workers strike", BODY))))
    # Both URLs in one feed: the new one is a copy beside its story, nothing moves yet.
    await collect(store, site, ("/desk.xml", rss((NEW, "Harbour strike", BODY), (OLD, "Dock workers strike", BODY))))
    story, copy = await store.get_story_by_url(OLD), await store.get_story_by_url(NEW)
    assert copy.duplicate_of == story.id
    at = datetime.now(UTC) - timedelta(minutes=5)
    await store.add_events([
        EventRecord("k1", "reader-1", copy.id, "click", at, page="https://blog.example/a"),
        EventRecord("k2", "reader-1", copy.id, "impression", at, page="https://blog.example/a"),
        EventRecord("k3", "reader-1", story.id, "click", at, page="https://blog.example/a"),
    ])
    await collect(store, site, ("/desk.xml", rss((NEW, "Harbour strike", BODY))))
    moved = await store.get_story_by_url(NEW)
    assert moved.id == story.id and await store.get_story(copy.id) is None  # the move happened
    exported = [e for batch in [b async for b in store.iter_reader_events("reader-1")] for e in batch]
    assert sorted((e.event_key, e.story_id, e.url) for e in exported) == [
        ("k1", story.id, NEW), ("k2", story.id, NEW), ("k3", story.id, NEW)]
    assert (await store.story_stats([story.id, copy.id])) == {story.id: (1, 2, 0)}
    report = await store.widget_stats(at - timedelta(days=1), datetime.now(UTC))
    assert sum(s.clicks for s in report.stories) == 2, report


def page(title: str, body: str) -> bytes:
    """An article page: its title and body, in paragraphs long enough to be read."""
    paras = "".join(f"<p>{escape(body)} Paragraph {i}.</p>" for i in range(4))
    return (f"<html><head><title>{escape(title)}</title></head><body><article>"
            f"<h1>{escape(title)}</h1>{paras}</article></body></html>").encode()


async def test_a_page_a_full_text_sitemap_still_lists_keeps_its_story(site, sqlite_store):
    """A full_text sitemap's link stored with its text is not read again, so it was missing
    from the round's batch though the sitemap still lists it: a new link with the same body
    (the page's print variant) took the story's URL, and the story's own became a copy."""
    a, b = site.url("/post/strike"), site.url("/post/strike?print=1")
    site.route("/post/strike", body=page("Dock workers strike", BODY), content_type="text/html")
    spec = SourceSpec("sm", site.url("/sitemap.xml"), "news", kind="sitemap", full_text=True)
    await sqlite_store.sync_sources([spec])
    c = Collector(sqlite_store, FAST, resolver_factory=lambda: LoopbackResolver(port=site.port))

    async def round_(*links: str) -> None:
        site.route("/sitemap.xml", content_type="application/xml", body=(
            '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            + "".join(f"<url><loc>{escape(u)}</loc></url>" for u in links) + "</urlset>").encode())
        report = await c.run_round(force=True)
        assert all(r.ok for r in report.sources), report.sources

    await round_(a)
    story = await sqlite_store.get_story_by_url(a)
    await round_(a, b)
    kept, variant = await sqlite_store.get_story_by_url(a), await sqlite_store.get_story_by_url(b)
    assert (kept.id, kept.duplicate_of) == (story.id, None)  # still the story, at its URL
    assert variant.duplicate_of == story.id  # the variant: a hidden copy of it
    assert await listed(sqlite_store) == [a]


async def test_an_item_the_rules_leave_out_is_still_carried(site, sqlite_store):
    """A keep/block rule that now leaves out a stored story's item (added since): the feed
    still carries the story's URL, so a new link with its body there is a copy, not the
    story moved."""
    await collect(sqlite_store, site, ("/desk.xml", rss((OLD, "Dock workers strike", BODY))))
    story = await sqlite_store.get_story_by_url(OLD)
    site.route("/desk.xml", content_type="application/rss+xml", body=rss(
        (NEW, "Harbour: walkout", BODY), (OLD, "Dock workers strike", BODY)))
    await sqlite_store.sync_sources([SourceSpec("desk", site.url("/desk.xml"), "news",
                                                 block="Dock workers")])
    c = Collector(sqlite_store, FAST, resolver_factory=lambda: LoopbackResolver(port=site.port))
    report = await c.run_round(force=True)
    assert report.sources[0].ok and report.sources[0].left_out == 1, report.sources
    assert (await sqlite_store.get_story_by_url(OLD)).id == story.id
    assert (await sqlite_store.get_story_by_url(NEW)).duplicate_of == story.id


async def test_a_child_sitemap_that_fails_moves_none_of_its_stories(site, sqlite_store):
    """A sitemap index whose child holding a story fails for a round: the source still
    carries the story's URL, only it was not read. A copy of the story in another child (the
    page's print variant) took the story's URL as if the story had moved."""
    a, b = site.url("/post/strike"), site.url("/post/strike?print=1")
    site.route("/post/strike", body=page("Dock workers strike", BODY), content_type="text/html")
    spec = SourceSpec("sm", site.url("/index.xml"), "news", kind="sitemap", full_text=True)
    await sqlite_store.sync_sources([spec])
    c = Collector(sqlite_store, FAST, resolver_factory=lambda: LoopbackResolver(port=site.port))
    xml = "application/xml"

    def urlset(link: str) -> bytes:
        return ('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
                ' xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"><url>'
                f'<loc>{escape(link)}</loc><news:news><news:title>Dock workers strike'
                '</news:title></news:news></url></urlset>').encode()

    async def round_(*children: str) -> None:
        site.route("/index.xml", content_type=xml, body=(
            '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            + "".join(f"<sitemap><loc>{site.url(p)}</loc></sitemap>" for p in children)
            + "</sitemapindex>").encode())
        report = await c.run_round(force=True)
        assert all(r.ok for r in report.sources), report.sources

    site.route("/c1.xml", content_type=xml, body=urlset(a))
    await round_("/c1.xml")
    story = await sqlite_store.get_story_by_url(a)
    site.route("/c2.xml", content_type=xml, body=urlset(b))
    await round_("/c2.xml", "/c1.xml")
    assert (await sqlite_store.get_story_by_url(b)).duplicate_of == story.id
    site.route("/c1.xml", content_type=xml, body=b"down", status=503)
    await round_("/c2.xml", "/c1.xml")
    kept = await sqlite_store.get_story_by_url(a)
    assert (kept.id, kept.duplicate_of) == (story.id, None)  # still the story, at its URL
    assert (await sqlite_store.get_story_by_url(b)).duplicate_of == story.id


@pytest.mark.parametrize("live_first", [False, True])
async def test_a_story_rewritten_under_a_new_url_with_a_copy_beside_it_stays_the_story(site, sqlite_store,
                                                                                      live_first):
    """The rewrite at its new URL and, in the same feed, a second link to the new body (another
    section): the moved story is the story, the second link its copy, as when the two come a
    round apart. Before, the second link, inserted first, took the body: the story that
    readers' events and counts name became its hidden copy and left the index."""
    await collect_as(sqlite_store, site, "atom", (OLD, "Dock workers strike at Portmouth harbour", BODY, "post-4411"))
    story = await sqlite_store.get_story_by_url(OLD)
    live = "https://news.example/live/harbour"
    items = [(NEW, "Portmouth harbour strike ends", REWRITE, "post-4411"),
             (live, "Live: harbour reopens", REWRITE, "post-4499")]
    await collect_as(sqlite_store, site, "atom", *(items[::-1] if live_first else items))
    moved, copy = await sqlite_store.get_story_by_url(NEW), await sqlite_store.get_story_by_url(live)
    assert (moved.id, moved.duplicate_of) == (story.id, None)
    assert copy.duplicate_of == story.id
    assert (await sqlite_store.get_story_by_url(OLD)).duplicate_of == story.id
    assert await listed(sqlite_store) == [NEW]


async def test_two_stories_moved_in_one_round_each_take_their_own_url(site, sqlite_store):
    """Two stories moved in one round, one rewritten and one under a new slug only (its body
    as it was): each takes its own new URL, each old URL stays a copy of its story."""
    x, y = "https://news.example/festival", "https://news.example/festival-lineup"
    await collect_as(sqlite_store, site, "atom", (OLD, "Dock workers strike", BODY, "post-1"),
                     (x, "Festival lineup", OTHER, "post-2"))
    a, b = await sqlite_store.get_story_by_url(OLD), await sqlite_store.get_story_by_url(x)
    await collect_as(sqlite_store, site, "atom", (NEW, "Harbour strike ends", REWRITE, "post-1"),
                     (y, "Festival lineup announced", OTHER, "post-2"))
    assert [(await sqlite_store.get_story_by_url(u)).id for u in (NEW, y)] == [a.id, b.id]
    assert [(await sqlite_store.get_story_by_url(u)).duplicate_of for u in (OLD, x)] == [a.id, b.id]
    assert sorted(await listed(sqlite_store)) == sorted([NEW, y])
