"""Paid content marked at collect time: Daring Fireball's "[Sponsor] …" posts, read from the
real captured feeds over loopback into a real store, carry the tag "sponsored"; its other posts,
and news *about* sponsors or advertising (heise's "Werbung", "Anzeige" headlines), do not."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aggregator.collect import Collector
from aggregator.importer import draft_from_record
from aggregator.model import ParsedItem, SourceSpec
from aggregator.normalize import first_of_each_link, normalize
from aggregator.settings import CollectSettings
from aggregator.sponsored import SPONSORED_TAG, marked, sponsored, with_sponsored_tag
from tests.localsite import LocalSite, LoopbackResolver

NOW = datetime(2026, 4, 26, 12, 0, tzinfo=UTC)
FAST = CollectSettings(connect_timeout_s=2.0, total_timeout_s=5.0, min_interval_s=60,
                       jitter_ratio=0.0, max_body_bytes=2_000_000, public_links_only=False)


@pytest.mark.parametrize("title", [
    "[Sponsor] MNML: A macOS Writing App for Medium.com",
    "Sponsored: Ten gadgets for your kitchen",
    "Sponsored Content | The future of flying",
    "Paid Post: How banks are changing",
    "Partner content: Discover Lisbon",
    "Advertisement",
    "Ten gadgets for your kitchen (Sponsored)",
    "ANZEIGE: Jetzt wechseln und sparen",
    "Werbung | Die besten Angebote",
    "[Anzeige] Neue Tarife",
])
def test_a_marker_opening_or_closing_the_title_is_paid_content(title):
    assert sponsored(title)


@pytest.mark.parametrize("title", [
    "Sponsor pulls out of World Cup",
    "Sponsor: we are reviewing our deal with the club",  # a headline quoting one
    "Sponsored content is booming on TikTok",
    "Advertisement standards tightened for gambling firms",
    "Wetterstation für Onlinewette manipuliert: Meteo France erstattet Anzeige",
    "Anzeige gegen Unbekannt nach Brand in Lagerhalle",
    "Handy im Wanzen-Verdacht: Gezielte Werbung braucht keinen Lauschangriff",
    "Ruby Central: Neustart nach Sponsorenverlust und Community-Krise",
    "Club signs shirt sponsor [updated]",
])
def test_news_about_sponsors_and_adverts_is_not(title):
    assert not sponsored(title)


def test_only_a_whole_marker_tag_counts():
    assert sponsored("Ten gadgets", ["Deals", "Advertorial"])
    assert sponsored("Ten gadgets", [" Paid  Post "])
    assert not sponsored("Shirt deal signed", ["Sponsorship", "Werbung", "Advertising"])
    # Added first, once, and within the feed's number of tags.
    assert with_sponsored_tag("Ten gadgets", ("Deals", "Advertorial"), 20) == (
        "sponsored", "Deals", "Advertorial")
    assert with_sponsored_tag("Sponsored: x", ("Sponsored",), 20) == ("Sponsored",)
    assert with_sponsored_tag("Sponsored: x", ("a", "b"), 2) == ("sponsored", "a")
    assert with_sponsored_tag("Budget vote", ("Politics",), 20) == ("Politics",)


def test_a_link_one_copy_calls_paid_content_stays_marked_when_merged():
    first = normalize(ParsedItem(url="http://sponsor.example/df", title="Manuscripts and Findings",
                                 tags=("Linked",)), source=None, now=NOW)
    ad = normalize(ParsedItem(url="http://sponsor.example/df", title="[Sponsor] Manuscripts"),
                   source=None, now=NOW)
    (merged,) = first_of_each_link([first, ad])
    assert merged.title == "Manuscripts and Findings" and merged.tags == ("sponsored", "Linked")
    assert marked(("Politics", "Sponsored")) and not marked(("Sponsorship",))


def test_an_imported_line_is_marked_as_a_feed_item_is():
    d = draft_from_record({"url": "https://daringfireball.net/2017/06/mnml",
                           "title": "[Sponsor] MNML", "tags": ["Apps"]}, NOW)
    assert d.tags == (SPONSORED_TAG, "Apps")


@pytest.fixture
async def site(shared_data):
    async with LocalSite(shared_data) as s:
        yield s


async def _collected(store, site, feeds: dict[str, str]) -> dict[str, tuple[str, ...]]:
    """title -> stored tags, of every story the `feeds` (name -> path under shared data) gave."""
    await store.sync_sources([SourceSpec(name, site.data_url(path), "tech")
                              for name, path in feeds.items()], NOW)
    collector = Collector(store, FAST, resolver_factory=lambda: LoopbackResolver(port=site.port),
                          clock=lambda: NOW)
    report = await collector.run_round(force=True)
    assert all(r.ok for r in report.sources), report.sources
    out = {}
    for name in feeds:
        ids = await store.latest_ids(500, source=name)
        out.update({s.title: s.tags for s in (await store.get_stories(ids)).values()})
    return out


async def test_daring_fireballs_sponsor_posts_are_stored_tagged_sponsored(store, site):
    stored = await _collected(store, site, {
        "df-json": "news-feeds/RSParser/DaringFireball.json",
        "df-atom": "news-feeds/RSParser/DaringFireball.rss",
    })
    tagged = {t for t, tags in stored.items() if marked(tags)}
    # The three sponsor posts of the two captures, and nothing else of their ~90 posts. The
    # Atom one's link, the sponsor's page, is listed first by a "My thanks to Nucleobytes for
    # sponsoring" post titled "Manuscripts and Findings": one link, one story, which keeps the
    # first copy's title and is paid content still.
    assert tagged == {
        "[Sponsor] MNML: A macOS Writing App for Medium.com",
        "[Sponsor] Timing — Automatic Time Tracking for Mac",
        "Manuscripts and Findings",
    }, tagged
    assert len(stored) > 80
    assert all(tags[0] == SPONSORED_TAG for t, tags in stored.items() if t in tagged)


async def test_news_feeds_that_write_of_adverts_keep_every_story_unmarked(store, site):
    """heise writes of "Werbung" and an "Anzeige" (a complaint to the police) in headlines and
    image names; the BBC's feed has its own app's promo page, which says nothing of being one
    (an operator's `block` rule leaves such a page out)."""
    stored = await _collected(store, site, {
        "heise": "news-feeds/fast-news-reader/heise.xml",
        "bbc": "news-feeds/fast-news-reader/bbc.xml",
    })
    assert any("Werbung" in t for t in stored) and any("Anzeige" in t for t in stored)
    assert "BBC News app" in stored
    assert [t for t, tags in stored.items() if marked(tags)] == []
