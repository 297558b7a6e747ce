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


def rss(*items: tuple[str, str, str]) -> bytes:
    """A feed of (link, title, description) items, newest first."""
    now = datetime.now(UTC)
    body = "".join(
        f"<item><title>{escape(t)}</title><link>{u}</link><guid>{u}</guid>"
        f"<description>{escape(d)}</description>"
        f"<pubDate>{format_datetime(now - timedelta(minutes=i + 1))}</pubDate></item>"
        for i, (u, t, d) in enumerate(items))
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
    moved = await sqlite_store.get_story_by_url(OLD)
    copy = await sqlite_store.get_story_by_url(NEW)
    assert copy.duplicate_of == story.id  # still one story: no duplicate in blocks or searches
    assert moved.title == "Portmouth harbour strike ends"
    assert (await embed_versions(sqlite_store))[OLD] == before + 1  # embedded again
    # A later correction at the new URL reaches it too, and an unchanged round changes nothing.
    await collect(sqlite_store, site, ("/desk.xml", rss((NEW, "Portmouth harbour strike is over", BODY))))
    await collect(sqlite_store, site, ("/desk.xml", rss((NEW, "Portmouth harbour strike is over", BODY))))
    assert (await sqlite_store.get_story(story.id)).title == "Portmouth harbour strike is over"
    assert (await embed_versions(sqlite_store))[OLD] == before + 2
    assert await sqlite_store.count_stories() == 2  # the story and its copy


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
