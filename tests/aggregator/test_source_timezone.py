"""A source's `timezone` on feeds, JSON Feeds and sitemaps: a date written without a zone is
read in it, summer or winter time by its date; one that says its zone or offset, and a day
alone, read as before, and so does every date of a source without one. Real bodies through
the real parse path (`parse_document`, `parse_and_normalize` with a loaded source)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from aggregator.model import Selectors
from aggregator.parse import parse_document
from aggregator.parsepool import parse_and_normalize
from aggregator.sources import load_sources

BERLIN = Selectors(item="", link="", timezone="Europe/Berlin")  # as sources.py loads it


def utc(*fields: int) -> datetime:
    return datetime(*fields, tzinfo=UTC)


# (date as written, read without a timezone, read in Europe/Berlin)
RSS_DATES = [
    ("Wed, 25 Nov 2026 14:05:00", utc(2026, 11, 25, 14, 5), utc(2026, 11, 25, 13, 5)),  # CET
    ("Thu, 25 Jun 2026 14:05:00", utc(2026, 6, 25, 14, 5), utc(2026, 6, 25, 12, 5)),  # CEST
    # The night summer time ends (03:00 CEST -> 02:00 CET, 25 October 2026): each side its own.
    ("Sun, 25 Oct 2026 01:30:00", utc(2026, 10, 25, 1, 30), utc(2026, 10, 24, 23, 30)),
    ("Sun, 25 Oct 2026 04:30:00", utc(2026, 10, 25, 4, 30), utc(2026, 10, 25, 3, 30)),
    ("Do, 25 Jun 2026 14:05", utc(2026, 6, 25, 14, 5), utc(2026, 6, 25, 12, 5)),  # German, no seconds
    ("25 Okt 2026 14:05:00", utc(2026, 10, 25, 14, 5), utc(2026, 10, 25, 13, 5)),
    # Dates that say their zone, however they say it, are read as they say.
    ("Wed, 25 Nov 2026 14:05:00 GMT", utc(2026, 11, 25, 14, 5), utc(2026, 11, 25, 14, 5)),
    ("Thu, 25 Jun 2026 14:05:00 +0000", utc(2026, 6, 25, 14, 5), utc(2026, 6, 25, 14, 5)),
    ("Thu, 25 Jun 2026 14:05:00 -0000", utc(2026, 6, 25, 14, 5), utc(2026, 6, 25, 14, 5)),
    ("Thu, 25 Jun 2026 14:05:00 +0530", utc(2026, 6, 25, 8, 35), utc(2026, 6, 25, 8, 35)),
    # An offset Python's RFC 822 reader misses and feedparser reads: feedparser's stands.
    ("Thu, 25 Jun 2026 14:05:00 +03:00", utc(2026, 6, 25, 11, 5), utc(2026, 6, 25, 11, 5)),
    ("Wed, 25 Nov 2026 14:05:00 EST", utc(2026, 11, 25, 19, 5), utc(2026, 11, 25, 19, 5)),
    ("Wed, 25 Nov 2026 14:05:00 MET", utc(2026, 11, 25, 13, 5), utc(2026, 11, 25, 13, 5)),
    ("Do, 25 Jun 2026 14:05:00 MESZ", utc(2026, 6, 25, 12, 5), utc(2026, 6, 25, 12, 5)),
]
# Atom and Dublin Core dates (ISO 8601), the same way.
ISO_DATES = [
    ("2026-11-25T14:05:00", utc(2026, 11, 25, 14, 5), utc(2026, 11, 25, 13, 5)),
    ("2026-06-25T14:05:00", utc(2026, 6, 25, 14, 5), utc(2026, 6, 25, 12, 5)),
    ("2026-06-25T14:05:00Z", utc(2026, 6, 25, 14, 5), utc(2026, 6, 25, 14, 5)),
    ("2026-06-25T14:05:00+02:00", utc(2026, 6, 25, 12, 5), utc(2026, 6, 25, 12, 5)),
    ("2026-11-25T14:05:00-05:00", utc(2026, 11, 25, 19, 5), utc(2026, 11, 25, 19, 5)),
    # A day alone stays that day at midnight UTC (see textclean._written_date).
    ("2026-11-25", utc(2026, 11, 25), utc(2026, 11, 25)),
]


def _read(body: bytes, selectors: Selectors | None, fast: bool | None = None) -> list:
    doc = parse_document(body, base_url="https://news.example/feed", selectors=selectors,
                         fast=fast)
    assert not doc.problems, doc.problems
    return [item.published_at for item in doc.items]


def _expected(dates: list, zoned: bool) -> list:
    return [in_berlin if zoned else as_utc for _, as_utc, in_berlin in dates]


@pytest.mark.parametrize("zoned", [False, True])
@pytest.mark.parametrize("fast", [True, False])
def test_rss_pubdates_without_a_zone_are_read_in_the_sources_timezone(fast, zoned):
    """Both feed readers (the lxml fast path, feedparser) agree: they share the reading."""
    items = "".join(f"<item><title>Story {n}</title><link>https://news.example/{n}</link>"
                    f"<pubDate>{date}</pubDate></item>" for n, (date, _, _) in enumerate(RSS_DATES))
    body = (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>T</title>'
            f"<link>https://news.example/</link>{items}</channel></rss>").encode()
    assert _read(body, BERLIN if zoned else None, fast) == _expected(RSS_DATES, zoned)


@pytest.mark.parametrize("zoned", [False, True])
@pytest.mark.parametrize("fast", [True, False])
def test_atom_and_dc_dates_without_an_offset_are_read_in_the_sources_timezone(fast, zoned):
    entries = "".join(
        f"<entry><title>Story {n}</title><link href='https://news.example/{n}'/>"
        f"<id>urn:story:{n}</id><{'published' if n % 2 else 'updated'}>{date}"
        f"</{'published' if n % 2 else 'updated'}></entry>"
        for n, (date, _, _) in enumerate(ISO_DATES))
    atom = (f'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>T</title><id>urn:feed</id>{entries}</feed>").encode()
    items = "".join(f"<item><title>Story {n}</title><link>https://news.example/{n}</link>"
                    f"<dc:date>{date}</dc:date></item>" for n, (date, _, _) in enumerate(ISO_DATES))
    rss = ('<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
           'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel><title>T</title>'
           f"<link>https://news.example/</link>{items}</channel></rss>").encode()
    selectors = BERLIN if zoned else None
    assert _read(atom, selectors, fast) == _expected(ISO_DATES, zoned)
    assert _read(rss, selectors, fast) == _expected(ISO_DATES, zoned)


@pytest.mark.parametrize("zoned", [False, True])
def test_sitemap_dates_without_an_offset_are_read_in_the_sources_timezone(zoned):
    """news:publication_date and lastmod alike (W3C Datetime wants the offset; sites leave it
    out); hh:mm without seconds is W3C's too."""
    dates = [*ISO_DATES, ("2026-06-25T14:05", utc(2026, 6, 25, 14, 5), utc(2026, 6, 25, 12, 5))]
    entries = "".join(
        f"<url><loc>https://news.example/{n}</loc><news:news><news:title>Story {n}</news:title>"
        f"<news:publication_date>{date}</news:publication_date></news:news></url>"
        f"<url><loc>https://news.example/plain-{n}</loc><lastmod>{date}</lastmod></url>"
        for n, (date, _, _) in enumerate(dates))
    body = ('<?xml version="1.0" encoding="utf-8"?><urlset '
            'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
            f'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">{entries}</urlset>').encode()
    doc = parse_document(body, base_url="https://news.example/sitemap.xml",
                         selectors=BERLIN if zoned else None)
    got = {item.url.rsplit("/", 1)[1]: item.published_at for item in doc.items}
    want = _expected(dates, zoned)
    assert got == {**{str(n): w for n, w in enumerate(want)},
                   **{f"plain-{n}": w for n, w in enumerate(want)}}


