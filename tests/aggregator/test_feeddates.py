"""Feed dates with weekday, month or zone names in another language (aggregator.feeddates)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from aggregator.feeds import parse_feed

CASES = [
    ("Di, 10 Jun 2025 08:00:00 +0200", datetime(2025, 6, 10, 6, tzinfo=UTC)),
    ("mar., 10 juin 2025 08:00:00 +0200", datetime(2025, 6, 10, 6, tzinfo=UTC)),
    ("Di, 11 Mär 2025 08:00:00 +0100", datetime(2025, 3, 11, 7, tzinfo=UTC)),
    ("Do, 9 Okt 2025 08:00:00 MESZ", datetime(2025, 10, 9, 6, tzinfo=UTC)),
    ("Sa, 10 Mai 2025 08:00 MESZ", datetime(2025, 5, 10, 6, tzinfo=UTC)),
    ("vie, 12 dic 2025 08:00:00 +0100", datetime(2025, 12, 12, 7, tzinfo=UTC)),
    ("Sal, 10 Haz 2025 08:00:00 +0300", datetime(2025, 6, 10, 5, tzinfo=UTC)),
    ("Вт, 10 июн 2025 08:00:00 +0300", datetime(2025, 6, 10, 5, tzinfo=UTC)),
    ("gio, 3 lug 2025 08:00:00 +0200", datetime(2025, 7, 3, 6, tzinfo=UTC)),
    ("Tue, 10 Jun 2025 08:00:00 +0200", datetime(2025, 6, 10, 6, tzinfo=UTC)),  # as before
    # Europe's zones by their English names (hours ahead of UTC), which feedparser read as UTC.
    *((f"Wed, 10 Dec 2025 08:00:00 {zone}", datetime(2025, 12, 10, 8 - ahead, tzinfo=UTC))
      for zone, ahead in {"CET": 1, "CEST": 2, "EET": 2, "EEST": 3, "WET": 0, "WEST": 1}.items()),
]


def _rss(pub_date: str) -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title>'
            f"<link>https://example.de/</link><item><title>Nachricht</title>"
            f"<link>https://example.de/a</link><pubDate>{pub_date}</pubDate></item>"
            f"</channel></rss>").encode()


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(("pub_date", "expected"), CASES)
def test_local_month_and_zone_names_are_read(pub_date, expected, fast):
    # feedparser read English names only: the story had no time ("juin", "Mär", "Okt"), or
    # "MESZ" was read as UTC, two hours late.
    doc = parse_feed(_rss(pub_date), base_url="https://example.de/", fast=fast)
    (item,) = doc.items
    assert item.published_at == expected
    assert not doc.problems


def test_what_is_no_date_stays_no_date():
    doc = parse_feed(_rss("Di, 10 Foo 2025 08:00:00 +0200"), base_url="https://example.de/")
    assert doc.items[0].published_at is None


# Dates real sites write in their feeds that feedparser reads none of: the story had no time.
WRITTEN = [
    ("December 7, 2026", datetime(2026, 12, 7, tzinfo=UTC)),  # a day alone: that day
    ("Dec 7, 2026 10:00 AM EST", datetime(2026, 12, 7, 15, tzinfo=UTC)),
    ("Dec 7, 2026, 10:00 AM ET", datetime(2026, 12, 7, 15, tzinfo=UTC)),
    ("December 7, 2026 2:30 PM", datetime(2026, 12, 7, 14, 30, tzinfo=UTC)),
    # RFC 822's two-digit year before a zone name: feedparser took "CEST" for UTC.
    ("Mon, 07 Dec 26 10:00:00 CEST", datetime(2026, 12, 7, 8, tzinfo=UTC)),
    ("Mon, 07 Dec 26 10:00:00 MEZ", datetime(2026, 12, 7, 9, tzinfo=UTC)),
]


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize(("pub_date", "expected"), WRITTEN)
def test_dates_as_sites_write_them_are_read(pub_date, expected, fast):
    doc = parse_feed(_rss(pub_date), base_url="https://example.de/", fast=fast)
    assert doc.items[0].published_at == expected
    assert not doc.problems


@pytest.mark.parametrize("fast", [True, False])
@pytest.mark.parametrize("pub_date", ["Mon, 07 Dec 2026 10:00:00 +2400", "2026-12-07T10:00:00+24:00",
                                      "Mon, 07 Dec 2026 10:00:00 +1500", "Mon, 07 Dec 2026 10:00:00 +0175"])
def test_an_offset_no_zone_has_is_no_date(pub_date, fast):
    # feedparser read "+2400" as an offset: the story came out a day early.
    doc = parse_feed(_rss(pub_date), base_url="https://example.de/", fast=fast)
    assert doc.items[0].published_at is None
    assert "invalid date" in doc.problems[0]


@pytest.mark.parametrize("pub_date", ["Mon, 07 Dec 2026 10:00:00 +1400", "Mon, 07 Dec 2026 10:00:00 -1200"])
def test_the_furthest_offsets_zones_have_still_read(pub_date):
    doc = parse_feed(_rss(pub_date), base_url="https://example.de/")
    assert doc.items[0].published_at is not None and not doc.problems


@pytest.mark.parametrize("date", ["2026-12-07T10:00:00+15:00", "2026-12-07T10:00:00-23:00"])
def test_an_offset_no_zone_has_is_no_date_in_a_json_feed_or_a_sitemap(date):
    # As in RSS and Atom above: a JSON Feed's or a news sitemap's "+15:00" was read as it
    # stands, the story a day early (RSS's "+1500" was refused).
    import json

    from aggregator.jsonfeed import parse_jsonfeed
    from aggregator.sitemap import parse_sitemap

    feed = json.dumps({"version": "https://jsonfeed.org/version/1.1", "title": "T", "items": [
        {"id": "1", "url": "https://example.de/a", "title": "Nachricht", "content_text": "Text",
         "date_published": date}]}).encode()
    doc = parse_jsonfeed(feed, base_url="https://example.de/")
    assert doc.items[0].published_at is None and "invalid date" in doc.problems[0]
    sitemap = ('<?xml version="1.0" encoding="UTF-8"?><urlset xmlns="http://www.sitemaps.org/'
               'schemas/sitemap/0.9" xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">'
               f"<url><loc>https://example.de/a</loc><news:news><news:publication_date>{date}"
               "</news:publication_date><news:title>Nachricht</news:title></news:news></url>"
               "</urlset>").encode()
    assert parse_sitemap(sitemap, base_url="https://example.de/").items[0].published_at is None
    # The furthest a zone is, as in a feed, is still read.
    assert parse_jsonfeed(feed.replace(date.encode(), b"2026-12-07T10:00:00+14:00"),
                          base_url="https://example.de/").items[0].published_at is not None
