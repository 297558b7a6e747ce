"""The collection flow end to end: shipped config, local site serving real captured feeds,
real SQLite store. Faults on some sources never stop the others and never lose stories.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from aggregator.collect import (
    PAGE_TRIES,
    Collector,
    failed_rounds_after,
    old_marks,
    page_marks,
    too_old,
)
from aggregator.model import Selectors, SourceSpec, selectors_json, zone_only
from aggregator.settings import CollectSettings
from aggregator.sources import load_sources
from aggregator.store import FetchRecord, Store, reset_values
from tests.localsite import LocalSite, LoopbackResolver

REPO = Path(__file__).resolve().parents[2]
FEEDS = [
    "news-feeds/fast-news-reader/bbc.xml",
    "news-feeds/photojournalism/nytimes.xml",
    "news-feeds/photojournalism/npr.xml",
    "news-feeds/rss-parser/guardian.rss",
    "news-feeds/node-feedparser/tpm.atom",
    "news-feeds/RSParser/livemint.xml",
    "news-feeds/rss-parser/encoding.rss",
    "news-feeds/RSParser/DaringFireball.json",
    "news-feeds/rss-parser/rss-1.rss",
]
# The local site stands for many hosts (LoopbackResolver maps every name to it), so links to
# hosts no source names resolve to loopback: allowed here, refused by default (the test of
# `public_links_only` below).
NOW_EDIT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
FAST = CollectSettings(connect_timeout_s=1.0, total_timeout_s=2.0, min_interval_s=60,
                       jitter_ratio=0.0, max_body_bytes=2_000_000, public_links_only=False)


@pytest.fixture
async def site(shared_data):
    async with LocalSite(shared_data) as s:
        yield s


def collector(store, site, settings=FAST, clock=None, **kw) -> Collector:
    if clock:
        kw["clock"] = clock
    return Collector(store, settings, resolver_factory=lambda: LoopbackResolver(port=site.port), **kw)


async def test_shipped_sources_collected_from_local_copies(site, sqlite_store, shared_data):
    """Every enabled source of config/sources.toml, its host mapped to the local site."""
    specs = [s for s in load_sources(REPO / "config" / "sources.toml") if s.enabled]
    assert len(specs) >= 20
    local = []
    for i, spec in enumerate(specs):
        url = site.rewrite(spec.url)
        body = (shared_data / FEEDS[i % len(FEEDS)]).read_bytes()
        from yarl import URL

        u = URL(url)
        site.route(u.path_qs if u.query_string else u.path, body=body, etag=f'"v{i}"',
                   host=u.host)
        # full_text sources would fetch every article page from the real sites: off here.
        local.append(dataclasses.replace(spec, url=url, full_text=False))
    await sqlite_store.sync_sources(local)
    c = collector(sqlite_store, site)
    report = await c.run_round()
    assert len(report.sources) == len(local)
    failed = [r for r in report.sources if not r.ok]
    assert failed == [], failed
    total = await sqlite_store.count_stories()
    assert report.new > 0 and total == report.new  # the same feed in several sources: no dup rows
    health = {h.name: h for h in await sqlite_store.list_sources()}
    assert all(h.status == "ok" for h in health.values())

    # Second round: every source answers 304 to the stored validators.
    report2 = await c.run_round(force=True)
    assert all(r.not_modified for r in report2.sources), [r for r in report2.sources if not r.not_modified]
    assert await sqlite_store.count_stories() == total
    conditional = [r for r in site.requests if r.headers.get("If-None-Match")]
    assert len(conditional) == len(local)


async def test_faults_are_recorded_and_the_rest_goes_on(site, sqlite_store, shared_data):
    good = (shared_data / FEEDS[0]).read_bytes()
    site.route("/good.xml", body=good)
    site.route("/html", body=b"<html><head><title>Home</title></head><body><p>Hi</p></body></html>",
               content_type="text/html")
    site.route("/empty", body=b"")
    site.route("/gone", status=410)
    site.route("/limited", status=429, headers={"Retry-After": "7200"})
    other = (shared_data / FEEDS[1]).read_bytes()
    site.route("/broken.xml", body=other[: len(other) // 2])  # truncated mid-document
    specs = [
        SourceSpec("good", site.url("/good.xml"), "politics"),
        SourceSpec("html", site.url("/html"), "politics"),
        SourceSpec("empty", site.url("/empty"), "politics"),
        SourceSpec("gone", site.url("/gone"), "politics"),
        SourceSpec("limited", site.url("/limited"), "politics"),
        SourceSpec("stalls", site.url("/slow"), "politics"),
        SourceSpec("huge", site.url("/huge"), "politics"),
        SourceSpec("loop", site.url("/redirect-loop"), "politics"),
        SourceSpec("broken", site.url("/broken.xml"), "politics"),
    ]
    await sqlite_store.sync_sources(specs)
    now = datetime.now(UTC)
    report = await collector(sqlite_store, site).run_round()
    by = {r.name: r for r in report.sources}
    assert by["good"].ok and by["good"].new > 0
    assert by["broken"].ok and 0 < by["broken"].new < 25  # recovered what parses of 25 items
    assert any("malformed" in p for p in by["broken"].problems)
    for name, needle in [("html", "html"), ("empty", "empty"), ("gone", "410"),
                         ("limited", "429"), ("stalls", "within 2 s"), ("huge", "exceeds"),
                         ("loop", "redirect")]:
        assert not by[name].ok, name
        assert needle in by[name].error.lower(), (name, by[name].error)
    health = {h.name: h for h in await sqlite_store.list_sources()}
    assert health["gone"].status == "error" and health["gone"].error_count == 1
    assert health["limited"].next_check_at >= now + timedelta(seconds=7000)  # Retry-After honoured
    stored = await sqlite_store.count_stories()

    # A later failure of the good source loses nothing already stored.
    site.route("/good.xml", status=500)
    report = await collector(sqlite_store, site).run_round(name="good", force=True)
    assert not report.sources[0].ok
    assert await sqlite_store.count_stories() == stored
    h = next(h for h in await sqlite_store.list_sources() if h.name == "good")
    assert h.error_count == 1 and h.last_success_at is not None


async def test_backoff_grows_and_success_resets(site, sqlite_store):
    site.route("/down", status=503)
    await sqlite_store.sync_sources([SourceSpec("down", site.url("/down"), "politics", interval_s=60)])
    clock = [datetime(2026, 1, 1, tzinfo=UTC)]
    c = collector(sqlite_store, site, clock=lambda: clock[0])
    gaps = []
    for _ in range(4):
        await c.run_round(name="down", force=True)
        (h,) = await sqlite_store.list_sources()
        gaps.append((h.next_check_at - clock[0]).total_seconds())
    assert gaps == sorted(gaps) and gaps[-1] >= 4 * gaps[0]
    site.route("/down", body=(SHARED := b'<rss version="2.0"><channel><title>x</title><item><title>t</title>'
                                        b'<link>http://e.org/1</link></item></channel></rss>'))
    await c.run_round(name="down", force=True)
    (h,) = await sqlite_store.list_sources()
    assert h.error_count == 0 and h.status == "ok" and SHARED


async def test_stored_stories_wake_the_indexer_before_the_source_is_recorded(site, sqlite_store):
    """`stored` is told as soon as a source's stories are committed, not once its record is
    written too (the report): that write queues behind the round's other stores, and the
    model idled meanwhile. Nothing new (a 304), nothing is told."""
    site.route("/f", etag='"a"', body=b'<rss version="2.0"><channel><title>x</title><item>'
               b'<title>t</title><link>http://e.org/1</link></item></channel></rss>')
    await sqlite_store.sync_sources([SourceSpec("f", site.url("/f"), "politics", interval_s=60)])
    c = collector(sqlite_store, site)
    seen: list[str] = []
    c.stored.append(lambda: seen.append("stored"))
    c.listeners.append(lambda r: seen.append(f"report new={r.new}"))
    await c.run_round(name="f", force=True)
    await c.run_round(name="f", force=True)  # answered 304
    assert seen == ["stored", "report new=1", "report new=0"]


async def test_a_source_that_comes_back_says_so(site, sqlite_store, caplog):
    """The log said `collect.failed` at each failed fetch, then nothing: a feed back from an
    outage unchanged answers 304, which logs no `collect.ok`, so an operator reading the log
    (or only its warnings) could not tell a source that recovered from one still down."""
    import logging

    feed = ('<rss version="2.0"><channel><title>x</title><item><title>t</title>'
            '<link>http://e.org/1</link></item></channel></rss>')
    site.route("/flaky.xml", body=feed, etag='"v1"', content_type="application/rss+xml")
    await sqlite_store.sync_sources([SourceSpec("flaky", site.url("/flaky.xml"), "politics")])
    c = collector(sqlite_store, site)
    caplog.set_level(logging.WARNING, logger="tidings.collect")
    (first,) = (await c.run_round()).sources
    assert first.ok and first.recovered_after == 0
    for _ in range(2):
        site.route("/flaky.xml", status=500)
        await c.run_round(name="flaky", force=True)
    site.route("/flaky.xml", body=feed, etag='"v1"', content_type="application/rss+xml")
    (back,) = (await c.run_round(name="flaky", force=True)).sources
    assert back.ok and back.not_modified and back.recovered_after == 2
    lines = [r.getMessage() for r in caplog.records if "collect.recovered" in r.getMessage()]
    assert lines == ["collect.recovered source=flaky after_errors=2"]
    (again,) = (await c.run_round(name="flaky", force=True)).sources  # once, not every round
    assert again.ok and again.recovered_after == 0
    assert len([r for r in caplog.records if "collect.recovered" in r.getMessage()]) == 1


async def test_a_failing_private_feed_keeps_its_key_out_of_the_log(site, sqlite_store, caplog):
    """A paid or private feed carries its key in the query, and each failed fetch wrote it
    whole into the WARNING line (`error=HTTP 404 Not Found from …?token=…`): log files go to
    aggregators and bug reports. The line still names the source and the reason."""
    import logging

    url = site.url("/private.xml?lang=en&token=s3cret-feed-key")  # nothing there: a 404
    await sqlite_store.sync_sources([SourceSpec("private", url, "politics")])
    caplog.set_level(logging.INFO, logger="tidings.collect")
    (report,) = (await collector(sqlite_store, site).run_round()).sources
    assert not report.ok
    (line,) = [r.getMessage() for r in caplog.records if "collect.failed" in r.getMessage()]
    assert "source=private" in line and "HTTP 404" in line and "lang=en&token=***" in line, line
    assert not [r for r in caplog.records if "s3cret" in r.getMessage()]


async def test_full_text_pages_fetched_and_extracted(site, sqlite_store, shared_data):
    pages = ["guardian-1", "nytimes-1", "bbc-1"]
    items = []
    for i, name in enumerate(pages):
        site.route(f"/article/{i}", body=(shared_data / "readability-news-pages" / name / "source.html").read_bytes(),
                   content_type="text/html; charset=utf-8")
        items.append(f"<item><title>Story {i}</title><link>{site.url(f'/article/{i}', 'news.example')}</link>"
                     f"<description>Teaser {i}</description></item>")
    feed = f'<rss version="2.0"><channel><title>t</title>{"".join(items)}</channel></rss>'
    site.route("/ft.xml", body=feed, content_type="application/rss+xml")
    await sqlite_store.sync_sources([SourceSpec("ft", site.url("/ft.xml"), "politics", full_text=True)])
    report = await collector(sqlite_store, site).run_round()
    assert report.sources[0].ok and report.sources[0].new == 3
    stories = await sqlite_store.latest_stories(limit=10)
    assert all(len(s.text.split()) > 150 for s in stories), [len(s.text.split()) for s in stories]
    assert any(s.image_url for s in stories)


async def test_a_link_twice_in_a_feed_is_stored_as_its_first_copy_and_read_once(
        site, sqlite_store, shared_data):
    """The BBC's feed carries one story at the top ("Rochdale v York City: Their day, until it
    wasn't…") and again lower down without the match's name: the store kept the last copy.
    A full_text source read the article page once for each copy."""
    site.route("/bbc.xml", body=(shared_data / FEEDS[0]).read_bytes(), content_type="application/rss+xml")
    await sqlite_store.sync_sources([SourceSpec("bbc", site.url("/bbc.xml"), "news")])
    report = await collector(sqlite_store, site).run_round()
    assert report.sources[0].ok and report.sources[0].new == 26  # 27 items, one link twice
    story = await sqlite_store.get_story_by_url("https://www.bbc.com/sport/football/articles/c62kpkm1l80o")
    assert story.title.startswith("Rochdale v York City: Their day")
    page = (shared_data / "readability-news-pages" / "bbc-1" / "source.html").read_bytes()
    site.route("/twice/1", body=page, content_type="text/html; charset=utf-8")
    link = site.url("/twice/1", "news.example")
    site.route("/twice.xml", content_type="application/rss+xml",
               body=f'<rss version="2.0"><channel><title>t</title><item><title>First</title>'
                    f'<link>{link}</link></item><item><title>Second</title><link>{link}</link>'
                    f'</item></channel></rss>')
    await sqlite_store.sync_sources([SourceSpec("twice", site.url("/twice.xml"), "news", full_text=True)])
    site.reset_log()
    report = await collector(sqlite_store, site).run_round(name="twice", force=True)
    assert report.sources[0].ok and report.sources[0].new == 1
    assert site.paths_requested().count("/twice/1") == 1
    assert (await sqlite_store.get_story_by_url(link)).title == "First"


async def test_a_taken_down_story_is_neither_read_nor_stored_again(site, sqlite_store, shared_data):
    """A story deleted by hand came back with the next round its feed still listed it; a
    taken-down one stays out, and its article page is not read again every round."""
    body = (shared_data / "readability-news-pages" / "guardian-1" / "source.html").read_bytes()
    items = []
    for i in range(2):
        site.route(f"/td/{i}", body=body.replace(b"<title>", f"<title>Copy {i} ".encode(), 1),
                   content_type="text/html; charset=utf-8")
        items.append(f"<item><title>Story {i}</title><link>{site.url(f'/td/{i}', 'news.example')}</link>"
                     f"<description>Teaser {i}</description></item>")
    site.route("/td.xml", body=f'<rss version="2.0"><channel><title>t</title>{"".join(items)}</channel></rss>',
               content_type="application/rss+xml")
    await sqlite_store.sync_sources([SourceSpec("td", site.url("/td.xml"), "politics", full_text=True)])
    first = await collector(sqlite_store, site).run_round()
    assert first.sources[0].new == 2
    doomed = site.url("/td/0", "news.example")
    assert len(await sqlite_store.take_down([doomed], reason="legal", now=datetime.now(UTC))) >= 1
    site.reset_log()
    again = await collector(sqlite_store, site).run_round(name="td", force=True)
    assert again.sources[0].ok and again.sources[0].new == 0
    assert "/td/0" not in site.paths_requested()
    assert doomed not in {s.url for s in await sqlite_store.latest_stories(limit=10)}


async def test_full_text_page_image_replaces_a_feed_thumbnail(site, sqlite_store, shared_data):
    """The BBC's feed gives 240 px thumbnails (its URLs say so); the page read for the text
    has a 1024 px og:image, which the card now shows; so does a page whose feed thumbnail
    says width="150" in the feed only. A feed image that is not known small
    (the Guardian's 460 px rendition) stays, even beside a page's larger one."""
    import re

    bbc_feed = (shared_data / "news-feeds/fast-news-reader/bbc.xml").read_text(encoding="utf-8")
    thumb = re.search(r'<media:thumbnail[^>]*/>', bbc_feed).group(0)
    big = "https://i.guim.co.uk/img/media/b7/master/3000.jpg?w=460&amp;q=55"
    items = []
    small = '<media:thumbnail url="https://static01.nyt.com/images/thumb.jpg" width="150"/>'
    for i, (name, image) in enumerate([("bbc-1", thumb), ("guardian-1", f'<media:content url="{big}" medium="image"/>'),
                                       ("nytimes-1", small)]):
        site.route(f"/article/{i}", body=(shared_data / "readability-news-pages" / name / "source.html").read_bytes(),
                   content_type="text/html; charset=utf-8")
        items.append(f"<item><title>Story {i}</title><link>{site.url(f'/article/{i}', 'news.example')}</link>"
                     f"<description>Teaser {i}</description>{image}</item>")
    feed = ('<rss version="2.0" xmlns:media="http://search.yahoo.com/mrss/"><channel><title>t</title>'
            f'{"".join(items)}</channel></rss>')
    site.route("/ft.xml", body=feed, content_type="application/rss+xml")
    await sqlite_store.sync_sources([SourceSpec("ft", site.url("/ft.xml"), "politics", full_text=True)])
    report = await collector(sqlite_store, site).run_round()
    assert report.sources[0].ok and report.sources[0].new == 3
    by_title = {s.title: s for s in await sqlite_store.latest_stories(limit=10)}
    assert "/ace/standard/240/" in thumb
    assert by_title["Story 0"].image_url == (
        "http://ichef.bbci.co.uk/news/1024/cpsprodpb/3D8B/production/_84455751_84455749.jpg")
    assert by_title["Story 1"].image_url == big.replace("&amp;", "&")
    # a thumbnail whose width only the feed states (width="150")
    assert by_title["Story 2"].image_url.endswith("13SUDAN-1-facebookJumbo.jpg")


async def test_feed_tags_are_stored_and_follow_the_feed(site, sqlite_store, shared_data):
    """Feeds' <category> tags were parsed and then dropped before the store, so a reader's
    muted topics never met them. A real capture (NYT, a dozen keyword categories an item)
    and a feed whose tags change between two rounds."""
    site.route("/nyt.xml", body=(shared_data / "news-feeds/photojournalism/nytimes.xml").read_bytes(),
               content_type="application/rss+xml")

    def feed(*tags: str) -> str:
        cats = "".join(f"<category>{t}</category>" for t in tags)
        return ('<rss version="2.0"><channel><title>t</title><item><title>Villa drama as two '
                f'more leave</title><link>https://tv.example/villa</link>{cats}</item></channel></rss>')

    site.route("/tv.xml", body=feed("Love Island", "love island", "ITV"), content_type="application/rss+xml")
    await sqlite_store.sync_sources([SourceSpec("nyt", site.url("/nyt.xml"), "world"),
                                     SourceSpec("tv", site.url("/tv.xml"), "entertainment")])
    c = collector(sqlite_store, site)
    report = await c.run_round()
    assert all(r.ok for r in report.sources), report.sources
    gaza = await sqlite_store.get_story_by_url(
        "https://www.nytimes.com/2023/11/24/world/middleeast/palestinian-authority-gaza-war.html")
    assert gaza.tags[:4] == ("Israel-Gaza War (2023- )", "Palestinians", "Politics and Government",
                             "Abbas, Mahmoud")
    villa = await sqlite_store.get_story_by_url("https://tv.example/villa")
    assert villa.tags == ("Love Island", "ITV")  # one tag whatever its case

    site.route("/tv.xml", body=feed("Reality TV"), content_type="application/rss+xml")
    await c.run_round(name="tv", force=True)
    assert (await sqlite_store.get_story(villa.id)).tags == ("Reality TV",)


def _plain_sitemap(urls: list[str]) -> str:
    entries = "".join(f"<url><loc>{u}</loc><lastmod>2026-11-25T08:00:00Z</lastmod></url>" for u in urls)
    return f'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>'


async def test_a_plain_sitemap_gives_stories_through_full_text_reading(site, sqlite_store, shared_data):
    """A plain sitemap lists links without titles: normalize dropped them before full-text
    reading could title them, so a full_text sitemap never gave a story, and said ok."""
    pages = ["guardian-1", "nytimes-1", "bbc-1"]
    for i, name in enumerate(pages):
        site.route(f"/article/{i}", body=(shared_data / "readability-news-pages" / name / "source.html").read_bytes(),
                   content_type="text/html; charset=utf-8")
    links = [site.url(f"/article/{i}", "news.example") for i in range(3)]
    site.route("/sitemap.xml", body=_plain_sitemap(links), content_type="application/xml")
    site.route("/bare.xml", body=_plain_sitemap(links), content_type="application/xml")
    site.route("/gone.xml", body=_plain_sitemap([site.url(f"/status/404?{i}") for i in range(3)]),
               content_type="application/xml")
    await sqlite_store.sync_sources([
        SourceSpec("sm", site.url("/sitemap.xml"), "politics", kind="sitemap", full_text=True),
        SourceSpec("bare", site.url("/bare.xml"), "politics", kind="sitemap"),
        SourceSpec("gone", site.url("/gone.xml"), "politics", kind="sitemap", full_text=True)])
    report = {r.name: r for r in (await collector(sqlite_store, site).run_round()).sources}
    assert report["sm"].ok and (report["sm"].items, report["sm"].new) == (3, 3), report["sm"]
    stories = await sqlite_store.latest_stories(limit=10)
    assert len(stories) == 3 and all(s.title and len(s.text.split()) > 150 for s in stories)
    # <lastmod> (2026-11-25, when the page last changed) is no publication time: the pages'
    # own are (the Guardian's 2019-01-03T07:00:02Z; BBC's gives its day).
    when = {s.url.rsplit("/", 1)[1]: s.published_at for s in stories}
    assert when["0"] == datetime(2019, 1, 3, 7, 0, 2, tzinfo=UTC)
    assert when["2"].date().isoformat() == "2015-07-24"
    # Every item unusable is not "ok": the source says why.
    assert not report["bare"].ok and report["bare"].error.startswith("3 items, none usable")
    assert "full-text reading" in report["bare"].error
    assert not report["gone"].ok and "none from their article pages" in report["gone"].error
    health = {h.name: h for h in await sqlite_store.list_sources()}
    assert [health[n].status for n in ("sm", "bare", "gone")] == ["ok", "error", "error"]
    # The next round reads no page again (stored with their text) and is no failure.
    site.reset_log()
    again = await collector(sqlite_store, site).run_round(name="sm", force=True)
    assert again.sources[0].ok and again.sources[0].new == 0
    assert not [p for p in site.paths_requested() if p.startswith("/article/")]


def _article(title: str) -> bytes:
    words = " ".join(f"{title} was reported today by our correspondent, paragraph {i}." for i in range(20))
    return (f"<html><head><title>{title}</title></head><body><article><h1>{title}</h1>"
            f"<p>{words}</p><p>{words}</p></article></body></html>").encode()


def _dated_sitemap(site: LocalSite, lastmods: dict[str, str]) -> bytes:
    """A plain sitemap of the site's paths, each with its <lastmod>."""
    entries = "".join(f"<url><loc>{site.url(p)}</loc><lastmod>{at}</lastmod></url>"
                      for p, at in lastmods.items())
    return ('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"{entries}</urlset>").encode()


async def test_a_plain_sitemap_listed_oldest_first_has_its_newest_pages_read_first(sqlite_store):
    """Sitemaps mostly list oldest first (WordPress's by post id): full-text reading, 2 pages
    a round here, went on the oldest links, and this week's stories waited for every older
    page to be read. Now a sitemap's links are taken newest first, by <lastmod>."""
    async with LocalSite() as site:
        days = [f"2026-11-{d:02d}" for d in range(20, 26)]  # oldest first
        for day in days:
            site.route(f"/post/{day}", body=_article(f"Story of {day}"), content_type="text/html")
        site.route("/wp-sitemap-posts-post-1.xml", content_type="application/xml",
                   body=_dated_sitemap(site, {f"/post/{d}": f"{d}T08:00:00Z" for d in days}))
        await sqlite_store.sync_sources([SourceSpec(
            "wp", site.url("/wp-sitemap-posts-post-1.xml"), "world", kind="sitemap", full_text=True)])
        settings = dataclasses.replace(FAST, full_text_limit=2)
        report = await collector(sqlite_store, site, settings).run_round()
        assert report.sources[0].ok and report.new == 2
        assert sorted(s.title for s in await sqlite_store.latest_stories(limit=10)) == [
            "Story of 2026-11-24", "Story of 2026-11-25"]


async def test_an_article_page_s_absurd_time_is_checked_as_a_feed_s_is(sqlite_store):
    """A plain sitemap's story takes its time from its page's article:published_time, which
    skipped the check a feed's date gets (`normalize.plausible_time`): a page dated 1970 (an
    unset CMS field) was stored as published in 1970, listed last and deleted by the next
    retention run minutes after it was collected; one dated 2062 (a typo) showed 2062 on its
    card. Both now count as undated: the <lastmod>, as for a page without a time."""
    async with LocalSite() as site:
        times = {"epoch": "1970-01-01T00:00:00Z", "typo": "2062-12-05T09:30:00+01:00",
                 "fine": "2026-12-05T09:30:00+01:00"}
        for name, at in times.items():
            meta = f'<meta property="article:published_time" content="{at}">'
            site.route(f"/post/{name}", content_type="text/html",
                       body=_article(f"Story {name}").replace(b"</title>", b"</title>" + meta.encode()))
        site.route("/sitemap.xml", content_type="application/xml",
                   body=_dated_sitemap(site, {f"/post/{n}": "2026-12-06T08:00:00Z" for n in times}))
        await sqlite_store.sync_sources([SourceSpec(
            "sm", site.url("/sitemap.xml"), "world", kind="sitemap", full_text=True)])
        now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
        report = await collector(sqlite_store, site, clock=lambda: now).run_round(force=True)
        assert report.sources[0].ok and report.new == 3
        stories = {s.title: s for s in await sqlite_store.latest_stories(limit=10)}
        lastmod = datetime(2026, 12, 6, 8, 0, tzinfo=UTC)
        assert {t: s.published_at for t, s in stories.items()} == {
            "Story epoch": lastmod, "Story typo": lastmod,
            "Story fine": datetime(2026, 12, 5, 8, 30, tzinfo=UTC)}
        # A retention of 30 days keeps all three: none is older than that.
        assert await sqlite_store.delete_stories_before(now - timedelta(days=30)) == []


async def test_a_static_sitemap_past_the_page_limit_gives_the_rest_in_later_rounds(sqlite_store):
    """A plain sitemap served with an ETag (a static file) and more links than
    `full_text_limit`: its first round read 2 pages, and every later round sent the stored
    validators, got a 304 and read no page, so the rest of its stories never came until the
    file changed. Validators are kept only once no link waits for its page."""
    async with LocalSite() as site:
        days = [f"2026-11-{d:02d}" for d in range(20, 25)]
        for day in days:
            site.route(f"/post/{day}", body=_article(f"Story of {day}"), content_type="text/html")
        site.route("/sitemap.xml", etag='"s1"', content_type="application/xml",
                   body=_dated_sitemap(site, {f"/post/{d}": f"{d}T08:00:00Z" for d in days}))
        await sqlite_store.sync_sources([SourceSpec(
            "sm", site.url("/sitemap.xml"), "world", kind="sitemap", full_text=True)])
        c = collector(sqlite_store, site, dataclasses.replace(FAST, full_text_limit=2))
        new = [(await c.run_round(force=True)).sources[0].new for _ in range(3)]
        assert new == [2, 2, 1]
        assert sorted(s.title for s in await sqlite_store.latest_stories(limit=10)) == [
            f"Story of {d}" for d in days]
        # Every link read: the next round asks conditionally again, and the file answers 304.
        assert (await c.run_round(force=True)).sources[0].not_modified


def _dated_article(title: str, published: str) -> bytes:
    meta = f'<meta property="article:published_time" content="{published}">'
    return _article(title).replace(b"</title>", b"</title>" + meta.encode())


async def test_a_sitemap_page_older_than_retention_keeps_is_not_stored_nor_read_again(
        sqlite_store):
    """A plain sitemap's link has no date until its page is read, so retention's filter let
    it through: a page published before `[retention] stories_days` was read and stored,
    retention deleted it within the hour, and the next round read and stored it again, for
    ever (an archive's sitemap: thousands of pages a round). Now it is not stored, and not
    read again while the sitemap lists it; nor does it hold the sitemap's validators back.
    A page dated 1970 (an unset CMS field) is undated, not old: it is stored."""
    async with LocalSite() as site:
        pages = {"fresh": "2026-12-05T09:30:00Z", "old": "2026-09-01T09:30:00Z",
                 "epoch": "1970-01-01T00:00:00Z"}
        for name, at in pages.items():
            site.route(f"/post/{name}", content_type="text/html",
                       body=_dated_article(f"Story {name}", at))
        recent = "2026-12-06T08:00:00Z"  # <lastmod>: the old page was edited this week
        site.route("/sitemap.xml", etag='"s1"', content_type="application/xml",
                   body=_dated_sitemap(site, {f"/post/{n}": recent for n in pages}))
        await sqlite_store.sync_sources([SourceSpec(
            "sm", site.url("/sitemap.xml"), "world", kind="sitemap", full_text=True)])
        now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
        c = collector(sqlite_store, site, clock=lambda: now, keep_days=30)

        async def titles() -> list[str]:
            return sorted(s.title for s in await sqlite_store.latest_stories(limit=10))

        first = (await c.run_round(force=True)).sources[0]
        assert (first.ok, first.new) == (True, 2)
        assert await titles() == ["Story epoch", "Story fresh"]
        await sqlite_store.delete_stories_before(now - timedelta(days=30))  # the retention job
        # The sitemap changes: its new page is read, the old one not again.
        site.route("/post/new", content_type="text/html",
                   body=_dated_article("Story new", "2026-12-07T08:00:00Z"))
        site.route("/sitemap.xml", etag='"s2"', content_type="application/xml",
                   body=_dated_sitemap(site, {f"/post/{n}": recent for n in [*pages, "new"]}))
        second = (await c.run_round(force=True)).sources[0]
        assert (second.ok, second.new) == (True, 1)
        assert await titles() == ["Story epoch", "Story fresh", "Story new"]
        assert site.paths_requested().count("/post/old") == 1
        # No link waits for its page: the validators were kept, and the sitemap answers 304.
        assert (await c.run_round(force=True)).sources[0].not_modified
        # Retention off (0): the old page is read again, and stored.
        site.route("/sitemap.xml", etag='"s3"', content_type="application/xml",
                   body=_dated_sitemap(site, {f"/post/{n}": recent for n in [*pages, "new"]}))
        third = (await collector(sqlite_store, site, clock=lambda: now).run_round(force=True)).sources[0]
        assert (third.ok, third.new) == (True, 1)
        assert "Story old" in await titles()


def test_old_page_marks_follow_the_document_and_the_horizon():
    """An old page's mark keeps its time, so the horizon decides each round: a longer
    `stories_days` reads it again. The marks sit beside failed pages' counts, apart."""
    at = datetime(2026, 9, 1, 9, 30, tzinfo=UTC)
    marks = old_marks(["/a", "/old", "/gone"], {"/old": at, "/elsewhere": at})
    assert marks == {"/old": -int(at.timestamp())}
    failed, old = page_marks({**marks, "/a": 2})
    assert (failed, old) == ({"/a": 2}, {"/old": at})
    now = datetime(2026, 12, 7, tzinfo=UTC)
    assert too_old(old, now, 30) == {"/old"}
    assert too_old(old, now, 365) == set() == too_old(old, now, 0)


def _sitemap(site: LocalSite, paths: list[str]) -> bytes:
    entries = "".join(f"<url><loc>{site.url(p)}</loc></url>" for p in paths)
    return ('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"{entries}</urlset>").encode()


async def _a_sitemap_with_a_failing_page(store, site: LocalSite, status: int) -> None:
    """A full_text source: a static sitemap of a good page and `/post/bad`, which answers
    `status`."""
    site.route("/post/good", body=_article("A good story"), content_type="text/html")
    site.route("/post/bad", status=status, body=b"no", content_type="text/html")
    site.route("/sitemap.xml", etag='"s1"', content_type="application/xml",
               body=_sitemap(site, ["/post/good", "/post/bad"]))
    await store.sync_sources([SourceSpec(
        "sm", site.url("/sitemap.xml"), "world", kind="sitemap", full_text=True)])


@pytest.mark.parametrize(("status", "whole_reads"),
                         [(500, PAGE_TRIES), (403, PAGE_TRIES), (404, 1), (410, 1)])
async def test_a_page_that_always_fails_stops_costing_its_feed_its_validators(
        sqlite_store, status, whole_reads):
    """A full_text source with one article page that always failed never kept its ETag: the
    failed page waited to be tried again, so every round downloaded the whole feed until the
    item left it. Now a page stops waiting after PAGE_TRIES failed rounds in a row, or at
    once when its server refused it for good (404, 410), and the feed answers 304 again. A
    403 is a failure of the moment (a bot wall, a rate limiter), as a 500 is."""
    async with LocalSite() as site:
        await _a_sitemap_with_a_failing_page(sqlite_store, site, status)
        c = collector(sqlite_store, site)
        rounds = [(await c.run_round(force=True)).sources[0] for _ in range(whole_reads + 2)]
        assert [r.not_modified for r in rounds] == [False] * whole_reads + [True, True]
        assert [r.new for r in rounds] == [1] + [0] * (whole_reads + 1)
        assert site.paths_requested().count("/post/bad") == whole_reads
        # A changed feed has the page tried again (once), as the README says.
        site.route("/post/new", body=_article("A new story"), content_type="text/html")
        site.route("/sitemap.xml", etag='"s2"', content_type="application/xml",
                   body=_sitemap(site, ["/post/good", "/post/bad", "/post/new"]))
        changed = [(await c.run_round(force=True)).sources[0] for _ in range(2)]
        assert [(r.new, r.not_modified) for r in changed] == [(1, False), (0, True)]
        assert site.paths_requested().count("/post/bad") == whole_reads + 1


def test_failed_rounds_follow_the_document():
    """Stored on the source, the counts must not grow with every link it ever listed: a page
    read, or gone from the document, is dropped; one past the round's limit keeps its count."""
    before = {"/a": 2, "/b": 1, "/c": 1, "/gone": 2}
    after = failed_rounds_after(["/a", "/b", "/c", "/new"], before,
                                failed={"/a", "/new"}, tried={"/a", "/b", "/new"})
    assert after == {"/a": 3, "/c": 1, "/new": 1}


async def test_a_page_behind_a_bot_wall_is_read_once_the_wall_lifts(sqlite_store):
    """A bot wall or a rate limiter answers 403 for a while, then serves the page. A 403 was
    taken as the page refused for good: the next round sent the validators, the static
    sitemap answered 304, and the story never came. Now it waits, as a 500 does."""
    async with LocalSite() as site:
        await _a_sitemap_with_a_failing_page(sqlite_store, site, 403)
        c = collector(sqlite_store, site)
        first = (await c.run_round(force=True)).sources[0]
        assert first.new == 1 and "HTTP 403 Forbidden" in first.problems[0]
        site.route("/post/bad", body=_article("A walled story"), content_type="text/html")
        second = (await c.run_round(force=True)).sources[0]
        assert (second.not_modified, second.new) == (False, 1)
        assert sorted(s.title for s in await sqlite_store.latest_stories(limit=5)) == [
            "A good story", "A walled story"]
        assert (await c.run_round(force=True)).sources[0].not_modified


async def test_failed_pages_are_counted_across_one_off_collectors(store):
    """A cron of `tidings collect --once` is a new collector each run. The failed rounds of
    a page were counted in the collector's memory, so each run began at none: a page that
    always failed never reached PAGE_TRIES, and every run downloaded the whole feed. They are
    counted on the source's row, on SQLite and PostgreSQL alike."""
    async with LocalSite() as site:
        await _a_sitemap_with_a_failing_page(store, site, 503)
        runs = [(await collector(store, site).run_round(force=True)).sources[0]
                for _ in range(PAGE_TRIES + 2)]
        assert [r.not_modified for r in runs] == [False] * PAGE_TRIES + [True, True]
        assert site.paths_requested().count("/post/bad") == PAGE_TRIES
        # Read at last, the page's count is dropped: it would not outlive its failures.
        site.route("/post/bad", body=_article("A late story"), content_type="text/html")
        site.route("/sitemap.xml", etag='"s2"', content_type="application/xml",
                   body=_sitemap(site, ["/post/good", "/post/bad"]))
        late = (await collector(store, site).run_round(force=True)).sources[0]
        assert (late.new, late.problems) == (1, ())
        (state,) = await store.claim_due_sources(NOW_EDIT, owner="t", lease_s=60, due_only=False)
        assert state.page_failures == {}


async def test_a_reset_tries_the_failed_pages_again(store):
    """`sources reset` cleared the source's errors but kept its pages' failed rounds, and its
    validators: a page that had answered 404 (or failed PAGE_TRIES times) no longer waited,
    so after the publisher mended it and the operator reset the source, the static sitemap
    answered 304 and the story never came. Now a reset drops those counts (and so the
    validators): the next round reads the sitemap whole and the mended page with it."""
    async with LocalSite() as site:
        await _a_sitemap_with_a_failing_page(store, site, 404)
        c = collector(store, site)
        rounds = [(await c.run_round(force=True)).sources[0] for _ in range(2)]
        assert [(r.new, r.not_modified) for r in rounds] == [(1, False), (0, True)]
        site.route("/post/bad", body=_article("A mended story"), content_type="text/html")
        assert await store.reset_source("sm", NOW_EDIT) == "due"
        after = (await c.run_round(force=True)).sources[0]
        assert (after.new, after.not_modified, after.problems) == (1, False, ())
        assert site.paths_requested().count("/post/bad") == 2
        (state,) = await store.claim_due_sources(NOW_EDIT, owner="t", lease_s=60, due_only=False)
        assert state.page_failures == {}


def test_a_reset_keeps_the_old_pages_marks():
    """An archive's pages older than retention keeps are marked beside the failed counts; no
    failure, they stay through a reset (else each was read again only to be dropped). A
    source with no failed page keeps its validators: a reset alone costs no whole read."""
    at = datetime(2026, 9, 1, tzinfo=UTC)
    old = old_marks(["/old"], {"/old": at})
    values = reset_values({**old, "/bad": PAGE_TRIES}, NOW_EDIT)
    assert values["page_failures"] == old and values["etag"] is None
    plain = reset_values(old, NOW_EDIT)
    assert "page_failures" not in plain and "etag" not in plain
    assert plain["error_count"] == 0 and plain["next_check_at"] == NOW_EDIT


async def test_check_stores_nothing(site, sqlite_store, shared_data):
    site.route("/f.xml", body=(shared_data / FEEDS[1]).read_bytes())
    found = await collector(sqlite_store, site).check(SourceSpec("f", site.url("/f.xml"), "politics"))
    assert found.doc.kind == "feed" and len(found.drafts) == 25
    assert await sqlite_store.count_stories() == 0


LISTING_PAGE = b"""<!doctype html><html><head><title>World</title></head><body>
<article class="card"><a href="/world/ceasefire"><img src="/i/c.jpg" alt=""></a>
  <h3><a href="/world/ceasefire">Ceasefire holds</a></h3><span class="when">Nov 25</span></article>
<article class="card"><a href="/world/floods"><img src="/i/f.jpg" alt=""></a>
  <h3><a href="/world/floods">Floods recede</a></h3><span class="when">Nov 24</span></article>
</body></html>"""


async def test_a_listing_selector_that_matches_nothing_is_named(sqlite_store):
    """A title selector with a typo (h2 for the page's h3) gave every story an empty title:
    the source failed with "2 items, none usable: no usable link, title or summary", naming
    no selector. Now each selector that matched nothing is a problem of the source, and the
    link's own text is the title; a dry run says it too."""
    from aggregator.model import Selectors

    async with LocalSite() as site:
        site.route("/world", body=LISTING_PAGE, content_type="text/html; charset=utf-8")
        typo = Selectors(item="article.card", link="h3 a", title="h2", date="time")
        image_links = Selectors(item="article.card", link="a", title="h2")
        await sqlite_store.sync_sources([
            SourceSpec("world", site.url("/world"), "world", kind="html", selectors=typo),
            SourceSpec("pics", site.url("/world?pics"), "world", kind="html", selectors=image_links)])
        c = collector(sqlite_store, site)
        report = {r.name: r for r in (await c.run_round()).sources}
        world, pics = report["world"], report["pics"]
        assert world.ok and world.new == 2
        assert world.problems == (
            "title selector 'h2' matched nothing in 2 of 2 items; the link's text is their title",
            "date selector 'time' matched nothing in 2 of 2 items")
        assert sorted(s.title for s in await sqlite_store.latest_stories(limit=5)) == [
            "Ceasefire holds", "Floods recede"]
        # Links around images have no text: the source fails, and says which selector.
        assert not pics.ok and pics.error == (
            "2 items, none usable: title selector 'h2' matched nothing in 2 of 2 items; "
            "the link's text is their title")
        found = await c.check(SourceSpec("w", site.url("/world"), "world", kind="html", selectors=typo))
        assert found.doc.problems == world.problems and len(found.drafts) == 2


def _dated_listing(lang: str, dates: list[str]) -> bytes:
    cards = "".join(f'<article class="card"><h3><a href="/s/{n}">{lang} story {n}</a></h3>'
                    f'<span class="when">{d}</span></article>' for n, d in enumerate(dates))
    return f'<!doctype html><html lang="{lang}"><body>{cards}</body></html>'.encode()


async def test_a_listings_relative_and_numeric_dates_are_read(sqlite_store):
    """"vor 2 Stunden", "2 hours ago", "yesterday", "25.11.2026" or "11/25/2026" on a
    listing gave its stories no date (they sorted as new whatever their age) and a problem
    naming the date selector. Now they are read: relative ones at the time the page was
    fetched, numeric ones by the one reading that is a date, else by the page's language;
    one that reads both ways on a page that does not say stays unread, and said. A time
    written beside the day is kept ("25 Nov 2026, 14:05", "gestern, 14:30 Uhr": the day
    alone sorted one day's stories in no order; "9:15 PM EST" was read 12 hours early, as
    09:15 UTC), "11:10 GMT" alone is today's, and a
    two-digit year ("24/11/26") is read (such a date was unread)."""
    from aggregator.model import Selectors

    fetched = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)
    pages = {
        "/de": _dated_listing("de-DE", ["vor 2 Stunden", "gestern, 14:30 Uhr", "03.04.2026"]),
        "/fr": _dated_listing("fr", ["il y a 3 heures", "il y a une heure", "05/04/2026"]),
        "/us": _dated_listing("en-US", ["2 hours ago", "Yesterday", "11/24/2026", "03/04/2026",
                                        "Nov 24, 2026 9:15 PM EST"]),
        "/en": _dated_listing("en", ["25/11/2026", "03/04/2026"]),
        "/gb": _dated_listing("en-GB", ["25 Nov 2026, 14:05", "25 Nov 2026, 09:30",
                                        "Updated 11:10 GMT", "24/11/26"]),
    }
    async with LocalSite() as site:
        selectors = Selectors(item="article.card", link="h3 a", date=".when")
        for path, body in pages.items():
            site.route(path, body=body, content_type="text/html; charset=utf-8")
        await sqlite_store.sync_sources([
            SourceSpec(path[1:], site.url(path, f"{path[1:]}.example"), "world", kind="html",
                       selectors=selectors) for path in pages])
        c = collector(sqlite_store, site, clock=lambda: fetched)
        report = {r.name: r for r in (await c.run_round(force=True)).sources}
        assert all(r.ok for r in report.values()), report
        when = {(s.source, s.title[-1]): s.published_at
                for s in await sqlite_store.latest_stories(limit=20)}
        day = lambda m, d: datetime(2026, m, d, tzinfo=UTC)  # noqa: E731
        assert when == {
            ("de", "0"): datetime(2026, 11, 25, 13, 0, tzinfo=UTC),
            ("de", "1"): datetime(2026, 11, 24, 14, 30, tzinfo=UTC), ("de", "2"): day(4, 3),
            ("fr", "0"): datetime(2026, 11, 25, 12, 0, tzinfo=UTC),
            ("fr", "1"): datetime(2026, 11, 25, 14, 0, tzinfo=UTC),
            ("fr", "2"): day(4, 5),
            ("us", "0"): datetime(2026, 11, 25, 13, 0, tzinfo=UTC),
            ("us", "1"): day(11, 24), ("us", "2"): day(11, 24),
            ("us", "3"): day(3, 4), ("us", "4"): datetime(2026, 11, 25, 2, 15, tzinfo=UTC),
            ("en", "0"): day(11, 25), ("en", "1"): None,
            ("gb", "0"): datetime(2026, 11, 25, 14, 5, tzinfo=UTC),
            ("gb", "1"): datetime(2026, 11, 25, 9, 30, tzinfo=UTC),
            ("gb", "2"): datetime(2026, 11, 25, 11, 10, tzinfo=UTC), ("gb", "3"): day(11, 24),
        }
        assert {name: r.problems for name, r in report.items()} == {"de": (), "fr": (), "us": (), "gb": (),
            "en": ("date selector '.when': no date read in 1 of 2 items (such as '03/04/2026')",)}


async def test_check_of_a_server_that_answers_304_unasked(site, sqlite_store):
    """A 304 to a request without validators crashed `sources check` (AttributeError)."""
    from aggregator.errors import FetchError

    site.route("/odd.xml", status=304)
    with pytest.raises(FetchError, match="304 Not Modified to a request without validators"):
        await collector(sqlite_store, site).check(SourceSpec("odd", site.url("/odd.xml"), "politics"))


def _news_sitemap(base: str, names: list[str], dates: dict[str, str] | None = None) -> str:
    """A news sitemap of `names`, each dated 2026-11-25T08:00:00Z unless `dates` says."""
    urls = "".join(
        f"<url><loc>{base}/{n}</loc><news:news><news:title>{n.title()} story</news:title>"
        f"<news:publication_date>{(dates or {}).get(n, '2026-11-25T08:00:00Z')}"
        "</news:publication_date></news:news></url>"
        for n in names)
    return ('<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
            f'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">{urls}</urlset>')


def _sitemap_index(children: dict[str, str]) -> str:
    """A sitemap index of child URL -> its lastmod."""
    entries = "".join(f"<sitemap><loc>{url}</loc><lastmod>{lastmod}</lastmod></sitemap>"
                      for url, lastmod in children.items())
    return ('<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"{entries}</sitemapindex>")


async def test_a_sitemap_index_is_read_through_its_newest_children(sqlite_store):
    """Its children were parsed into `child_urls` and never fetched: the source was "ok"
    with no stories. Now the newest three are read each round; a broken one is a problem,
    an index inside a child is not followed, older ones wait."""
    from aggregator.collect import CHILD_SITEMAPS
    from aggregator.errors import FetchError

    async with LocalSite() as site:
        base = site.url("").rstrip("/")
        children = [  # (path, lastmod, body)
            ("/sm-new.xml", "2026-11-25", _news_sitemap(base, ["alpha", "beta"])),
            ("/sm-broken.xml", "2026-11-24", None),
            ("/sm-nested.xml", "2026-11-23",
             '<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
             f"<sitemap><loc>{base}/sm-index.xml</loc></sitemap></sitemapindex>"),
            ("/sm-old.xml", "2026-10-01", _news_sitemap(base, ["gamma"])),
        ]
        entries = "".join(f"<sitemap><loc>{base}{p}</loc><lastmod>{d}</lastmod></sitemap>"
                          for p, d, _ in reversed(children))  # oldest first in the file
        site.route("/sm-index.xml", body='<?xml version="1.0"?><sitemapindex xmlns='
                   f'"http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</sitemapindex>',
                   content_type="application/xml")
        for path, _, body in children:
            if body is not None:
                site.route(path, body=body, content_type="application/xml")
        spec = SourceSpec("sm", site.url("/sm-index.xml"), "politics", kind="sitemap")
        await sqlite_store.sync_sources([spec])
        report = (await collector(sqlite_store, site).run_round()).sources[0]
        assert report.ok and report.new == 2, report
        titles = sorted(s.title for s in await sqlite_store.latest_stories(limit=10))
        assert titles == ["Alpha story", "Beta story"]  # the old child waits
        problems = " | ".join(report.problems)
        assert "sm-broken.xml" in problems and "is itself an index: not followed" in problems
        assert f"{len(children) - CHILD_SITEMAPS} older child sitemaps not read" in problems

        for path, _, _ in children[:CHILD_SITEMAPS]:  # all read children fail: the source fails
            site.route(path, status=404)
        with pytest.raises(FetchError, match="404"):
            await collector(sqlite_store, site).check(spec)


ARTICLE = ("<html><head><title>{t}</title></head><body><article><h1>{t}</h1>"
           + "<p>The council met on Tuesday to debate the harbour plan and its costs. "
           "Members said the budget had grown and asked for a review before any vote. </p>" * 8
           + "</article></body></html>")


async def test_a_selector_edit_reads_the_page_again_not_its_304(sqlite_store):
    """A listing's image selector mended in the file did nothing while the page was
    unchanged: the next check sent the old validators, the page answered 304, and the
    stories kept no image until the publisher next changed the page. An edit of how a
    source is read (as of its rules) now drops them: the page is read whole and the stories
    it lists take their images; the check after that is conditional again."""
    async with LocalSite() as site:
        site.route("/world", body=LISTING_PAGE, etag='"v1"', content_type="text/html; charset=utf-8")
        spec = SourceSpec("world", site.url("/world"), "world", kind="html",
                          selectors=Selectors(item="article.card", link="h3 a", image="img.thumb"))
        await sqlite_store.sync_sources([spec])
        c = collector(sqlite_store, site)
        assert (await c.run_round()).sources[0].new == 2
        assert (await c.run_round(force=True)).sources[0].not_modified

        mended = dataclasses.replace(spec, selectors=Selectors(item="article.card", link="h3 a",
                                                               image="img"))
        await sqlite_store.sync_sources([mended])
        site.reset_log()
        (r,) = (await c.run_round(force=True)).sources
        assert [h.get("If-None-Match") for _, _, h in site.requests] == [None]
        assert (r.ok, r.not_modified, r.updated) == (True, False, 2)
        assert sorted(s.image_url for s in await sqlite_store.latest_stories(limit=5)) == [
            site.url("/i/c.jpg"), site.url("/i/f.jpg")]
        assert (await c.run_round(force=True)).sources[0].not_modified


@pytest.mark.parametrize("edit", [
    {"kind": "feed"}, {"full_text": True}, {"keep": "budget"},
    {"selectors": Selectors(item="li", link="a")},
    {"selectors": zone_only("Europe/Berlin")},
])
def test_each_edit_of_how_a_source_is_read_drops_its_validators(edit):
    from aggregator.store import source_edits

    spec = SourceSpec("s", "https://s.example/feed", "news")
    row = {"category": "news", "kind": "auto", "enabled": True, "weight": 1.0, "interval_s": 900,
           "full_text": False, "selectors": selectors_json(spec.selectors), "keep_rule": "",
           "block_rule": "", "in_config": True, "url": spec.url, "config_url": spec.url,
           "next_check_at": None}
    assert source_edits(row, spec, NOW_EDIT) == {}
    out = source_edits(row, dataclasses.replace(spec, **edit), NOW_EDIT)
    assert (out["etag"], out["last_modified"]) == (None, None)
    # Neither a weight nor a category changes what a fetch reads: the 304s go on.
    assert "etag" not in source_edits(row, dataclasses.replace(spec, weight=2.0, category="uk"),
                                      NOW_EDIT)


async def test_check_of_a_full_text_source_counts_every_usable_item(site, sqlite_store):
    """`sources check` read 3 pages as a sample and returned only those 3: "6 items, 3
    usable" for a feed whose 6 items are all usable."""
    for i in range(6):
        site.route(f"/a/{i}", body=ARTICLE.format(t=f"Harbour plan {i}"), content_type="text/html")
    items = "".join(f"<item><title>Story {i}</title><link>{site.url(f'/a/{i}')}</link></item>"
                    for i in range(6))
    site.route("/ft.xml", body=f'<rss version="2.0"><channel><title>FT</title>{items}</channel></rss>',
               content_type="application/rss+xml")
    site.route("/sm.xml", body=_plain_sitemap([site.url(f"/a/{i}") for i in range(6)]),
               content_type="application/xml")
    c = collector(sqlite_store, site)
    found = await c.check(SourceSpec("ft", site.url("/ft.xml"), "politics", full_text=True))
    assert (len(found.drafts), found.read_in_full, found.untitled) == (6, 3, 0)
    assert [bool(d.text) for d in found.drafts] == [True] * 3 + [False] * 3
    found = await c.check(SourceSpec("sm", site.url("/sm.xml"), "politics", kind="sitemap", full_text=True))
    assert (len(found.drafts), found.read_in_full, found.untitled) == (3, 3, 3)
    assert [d.title for d in found.drafts] == [f"Harbour plan {i}" for i in range(3)]
    assert await sqlite_store.count_stories() == 0


async def test_article_pages_that_fail_are_a_problem_of_the_source_not_read_in_full(
        site, sqlite_store):
    """A full_text source whose article pages fail (404 here) kept its feed's stories, but
    said nothing of it: `sources check` counted "3 read in full as a sample" of pages that
    were never read, and `collect` reported the source as if its pages had been read (each
    failure only an INFO line of its own)."""
    site.route("/a/0", body=ARTICLE.format(t="Harbour plan 0"), content_type="text/html")
    for i in (1, 2, 3):
        site.route(f"/a/{i}", status=404)
    items = "".join(f"<item><title>Story {i}</title><link>{site.url(f'/a/{i}')}</link></item>"
                    for i in range(4))
    site.route("/ft.xml", body=f'<rss version="2.0"><channel><title>FT</title>{items}</channel></rss>',
               content_type="application/rss+xml")
    spec = SourceSpec("ft", site.url("/ft.xml"), "politics", full_text=True)
    c = collector(sqlite_store, site)
    found = await c.check(spec)
    assert (len(found.drafts), found.read_in_full) == (4, 1)
    assert found.doc.problems == (f"2 of 3 article pages not read ({site.url('/a/1')}: HTTP 404 "
                                  f"Not Found from {site.url('/a/1')})",)

    await sqlite_store.sync_sources([spec])
    report = (await c.run_round()).sources[0]
    assert report.ok and report.new == 4  # the feed's stories all the same
    assert report.problems == (f"3 of 4 article pages not read ({site.url('/a/1')}: HTTP 404 "
                               f"Not Found from {site.url('/a/1')})",)


async def test_check_counts_the_links_a_document_repeats(site, sqlite_store):
    """A link listed twice is one draft (`first_of_each_link`): `sources check` said
    "3 items, 2 usable" without a word on the third, while the README says skipped items
    are counted with why."""
    site.route("/news.xml", body=_news_sitemap(site.url("/a"), ["one", "two", "one"]),
               content_type="application/xml")
    found = await collector(sqlite_store, site).check(
        SourceSpec("news", site.url("/news.xml"), "politics", kind="sitemap"))
    assert (len(found.doc.items), len(found.drafts), found.repeated) == (3, 2, 1)


async def test_links_and_redirects_to_hosts_no_source_names_must_be_public(sqlite_store):
    """By default (`public_links_only`) a feed cannot lead the collector to a private address
    on a host the operator did not name: the article at `intranet.example` (which resolves to
    loopback here) is not read, the one on the source's own host is; a feed that redirects to
    `metadata.example` fails with the reason. Before, both were fetched and stored."""
    settings = dataclasses.replace(FAST, public_links_only=True)
    async with LocalSite() as site:
        for path in ("/a/own", "/a/other"):
            site.route(path, body=ARTICLE.format(t=path), content_type="text/html")
        links = [site.url("/a/own"), site.url("/a/other", "intranet.example")]
        items = "".join(f"<item><title>Story {n}</title><link>{u}</link></item>"
                        for n, u in enumerate(links))
        site.route("/feed.xml", body=f'<rss version="2.0"><channel><title>t</title>{items}'
                   "</channel></rss>", content_type="application/rss+xml")
        site.route("/moved.xml", status=302,
                   headers={"Location": site.url("/latest/meta-data", "metadata.example")})
        await sqlite_store.sync_sources([
            SourceSpec("feed", site.url("/feed.xml"), "politics", full_text=True),
            SourceSpec("moved", site.url("/moved.xml"), "politics")])
        report = await collector(sqlite_store, site, settings).run_round()
        by_name = {r.name: r for r in report.sources}
        assert by_name["feed"].ok and by_name["feed"].new == 2
        texts = {s.url: s.text for s in await sqlite_store.latest_stories(limit=10)}
        assert "harbour plan" in texts[links[0]] and texts[links[1]] == ""
        assert not by_name["moved"].ok
        assert by_name["moved"].error == "metadata.example resolves to non-public address 127.0.0.1"


async def test_a_feed_cannot_reach_the_private_host_of_another_source(sqlite_store):
    """The sources' own hosts may be private, but each for its own feed: the round trusted
    every source's host for every feed, so any feed the operator follows could link (or
    redirect) the collector to an intranet source's host, any page and any port of it, and
    its text was stored and served as a story. `intranet.example` (loopback here) is still
    read for its own feed; `outside.example`'s links to it are refused."""
    settings = dataclasses.replace(FAST, public_links_only=True)
    async with LocalSite() as site:
        site.route("/hr/salaries", body=ARTICLE.format(t="Salaries"), content_type="text/html")
        site.route("/news/1", body=ARTICLE.format(t="Canteen news"), content_type="text/html")
        site.route("/go", status=302, headers={"Location": site.url("/hr/salaries", "intranet.example")})
        site.route("/own", body=ARTICLE.format(t="Outside story"), content_type="text/html")

        def feed(links: list[str]) -> str:
            items = "".join(f"<item><title>Story {n}</title><link>{u}</link></item>"
                            for n, u in enumerate(links))
            return f'<rss version="2.0"><channel><title>t</title>{items}</channel></rss>'

        outside_links = [site.url("/hr/salaries", "intranet.example"), site.url("/go", "outside.example"),
                         site.url("/own", "outside.example")]
        site.route("/outside.xml", body=feed(outside_links), content_type="application/rss+xml")
        site.route("/intranet.xml", body=feed([site.url("/news/1", "intranet.example")]),
                   content_type="application/rss+xml")
        await sqlite_store.sync_sources([
            SourceSpec("outside", site.url("/outside.xml", "outside.example"), "politics", full_text=True),
            SourceSpec("intranet", site.url("/intranet.xml", "intranet.example"), "politics",
                       full_text=True)])
        report = await collector(sqlite_store, site, settings).run_round()
    assert all(r.ok for r in report.sources), report.sources
    texts = {s.url: s.text for s in await sqlite_store.latest_stories(limit=10)}
    assert "harbour plan" in texts[site.url("/news/1", "intranet.example")]  # its own feed's
    assert "harbour plan" in texts[outside_links[2]]  # the outside feed's own host
    assert texts[outside_links[0]] == "" and texts[outside_links[1]] == ""
    assert not any("salaries" in (text or "").lower() for text in texts.values())


async def test_a_permanent_redirect_does_not_make_its_host_one_the_operator_named(sqlite_store):
    """Any address is allowed on the hosts the sources name, and the collector read them from
    the rows' URLs, which a publisher's 301 moves: a feed that once redirected to a public
    host of its choice made that host trusted for good, and once its name pointed at an
    internal address (here loopback, as for `metadata.example` above) the collector read it,
    on any port, and stored what it found. The hosts the operator's file names are trusted;
    the moved-to one is fetched under the public rule like any other."""
    settings = dataclasses.replace(FAST, public_links_only=True)
    async with LocalSite() as site:
        site.route("/feed.xml", body='<rss version="2.0"><channel><title>t</title><item><title>'
                   "Internal</title><link>http://moved.example/a</link></item></channel></rss>",
                   content_type="application/rss+xml")
        await sqlite_store.sync_sources([SourceSpec("feed", site.url("/old.xml"), "politics")])
        now = datetime.now(UTC)
        (state,) = await sqlite_store.claim_due_sources(now, owner="t", lease_s=60)
        # What the collector records after a 301 to a host that was public then.
        await sqlite_store.record_fetch(state.id, FetchRecord(
            ok=True, next_check_at=now, interval_s=900,
            new_url=site.url("/feed.xml", "moved.example")), now)
        report = await collector(sqlite_store, site, settings).run_round(force=True)
    (r,) = report.sources
    assert not r.ok and r.error == "moved.example resolves to non-public address 127.0.0.1"
    assert await sqlite_store.count_stories() == 0


async def test_bodies_read_from_article_pages_are_hashed_so_copies_are_linked(sqlite_store):
    """A story read in full kept the body hash of what its listing gave: none for a plain
    sitemap's link (or a feed's short teaser). The same article under a second URL was then
    a second story, never linked as a copy, as it is when feeds carry the bodies."""
    async with LocalSite() as site:
        # Paragraphs that differ: trafilatura keeps one of a repeated paragraph, and a body
        # of fewer than 40 words is never hashed (normalize.MIN_HASH_WORDS).
        page = ("<html><head><title>Harbour plan</title></head><body><article><h1>Harbour plan"
                "</h1>" + "".join(f"<p>On day {i} the council met to debate the harbour plan and "
                                  "its costs, and asked for a review before any vote.</p>"
                                  for i in range(1, 9)) + "</article></body></html>")
        site.route("/a/1", body=page, content_type="text/html")
        site.route("/copy/1", body=page, content_type="text/html")
        site.route("/sm.xml", body=_plain_sitemap([site.url("/a/1")]), content_type="application/xml")
        site.route("/ft.xml", body='<rss version="2.0"><channel><title>t</title><item><title>Harbour '
                   f'plan</title><link>{site.url("/copy/1", "mirror.example")}</link><description>'
                   "Read more</description></item></channel></rss>", content_type="application/rss+xml")
        await sqlite_store.sync_sources([
            SourceSpec("sm", site.url("/sm.xml"), "politics", kind="sitemap", full_text=True),
            SourceSpec("ft", site.url("/ft.xml"), "politics", full_text=True)])
        report = await collector(sqlite_store, site).run_round()
    assert [(r.name, r.ok, r.new) for r in sorted(report.sources, key=lambda r: r.name)] == [
        ("ft", True, 1), ("sm", True, 1)]
    assert sum(r.duplicates for r in report.sources) == 1
    (story,) = await sqlite_store.latest_stories(limit=10)  # the copy is linked, not listed
    assert "harbour plan" in story.text and await sqlite_store.count_stories() == 2


async def test_a_link_in_two_feeds_keeps_its_first_feeds_title_round_after_round(sqlite_store):
    """Each round stored the title of whichever feed was upserted last (A, B, A, B...), and
    each change made the story due for embedding again."""
    async with LocalSite() as site:
        link = site.url("/story/1", "news.example")
        for path, title in (("/a.xml", "Minister resigns"), ("/b.xml", "BREAKING: minister out")):
            site.route(path, body=f'<rss version="2.0"><channel><title>t</title><item><title>{title}'
                       f"</title><link>{link}</link><description>{title}, says the report."
                       "</description></item></channel></rss>", content_type="application/rss+xml")
        await sqlite_store.sync_sources([SourceSpec("a", site.url("/a.xml"), "politics"),
                                         SourceSpec("b", site.url("/b.xml"), "politics")])
        c = collector(sqlite_store, site)
        await c.run_round(name="a", force=True)
        (story,) = await sqlite_store.latest_stories()
        (job,) = await sqlite_store.embed_backlog("r", 10)
        await sqlite_store.save_vectors([(story.id, job.embed_version, b"\x00" * 16)], "r")
        for name in ("b", "a", "b", None):
            report = await c.run_round(name=name, force=True)
            assert all(r.ok and r.updated == 0 for r in report.sources), report
        (after,) = await sqlite_store.latest_stories()
    assert (after.title, after.source) == ("Minister resigns", "a")
    assert after.summary == "Minister resigns, says the report."
    assert await sqlite_store.embed_backlog("r", 10) == []  # never embedded again


async def test_gzipped_child_sitemaps_are_read(sqlite_store):
    """A sitemap index listing "…xml.gz" children (sitemaps.org allows gzipped sitemaps,
    served with no Content-Encoding): every child failed as "not well-formed", so the
    source failed whole."""
    import gzip

    async with LocalSite() as site:
        base = site.url("").rstrip("/")
        site.route("/sm-index.xml", content_type="application/xml",
                   body=_sitemap_index({f"{base}/sm-1.xml.gz": "2026-11-25"}))
        site.route("/sm-1.xml.gz", content_type="application/x-gzip",
                   body=gzip.compress(_news_sitemap(base, ["alpha", "beta"]).encode()))
        await sqlite_store.sync_sources([SourceSpec("smgz", site.url("/sm-index.xml"), "politics",
                                                     kind="sitemap")])
        report = (await collector(sqlite_store, site).run_round()).sources[0]
        assert report.ok and report.new == 2, report


async def test_a_wordpress_sitemap_index_gives_its_newest_posts_not_its_archive_pages(sqlite_store):
    """WordPress core's wp-sitemap.xml dates none of its children and lists its post
    sitemaps oldest first, then its pages', categories', tags' and users': the collector read
    the three oldest post files, and once past them took every category, tag and author
    page for a story. Now those children are left out (a problem says so) and the post
    sitemaps are read highest number first."""
    async with LocalSite() as site:
        base = site.url("").rstrip("/")
        files = {f"wp-sitemap-posts-post-{n}.xml": [f"/{2020 + n}/post-{n}"] for n in range(1, 6)}
        files |= {"wp-sitemap-posts-page-1.xml": ["/about"],
                  "wp-sitemap-taxonomies-category-1.xml": ["/category/world"],
                  "wp-sitemap-taxonomies-post_tag-1.xml": ["/tag/harbour"],
                  "wp-sitemap-users-1.xml": ["/author/ann"]}
        for name, paths in files.items():
            site.route(f"/{name}", content_type="application/xml", body=(
                '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
                + "".join(f"<url><loc>{base}{p}</loc></url>" for p in paths) + "</urlset>"))
            for p in paths:
                site.route(p, body=_article(f"Page {p}"), content_type="text/html")
        site.route("/wp-sitemap.xml", content_type="application/xml", body=(
            '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            + "".join(f"<sitemap><loc>{base}/{name}</loc></sitemap>" for name in files)
            + "</sitemapindex>"))
        await sqlite_store.sync_sources([
            SourceSpec("wp", site.url("/wp-sitemap.xml"), "world", kind="sitemap", full_text=True),
            # A category sitemap given as the source itself is read.
            SourceSpec("cats", site.url("/wp-sitemap-taxonomies-category-1.xml"), "world",
                       kind="sitemap", full_text=True)])
        report = {r.name: r for r in (await collector(sqlite_store, site).run_round()).sources}
        assert report["wp"].ok and report["wp"].new == 3, report["wp"]
        assert report["cats"].ok and report["cats"].new == 1, report["cats"]
        titles = sorted(s.title for s in await sqlite_store.latest_stories(limit=20))
        assert titles == ["Page /2023/post-3", "Page /2024/post-4", "Page /2025/post-5",
                          "Page /category/world"]
        problems = " | ".join(report["wp"].problems)
        assert "4 child sitemaps of pages, categories, tags or authors skipped" in problems
        assert "2 older child sitemaps not read" in problems


def test_fields_read_from_an_article_page_are_cut_as_a_feeds_are():
    """A full_text page's text, description and byline went into the story whole: a long
    page stored 500,000 characters of text (normalize cuts a feed's at MAX_TEXT_CHARS, for
    the store and the embedder's input) and an og:description of 3,000 its summary."""
    from aggregator.collect import merge_article
    from aggregator.extract import Article
    from aggregator.normalize import MAX_AUTHOR_CHARS, MAX_SUMMARY_CHARS, MAX_TEXT_CHARS, normalize
    from aggregator.parse import parse_document

    doc = parse_document(b'<rss version="2.0"><channel><title>t</title><item><title>Long read</title>'
                         b"<link>https://news.example/long</link></item></channel></rss>",
                         base_url="https://news.example/rss")
    draft = normalize(doc.items[0], source=None, now=datetime(2026, 1, 1, tzinfo=UTC))
    page = Article(title="Long read", text="The harbour plan was debated again. " * 20_000,
                   author="Ann Smith " * 100, description="A teaser that goes on. " * 200)
    merged = merge_article(draft, page, datetime(2026, 1, 1, tzinfo=UTC))
    assert 0.9 * MAX_TEXT_CHARS < len(merged.text) <= MAX_TEXT_CHARS
    assert 0 < len(merged.summary) <= MAX_SUMMARY_CHARS
    assert 0 < len(merged.author) <= MAX_AUTHOR_CHARS


def _route_one_item_feeds(site: LocalSite, *, title: str, summary: str, text: str, author: str,
                          tag: str, rss_title: str) -> None:
    """/feed.json, a JSON Feed of one item with these fields (escaped as JSON escapes them),
    and /feed.xml, an RSS feed of one item titled `rss_title` (as written in its XML)."""
    import json

    feed = {"version": "https://jsonfeed.org/version/1.1", "title": "t", "items": [{
        "id": "1", "url": site.url("/json/1", "news.example"), "title": title, "summary": summary,
        "content_text": text, "authors": [{"name": author}], "tags": [tag]}]}
    site.route("/feed.json", body=json.dumps(feed).encode(), content_type="application/feed+json")
    site.route("/feed.xml", content_type="application/rss+xml", body=(
        f'<rss version="2.0"><channel><title>t</title><item><title>{rss_title}</title>'
        f"<link>{site.url('/rss/1', 'news.example')}</link></item></channel></rss>").encode())


async def test_control_characters_from_feeds_are_not_stored(sqlite_store):
    """A "\x01" or an ANSI colour code in a feed item's title or summary (a JSON Feed carries
    them escaped, an RSS feed raw, read in recovery) was stored: invisible junk in titles, in
    JSON and in the widget, and characters XML 1.0 forbids. Separators part words, and a C1
    control is the Windows-1252 character it stands for ("\x92" a quote)."""
    import re

    controls = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ufffe\uffff]")
    async with LocalSite() as site:
        _route_one_item_feeds(site, title="Budget\x01 vote\x0bpasses\x7f, don\x92t \x1b[31mpanic\ufffe",
                              summary="Line\x02 one\nline\x1ftwo", text="Body\x05 text",
                              author="Jane\x03 Doe", tag="po\x04litics", rss_title="Raw\x01 title")
        await sqlite_store.sync_sources([
            SourceSpec("json", site.url("/feed.json"), "politics"),
            SourceSpec("rss", site.url("/feed.xml"), "politics")])
        report = await collector(sqlite_store, site).run_round()
    assert [r.new for r in report.sources] == [1, 1]
    stories = {s.source: s for s in await sqlite_store.latest_stories(limit=10)}
    for s in stories.values():
        for value in (s.title, s.summary, s.text, s.author, *s.tags):
            assert not controls.search(value), repr(value)
    story = stories["json"]
    assert story.title == "Budget vote passes, don\u2019t [31mpanic"
    assert (story.summary, story.text) == ("Line one\nline two", "Body text")
    assert (story.author, story.tags) == ("Jane Doe", ("politics",))
    assert stories["rss"].title == "Raw title"


async def test_bidi_controls_from_feeds_and_pages_are_not_stored(sqlite_store):
    """An RLO (U+202E) in a title was stored and served as is: the JSON API, Atom feeds and
    publishers' own pages showed the title reversed ("Trojan Source" spoofing), and one left
    open turned the text after it around. Embeddings, overrides and isolates are dropped from
    every field of a feed item (raw, or as a character reference) and of an article page;
    the marks right-to-left writing uses (RLM, LRM, ALM) stay."""
    import re

    bidi = re.compile("[\u202a-\u202e\u2066-\u2069]")
    async with LocalSite() as site:
        _route_one_item_feeds(site, title="Harbour \u202evote\u202c passes \u05e9\u05dc\u05d5\u05dd 2\u200f",
                              summary="\u202bOne\u202c \u2067line\u2069", text="Body\u202d text",
                              author="Jane\u2066 Doe", tag="pol\u202aitics", rss_title="Ref &#8238;title")
        words = " ".join(f"The harbour vote\u202e was reported, paragraph {i}." for i in range(20))
        site.route("/post/1", content_type="text/html", body=(
            "<html><head><title>Page \u202etitle</title>"
            '<meta name="author" content="Ann \u2068Smith">'
            '<meta name="description" content="A \u202bteaser"></head><body><article>'
            f"<h1>Page \u202etitle</h1><p>{words}</p><p>{words}</p></article></body></html>").encode())
        site.route("/sitemap.xml", content_type="application/xml", body=(
            '<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">'
            f"<url><loc>{site.url('/post/1')}</loc></url></urlset>").encode())
        await sqlite_store.sync_sources([
            SourceSpec("json", site.url("/feed.json"), "politics"),
            SourceSpec("rss", site.url("/feed.xml"), "politics"),
            SourceSpec("page", site.url("/sitemap.xml"), "politics", kind="sitemap", full_text=True)])
        report = await collector(sqlite_store, site).run_round()
    assert [r.new for r in report.sources] == [1, 1, 1], report.sources
    stories = {s.source: s for s in await sqlite_store.latest_stories(limit=10)}
    for s in stories.values():
        for value in (s.title, s.summary, s.text, s.author, *s.tags):
            assert not bidi.search(value), repr(value)
    story = stories["json"]
    assert story.title == "Harbour vote passes \u05e9\u05dc\u05d5\u05dd 2\u200f"  # RLM kept
    assert (story.summary, story.text) == ("One line", "Body text")
    assert (story.author, story.tags) == ("Jane Doe", ("politics",))
    assert stories["rss"].title == "Ref title"
    page = stories["page"]
    assert (page.title, page.author, page.summary) == ("Page title", "Ann Smith", "A teaser")
    assert page.text.startswith("The harbour vote was reported, paragraph 0.")


async def test_a_sitemap_index_that_answers_304_still_has_its_children_read(sqlite_store):
    """An index served with an ETag (a static file) answered 304 to the stored validators,
    and on a 304 no child was read: today's child grew all day, its new stories waited for
    the index's next change."""
    async with LocalSite() as site:
        base = site.url("").rstrip("/")
        site.route("/sm-index.xml", etag='"i1"', last_modified="Mon, 02 Jun 2025 10:00:00 GMT",
                   content_type="application/xml", body=(
                       '<?xml version="1.0"?><sitemapindex xmlns="http://www.sitemaps.org/schemas/'
                       f'sitemap/0.9"><sitemap><loc>{base}/sm-today.xml</loc></sitemap></sitemapindex>'))
        site.route("/sm-today.xml", etag='"t1"', content_type="application/xml",
                   body=_news_sitemap(base, ["alpha"]))
        await sqlite_store.sync_sources([SourceSpec("sm", site.url("/sm-index.xml"), "politics",
                                                     kind="sitemap")])
        c = collector(sqlite_store, site)
        assert (await c.run_round()).sources[0].new == 1
        site.route("/sm-today.xml", etag='"t2"', content_type="application/xml",
                   body=_news_sitemap(base, ["alpha", "beta"]))
        report = (await c.run_round(force=True)).sources[0]
        assert report.ok and report.new == 1, report
        assert sorted(s.title for s in await sqlite_store.latest_stories()) == ["Alpha story",
                                                                                "Beta story"]


async def test_a_304_keeps_the_pace_the_last_read_chose(site, sqlite_store):
    """A 304 brings no document, and the interval fell back to the configured one: a feed
    asking for 2 h (<ttl>120</ttl>) was read again every 15 min from its first 304 on. A
    back-off is no pace (a reset source's next 304 starts from its interval again), and an
    edit of the interval starts afresh."""
    site.route("/ttl.xml", etag='"v1"', content_type="application/rss+xml", body=(
        '<rss version="2.0"><channel><title>t</title><ttl>120</ttl><item><title>One</title>'
        "<link>http://news.example/1</link></item></channel></rss>"))
    spec = SourceSpec("ttl", site.url("/ttl.xml"), "politics", interval_s=900)
    await sqlite_store.sync_sources([spec])
    clock = [datetime(2026, 1, 1, tzinfo=UTC)]
    c = collector(sqlite_store, site, clock=lambda: clock[0])

    async def next_in_s(expect_status: int) -> float:
        clock[0] += timedelta(hours=3)
        (r,) = (await c.run_round(name="ttl", force=True)).sources
        assert r.status == expect_status, r
        (h,) = await sqlite_store.list_sources()
        return (h.next_check_at - clock[0]).total_seconds()

    assert [await next_in_s(200), await next_in_s(304), await next_in_s(304)] == [7200] * 3
    site.route("/ttl.xml", status=503)
    assert [await next_in_s(503), await next_in_s(503)] == [900, 1800]
    site.route("/ttl.xml", etag='"v1"', body=b"")  # answers 304 to the validators it gave
    await sqlite_store.reset_source("ttl", clock[0])
    assert await next_in_s(304) == 900
    site.route("/ttl.xml", etag='"v2"', content_type="application/rss+xml", body=(
        '<rss version="2.0"><channel><title>t</title><ttl>120</ttl></channel></rss>'))
    assert [await next_in_s(200), await next_in_s(304)] == [7200] * 2
    await sqlite_store.sync_sources([dataclasses.replace(spec, interval_s=600)])
    assert await next_in_s(304) == 600


async def test_a_round_the_database_fails_is_reported_in_one_line(site, sqlite_store, shared_data,
                                                                    tmp_path, caplog):
    # collect.unrecorded (and the source's report, printed by `collect --once`) carried
    # SQLAlchemy's whole text on lines of their own: the statement, its parameters, a link.
    import logging
    import sqlite3

    site.route("/good.xml", body=(shared_data / FEEDS[0]).read_bytes())
    await sqlite_store.sync_sources([SourceSpec("good", site.url("/good.xml"), "politics")])
    with sqlite3.connect(tmp_path / "t.db") as db:  # the fetch's outcome cannot be written
        db.execute("CREATE TRIGGER refuse BEFORE UPDATE OF stats ON sources "
                   "BEGIN SELECT RAISE(ABORT, 'the database refuses the write'); END")
    caplog.set_level(logging.ERROR, logger="tidings.collect")
    report = await collector(sqlite_store, site).run_round()
    (source,) = report.sources
    (line,) = [r.getMessage() for r in caplog.records if "collect.unrecorded" in r.getMessage()]
    for said in (source.error, line):
        assert "the database refuses the write" in said and "\n" not in said, said
        assert "UPDATE sources" not in said and "good.xml" not in said, said


def _feed(host: str, *titles: str) -> str:
    items = "".join(f"<item><title>{t}</title><link>http://{host}/{i}</link></item>"
                    for i, t in enumerate(titles))
    return f'<rss version="2.0"><channel><title>t</title>{items}</channel></rss>'


async def _claimed_then_edited(store, specs, edited) -> object:
    """A source claimed by a collector (its fetch about to start), then the sources file
    edited by a reload before the fetch is recorded: the interleaving of an edit that lands
    while `tidings run` fetches, made without timing."""
    await store.sync_sources(specs)
    (state,) = await store.claim_due_sources(datetime.now(UTC), owner="t", lease_s=60)
    await store.sync_sources(edited)
    return state


async def test_a_source_renamed_while_it_is_fetched_keeps_what_that_fetch_stores(sqlite_store):
    """The rename adopted the row and moved the stories to the new name; the fetch under way
    then stored its stories under the old name, which no row had any more: listed nowhere,
    weighted as nothing, and never updated by the renamed source (`taken_from`)."""
    async with LocalSite() as site:
        site.route("/feed.xml", body=_feed("news.example", "One", "Two"),
                   content_type="application/rss+xml")
        old = SourceSpec("old-name", site.url("/feed.xml"), "politics")
        state = await _claimed_then_edited(sqlite_store, [old],
                                           [dataclasses.replace(old, name="new-name")])
        c = collector(sqlite_store, site)
        async with c._fetcher([old.url]) as fetcher:
            report = await c.collect_source(fetcher, state)
    assert report.ok and report.new == 2
    assert {s.source for s in await sqlite_store.latest_stories()} == {"new-name"}
    (row,) = await sqlite_store.list_sources(retired=True)
    assert (row.name, row.stories, row.status) == ("new-name", 2, "ok")


async def test_a_url_edited_while_the_old_one_is_fetched_is_still_fetched_at_once(sqlite_store):
    """The edit dropped the validators and made the source due now, pending; the fetch of the
    old URL under way then wrote its ETag, its next check an interval away and its result
    over that: the new URL waited out the interval, was then asked with the old feed's
    validators, and read `ok` (or the old feed's error) without ever having been read."""
    async with LocalSite() as site:
        site.route("/old.xml", status=500)
        site.route("/new.xml", etag='"new"', body=_feed("new.example", "Fresh"),
                   content_type="application/rss+xml")
        spec = SourceSpec("feed", site.url("/old.xml"), "politics", interval_s=3600)
        state = await _claimed_then_edited(sqlite_store, [spec],
                                           [dataclasses.replace(spec, url=site.url("/new.xml"))])
        c = collector(sqlite_store, site)
        async with c._fetcher([spec.url]) as fetcher:
            report = await c.collect_source(fetcher, state)
        assert not report.ok  # the old URL's answer
        (row,) = await sqlite_store.list_sources()
        assert (row.status, row.error_count, row.last_error) == ("pending", 0, None)
        assert row.next_check_at <= datetime.now(UTC)
        (r,) = (await c.run_round()).sources  # due: the new URL is read now
    assert r.ok and r.new == 1 and r.name == "feed"
    (row,) = await sqlite_store.list_sources()
    assert (row.status, row.url) == ("ok", site.url("/new.xml"))


def _paged_listing(stories: list[str], next_href: str = "", link_next: bool = False) -> bytes:
    """A listing page of `stories` linking its next page as a pager does: an <a rel="next">,
    or a <link rel="next"> in its head."""
    head = f'<link rel="next" href="{next_href}">' if next_href and link_next else ""
    pager = f'<a rel="next" href="{next_href}">Older</a>' if next_href and not link_next else ""
    cards = "".join(f'<article class="card"><h3><a href="/s/{s}">Story {s}</a></h3></article>'
                    for s in stories)
    return f"<html><head>{head}</head><body>{cards}<nav>{pager}</nav></body></html>".encode()


async def test_a_listings_next_pages_are_read_up_to_its_pages(sqlite_store):
    """Only a listing's first page was read: a new source had one page of stories, and a
    round after more stories came out than one page shows missed the rest. Now its rel=next
    pages are read, up to `pages`: all of them on the first round, on later ones only past a
    page whose stories are all new; on its own host only, and where robots.txt allows."""
    from aggregator.model import Selectors

    async with LocalSite() as site:
        other = site.url("/news/page/4", "elsewhere.example")
        for path, body in {
            "/news": _paged_listing(["a1", "a2"], "/news/page/2", link_next=True),
            "/news/page/2": _paged_listing(["b1", "b2"], "/news/page/3"),
            "/news/page/3": _paged_listing(["c1"], other),
            "/blog": _paged_listing(["d1"], "/blog/page/2"),
            "/blog/page/2": _paged_listing(["e1"]),
        }.items():
            site.route(path, body=body, content_type="text/html; charset=utf-8")
        site.set_robots("User-agent: *\nDisallow: /blog/page/\n")
        pages = lambda n: Selectors(item="article.card", link="h3 a", pages=n)  # noqa: E731
        await sqlite_store.sync_sources([
            SourceSpec("news", site.url("/news"), "world", kind="html", selectors=pages(5)),
            SourceSpec("blog", site.url("/blog"), "world", kind="html", selectors=pages(3))])
        c = collector(sqlite_store, site)
        report = {r.name: r for r in (await c.run_round(force=True)).sources}
        assert {(s.source, s.url.rsplit("/", 1)[-1]) for s in await sqlite_store.latest_stories(limit=20)} == {
            ("news", "a1"), ("news", "a2"), ("news", "b1"), ("news", "b2"), ("news", "c1"),
            ("blog", "d1")}
        assert (report["news"].items, report["news"].new) == (5, 5)
        assert report["news"].problems == (f"next page {other} is on another host: not followed",)
        (blocked,) = report["blog"].problems
        assert blocked.startswith(f"next page {site.url('/blog/page/2')}: robots.txt") and report["blog"].ok

        # One new story on the first page, the others already stored: its next page is not read.
        site.route("/news", body=_paged_listing(["a0", "a1", "a2"], "/news/page/2"),
                   content_type="text/html; charset=utf-8")
        site.reset_log()
        report = {r.name: r for r in (await c.run_round(name="news", force=True)).sources}
        assert (report["news"].items, report["news"].new) == (3, 1)
        assert [p for p in site.paths_requested() if p.startswith("/news")] == ["/news"]


async def test_a_listings_next_pages_stop_at_the_items_one_document_keeps(sqlite_store, monkeypatch):
    """Each page kept up to MAX_ITEMS (5,000) items, and ten of them were one batch of
    50,000 stories: more parameters than PostgreSQL takes in one statement (32,767), so such
    a source failed every round and stored nothing (and its next pages were read again, as no
    story of theirs was stored). No page is read past MAX_ITEMS items (here 3)."""
    from aggregator.model import Selectors

    monkeypatch.setattr("aggregator.collect.MAX_ITEMS", 3, raising=False)
    async with LocalSite() as site:
        for n in range(1, 6):
            site.route(f"/news/{n}", body=_paged_listing([f"{n}a", f"{n}b"], f"/news/{n + 1}"),
                       content_type="text/html; charset=utf-8")
        await sqlite_store.sync_sources([SourceSpec("news", site.url("/news/1"), "world", kind="html",
                                                    selectors=Selectors(item="article.card", link="h3 a", pages=5))])
        (report,) = (await collector(sqlite_store, site).run_round(force=True)).sources
        assert [p for p in site.paths_requested() if p.startswith("/news")] == ["/news/1", "/news/2"]
    assert (report.ok, report.new) == (True, 4)
    assert report.problems == (f"next page {site.url('/news/3')} not read: 4 items read already",)


async def test_a_listings_slow_next_pages_stop_within_the_sources_claim(sqlite_store):
    """Each next page has its own fetch timeout, so ten slow ones took ten timeouts (300 s by
    default): past the source's claim (`lease_s`, 300 s), when another collector takes the
    source and fetches it too. No page is read that could end past half the claim: here a
    claim of 10 s, pages of up to 3 s, the later ones taking 2.8 s each: the second page is
    read (it ends by 3 s at the latest, if asked for within 2 s: room for a loaded machine),
    the third, asked for after 2.8 s, could end past 5 s."""
    from aggregator.model import Selectors

    settings = dataclasses.replace(FAST, total_timeout_s=3.0, lease_s=10)
    async with LocalSite() as site:
        for n in range(1, 5):
            site.route(f"/news/{n}", body=_paged_listing([f"{n}a"], f"/news/{n + 1}"),
                       content_type="text/html; charset=utf-8", delay_s=2.8 if n > 1 else 0.0)
        await sqlite_store.sync_sources([SourceSpec("news", site.url("/news/1"), "world", kind="html",
                                                    selectors=Selectors(item="article.card", link="h3 a", pages=4))])
        (report,) = (await collector(sqlite_store, site, settings).run_round(force=True)).sources
        assert [p for p in site.paths_requested() if p.startswith("/news")] == ["/news/1", "/news/2"]
    assert (report.ok, report.new) == (True, 2)
    (stopped,) = report.problems
    assert stopped.startswith(f"next page {site.url('/news/3')} not read: ")
    assert stopped.endswith(" s into the source's 10 s claim, and a page may take 3 s (pages stop at half the claim)")


async def test_a_listings_next_link_to_a_page_already_read_is_not_followed(sqlite_store):
    """A pager's "next" to a fragment of the page read ("#more"), or to it again with only
    tracking parameters added, passed the "already read" check (URLs compared as written),
    so the same page was fetched once more. Pages are compared by their canonical URL
    without fragment: each is read once."""
    from aggregator.model import Selectors

    async with LocalSite() as site:
        for path, body in {
            "/news": _paged_listing(["a1"], "/news/2"),
            "/news/2": _paged_listing(["b1"], "/news/2#more"),
            "/blog": _paged_listing(["d1"], "/blog?utm_source=pager#top"),
        }.items():
            site.route(path, body=body, content_type="text/html; charset=utf-8")
        pages = Selectors(item="article.card", link="h3 a", pages=5)
        await sqlite_store.sync_sources([
            SourceSpec("news", site.url("/news"), "world", kind="html", selectors=pages),
            SourceSpec("blog", site.url("/blog"), "world", kind="html", selectors=pages)])
        report = {r.name: r for r in (await collector(sqlite_store, site).run_round(force=True)).sources}
        requested = [p for p in site.paths_requested() if not p.startswith("/robots")]
    assert sorted(requested) == ["/blog", "/news", "/news/2"]
    assert (report["news"].new, report["news"].problems) == (2, ())
    assert (report["blog"].new, report["blog"].problems) == (1, ())


async def test_a_pagers_next_link_to_the_page_itself_is_no_next_page(sqlite_store):
    """`sources check`'s dry run gave a listing whose pager names the page itself "next"
    (its fragment, tracking parameters: a last page's pager) that page as its next one,
    where collection, comparing pages by `page_key`, stopped; and such a rel=next hid the
    source's `next` selector ("Older"), so the pages after it were never read."""
    from aggregator.model import Selectors

    older = '<nav><a class="older" href="{}">Older</a></nav>'
    async with LocalSite() as site:
        for path, body in {
            "/news": _paged_listing(["a1"], "/news?utm_source=pager#more", link_next=True),
            "/old": _listing_of({"b1": ""}, '<link rel="next" href="/old#top">' + older.format("/old/2")),
            "/old/2": _listing_of({"c1": ""}, older.format("/old/2#top")),
        }.items():
            site.route(path, body=body, content_type="text/html; charset=utf-8")
        c = collector(sqlite_store, site)
        news = await c.check(SourceSpec("news", site.url("/news"), "world", kind="html",
                                        selectors=Selectors(item="article.card", link="h3 a", pages=3)))
        old = await c.check(SourceSpec("old", site.url("/old"), "world", kind="html", selectors=Selectors(
            item="article", link="h3 a", next="a.older", pages=3)))
        requested = [p for p in site.paths_requested() if not p.startswith("/robots")]
    assert (news.doc.next_url, [d.url for d in news.drafts]) == ("", [site.url("/s/a1")])
    assert old.doc.next_url == site.url("/old/2")
    assert [d.url for d in old.drafts] == [site.url("/s/b1"), site.url("/s/c1")]
    assert requested == ["/news", "/old", "/old/2"]


def _html_source_file(tmp_path, url: str, extra: str, selectors: str, name: str = "site") -> list:
    path = tmp_path / f"{name}.toml"
    path.write_text(f'[[source]]\nname = "{name}"\nurl = "{url}"\ncategory = "world"\n'
                    f'kind = "html"\n{extra}\n[source.selectors]\nitem = "article"\n'
                    f'link = "h3 a"\n{selectors}\n', encoding="utf-8")
    return load_sources(path)


def _listing_of(cards: dict[str, str], pager: str = "") -> bytes:
    """Story slug -> the date text its card shows; `pager` after the cards."""
    body = "".join(f'<article><h3><a href="/s/{slug}">Story {slug}</a></h3>{date}</article>'
                   for slug, date in cards.items())
    return f'<html lang="de"><body>{body}{pager}</body></html>'.encode()


async def _published(store: Store) -> dict[str, datetime | None]:
    return {s.url.rsplit("/", 1)[-1]: s.published_at for s in await store.latest_stories(limit=50)}


async def test_a_listings_times_without_a_zone_are_read_in_the_sources_timezone(tmp_path, sqlite_store):
    """A German listing's "25.11.2026 14:05" was read as 14:05 UTC, an hour late in winter and
    two in summer. With `timezone = "Europe/Berlin"` it is Berlin's 14:05: 13:05 UTC in
    November (CET), 12:05 UTC in July (CEST); so are a machine date without an offset and a
    time alone ("14:05 Uhr", today's). A time that says its zone, and a day without a time,
    read as before."""
    now = datetime(2026, 12, 1, 15, 0, tzinfo=UTC)  # 16:00 in Berlin
    async with LocalSite() as site:
        site.route("/news", content_type="text/html; charset=utf-8", body=_listing_of({
            "winter": '<span class="d">25.11.2026 14:05</span>',
            "summer": '<span class="d">25.07.2026, 14:05 Uhr</span>',
            "machine": '<time class="d" datetime="2026-11-25T09:30">heute</time>',
            "alone": '<span class="d">14:05 Uhr</span>',
            "yesterday": '<span class="d">gestern, 23:30</span>',
            "zoned": '<span class="d">25.11.2026 14:05 UTC</span>',
            "day": '<span class="d">25.11.2026</span>',
        }))
        specs = _html_source_file(tmp_path, site.url("/news"), 'timezone = "Europe/Berlin"',
                              'date = ".d"')
        await sqlite_store.sync_sources(specs)
        (report,) = (await collector(sqlite_store, site, clock=lambda: now).run_round(force=True)).sources
    assert report.ok and report.new == 7, report
    assert await _published(sqlite_store) == {
        "winter": datetime(2026, 11, 25, 13, 5, tzinfo=UTC),
        "summer": datetime(2026, 7, 25, 12, 5, tzinfo=UTC),
        "machine": datetime(2026, 11, 25, 8, 30, tzinfo=UTC),
        "alone": datetime(2026, 12, 1, 13, 5, tzinfo=UTC),
        # Berlin's yesterday at 16:00 on 1 December is 30 November: 22:30 UTC.
        "yesterday": datetime(2026, 11, 30, 22, 30, tzinfo=UTC),
        "zoned": datetime(2026, 11, 25, 14, 5, tzinfo=UTC),
        "day": datetime(2026, 11, 25, tzinfo=UTC),
    }


async def test_a_sitemaps_and_a_feeds_times_without_a_zone_are_read_in_the_sources_timezone(
        tmp_path, sqlite_store):
    """`timezone` was for listings only: an Indian site's sitemap (its children too) and feed
    writing "2026-11-25T10:00:00" had 10:00 UTC, five and a half hours late. Loaded from
    the file, stored and claimed, it reads them in Asia/Kolkata; a date with its offset, and
    the source without a `timezone`, read as before."""
    now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    async with LocalSite() as site:
        base = site.url("").rstrip("/")
        site.route("/sm-index.xml", content_type="application/xml",
                   body=_sitemap_index({f"{base}/sm-1.xml": "2026-11-25T10:00:00"}))
        site.route("/sm-1.xml", content_type="application/xml", body=_news_sitemap(
            base, ["local", "offset"], {"local": "2026-11-25T10:00:00",
                                        "offset": "2026-11-25T10:00:00+01:00"}))
        site.route("/feed.xml", content_type="application/rss+xml", body=(
            '<rss version="2.0"><channel><title>F</title>'
            + "".join(f"<item><title>Story {slug}</title><link>{base}/s/{slug}</link>"
                      f"<pubDate>Wed, 25 Nov 2026 10:00:00</pubDate></item>"
                      for slug in ("feed", "utc-feed"))
            + "</channel></rss>"))
        path = tmp_path / "sources.toml"
        path.write_text(
            f'[[source]]\nname = "sm"\nurl = "{base}/sm-index.xml"\ncategory = "world"\n'
            'timezone = "Asia/Kolkata"\n'
            f'[[source]]\nname = "feed"\nurl = "{base}/feed.xml"\ncategory = "world"\n'
            'kind = "feed"\ntimezone = "Asia/Kolkata"\nblock = "utc-feed"\n'
            f'[[source]]\nname = "utc"\nurl = "{base}/feed.xml"\ncategory = "world"\n'
            'keep = "utc-feed"\n', encoding="utf-8")
        await sqlite_store.sync_sources(load_sources(path))
        reports = (await collector(sqlite_store, site, clock=lambda: now).run_round(force=True)).sources
    assert {r.name: (r.ok, r.new) for r in reports} == {
        "sm": (True, 2), "feed": (True, 1), "utc": (True, 1)}, reports
    assert await _published(sqlite_store) == {
        "local": datetime(2026, 11, 25, 4, 30, tzinfo=UTC),
        "offset": datetime(2026, 11, 25, 9, 0, tzinfo=UTC),
        "feed": datetime(2026, 11, 25, 4, 30, tzinfo=UTC),
        "utc-feed": datetime(2026, 11, 25, 10, 0, tzinfo=UTC),
    }


async def test_a_listings_next_selector_pages_are_read_without_rel_next(tmp_path, sqlite_store):
    """`pages` followed rel=next links only, and many pagers have none: an "Older" link was
    never followed, so such a listing gave one page of stories. `next` selects it: its pages
    are read up to `pages` (a rel=next still wins), on the listing's own host and where
    robots.txt allows, and a later round stops at a page holding a stored story."""
    older = '<nav><a class="older" href="{}">Ältere Artikel</a></nav>'
    async with LocalSite() as site:
        other = site.url("/news/4", "elsewhere.example")
        for path, body in {
            "/news": _listing_of({"a1": ""}, older.format("/news/2")),
            "/news/2": _listing_of({"b1": ""}, older.format("/news/3")),
            "/news/3": _listing_of({"c1": ""}, older.format(other)),
            "/blog": _listing_of({"d1": ""}, older.format("/blog/2")),
            "/blog/2": _listing_of({"e1": ""}),
        }.items():
            site.route(path, body=body, content_type="text/html; charset=utf-8")
        site.set_robots("User-agent: *\nDisallow: /blog/2\n")
        news, = _html_source_file(tmp_path, site.url("/news"), "", 'next = "a.older"\npages = 5')
        # A pager's box works too: its first link is the next page.
        blog, = _html_source_file(tmp_path, site.url("/blog"), "", 'next = "nav"\npages = 3', "blog")
        await sqlite_store.sync_sources([news, blog])
        c = collector(sqlite_store, site)
        report = {r.name: r for r in (await c.run_round(force=True)).sources}
        assert {(s.source, s.url.rsplit("/", 1)[-1])
                for s in await sqlite_store.latest_stories(limit=20)} == {
            ("site", "a1"), ("site", "b1"), ("site", "c1"), ("blog", "d1")}
        assert report["site"].problems == (f"next page {other} is on another host: not followed",)
        (blocked,) = report["blog"].problems
        assert blocked.startswith(f"next page {site.url('/blog/2')}: robots.txt")

        # One new story on the first page, the other stored: its next page is not read.
        site.route("/news", body=_listing_of({"a0": "", "a1": ""}, older.format("/news/2")),
                   content_type="text/html; charset=utf-8")
        site.reset_log()
        (again,) = (await c.run_round(name="site", force=True)).sources
        assert (again.items, again.new) == (2, 1)
        assert [p for p in site.paths_requested() if p.startswith("/news")] == ["/news"]


async def test_an_item_linking_a_host_no_dns_name_has_leaves_the_rest_of_its_feed_stored(store):
    """A story's site is its link's host, stored in 255 characters; a host of 308 (no DNS name
    is longer than 253) made PostgreSQL refuse the round's whole batch, so one junk item kept
    every story of its feed out, round after round. On both engines: SQLite stored it."""
    junk = ".".join(["a" * 60] * 5) + ".com"
    async with LocalSite() as site:
        site.route("/feed.xml", body=_feed("news.example", "Kept", "Junk").replace(
            "http://news.example/1", f"http://{junk}/1"), content_type="application/rss+xml")
        await store.sync_sources([SourceSpec("feed", site.url("/feed.xml"), "politics")])
        (report,) = (await collector(store, site).run_round()).sources
    assert (report.ok, report.new) == (True, 1), report.error
    assert [(s.title, s.site) for s in await store.latest_stories()] == [("Kept", "news.example")]