@pytest.mark.parametrize("zoned", [False, True])
def test_json_feed_dates_without_an_offset_are_tolerated_and_read_in_the_sources_timezone(zoned):
    """JSON Feed requires RFC 3339 (an offset); a feed without one is read, not refused."""
    feed = {"version": "https://jsonfeed.org/version/1.1", "title": "T",
            "items": [{"id": str(n), "url": f"https://news.example/{n}", "title": f"Story {n}",
                       "date_published": date} for n, (date, _, _) in enumerate(ISO_DATES)]}
    body = json.dumps(feed).encode()
    assert _read(body, BERLIN if zoned else None) == _expected(ISO_DATES, zoned)


def _loaded(tmp_path: Path, kind: str, zone: str):
    path = tmp_path / "sources.toml"
    path.write_text(f'[[source]]\nname = "site"\nurl = "https://news.example/feed"\n'
                    f'category = "world"\nkind = "{kind}"\ntimezone = "{zone}"\n', encoding="utf-8")
    (spec,) = load_sources(path)
    return spec


def test_a_story_read_in_its_zone_is_no_longer_ahead_of_the_fetch(tmp_path):
    """An Indian site's 10:00 (04:30 UTC), fetched at 05:00 UTC: read as UTC it was 10:00
    UTC, five hours past the fetch, on top of every "newest first" list until then."""
    spec = _loaded(tmp_path, "feed", "Asia/Kolkata")
    body = (b'<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><item>'
            b"<title>Story</title><link>https://news.example/a</link>"
            b"<pubDate>Wed, 25 Nov 2026 10:00:00</pubDate></item></channel></rss>")
    now = utc(2026, 11, 25, 5, 0)
    parsed = parse_and_normalize(body, spec.url, "application/rss+xml", spec.kind,
                                 spec.selectors, spec, now)
    (draft,) = parsed.drafts
    assert draft.published_at == utc(2026, 11, 25, 4, 30)


def test_the_future_bound_applies_to_the_time_in_the_sources_zone(tmp_path):
    """normalize drops a date more than a day past the fetch: Los Angeles's 10:00 tomorrow
    is 18:00 UTC, 30 hours ahead (read as UTC it was 22 hours ahead, and kept)."""
    spec = _loaded(tmp_path, "sitemap", "America/Los_Angeles")
    body = (b'<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
            b'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9"><url>'
            b"<loc>https://news.example/a</loc><news:news><news:title>Story</news:title>"
            b"<news:publication_date>2026-11-26T10:00:00</news:publication_date></news:news>"
            b"</url></urlset>")
    parsed = parse_and_normalize(body, spec.url, "application/xml", spec.kind, spec.selectors,
                                 spec, utc(2026, 11, 25, 12, 0))
    (draft,) = parsed.drafts
    assert draft.published_at is None
