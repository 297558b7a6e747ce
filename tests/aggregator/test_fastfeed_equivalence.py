"""The lxml fast path (aggregator.fastfeed) gives the same ParsedDocument as feedparser.

Every captured feed in ../shared/data/news-feeds (and a benchmark variant of it) is parsed
both ways and compared field by field; small hand-made documents pin feedparser's rules the
fast path mirrors, and the constructs it must leave to feedparser.
"""

from __future__ import annotations

import dataclasses
import io
from pathlib import Path

import feedparser
import pytest

from aggregator.errors import ParseError
from aggregator.fastfeed import read_fast
from aggregator.feeds import parse_feed

REPO = Path(__file__).resolve().parents[2]
FEEDS_DIR = REPO / ".." / "shared" / "data" / "news-feeds"
BASE = "http://feeds.example.com/news/feed.xml"
# Captured feeds the fast path hands to feedparser, and why. Everything else must take it.
EXPECTED_FALLBACK = {
    "RSParser/aktuality.rss": "an <image> with child elements inside items",
    "node-feedparser/mediacontent-dupes.xml": "a typed second description",
}


def _xml_feeds() -> list[Path]:
    if not FEEDS_DIR.is_dir():
        return []
    return sorted(p for p in FEEDS_DIR.glob("*/*")
                  if p.is_file() and p.suffix in {".xml", ".rss", ".atom"})


def differences(body: bytes, base_url: str = BASE, content_type: str | None = None) -> list:
    """Every field where the fast path and feedparser disagree (empty when they agree)."""
    slow, fast = (_parse(body, base_url, content_type, fast) for fast in (False, True))
    if isinstance(slow, str) or isinstance(fast, str):  # a ParseError: the same one
        return [] if slow == fast else [("error", slow, fast)]
    out = [(k, getattr(slow, k), getattr(fast, k))
           for k in ("kind", "title", "home_url", "ttl_s", "problems")
           if getattr(slow, k) != getattr(fast, k)]
    if len(slow.items) != len(fast.items):
        out.append(("items", len(slow.items), len(fast.items)))
    for n, (a, b) in enumerate(zip(slow.items, fast.items, strict=False)):
        for f in dataclasses.fields(a):
            if getattr(a, f.name) != getattr(b, f.name):
                out.append((n, f.name, getattr(a, f.name), getattr(b, f.name)))
    return out


def _parse(body: bytes, base_url: str, content_type: str | None, fast: bool):
    try:
        return parse_feed(body, base_url=base_url, content_type=content_type, fast=fast)
    except ParseError as e:
        return f"ParseError: {e}"


@pytest.mark.skipif(not _xml_feeds(), reason="captured feeds not found")
@pytest.mark.parametrize("path", _xml_feeds(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_captured_feed_parses_the_same_both_ways(path: Path):
    from benchmarks.collect_bench import content_type_of, variant

    rel = f"{path.parent.name}/{path.name}"
    raw = path.read_bytes()
    ctype = content_type_of(path.name)
    for body in (raw, variant(raw, path.name, 7)):
        used_fast = read_fast(body, base_url=BASE, content_type=ctype) is not None
        assert used_fast == (rel not in EXPECTED_FALLBACK), rel
        assert differences(body, content_type=ctype) == []


def _rss(item: str, channel: str = "<title>T</title><link>http://site.example/</link>",
         ns: str = "") -> bytes:
    return (f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0" {ns}><channel>'
            f"{channel}<item>{item}</item></channel></rss>").encode()


NS = ('xmlns:dc="http://purl.org/dc/elements/1.1/" '
      'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
      'xmlns:media="http://search.yahoo.com/mrss/" '
      'xmlns:atom="http://www.w3.org/2005/Atom"')

# Each document exercises one of feedparser's rules; the fast path must take it and agree.
SAME = {
    "guid is the link": _rss("<title>A</title><guid>http://site.example/a</guid>"),
    "guid not a permalink": _rss('<title>A</title><link>/a</link><guid isPermaLink="false">x1</guid>'),
    "relative link": _rss("<title>A</title><link>/story/1?a=1&amp;b=2</link>"),
    "email (Name) author": _rss("<title>A</title><link>http://s.example/a</link>"
                                "<author>jo@site.example (Jo Doe)</author>"),
    "bare email author": _rss("<title>A</title><link>http://s.example/a</link>"
                              "<author>jo@site.example</author>"),
    "two dc creators": _rss("<title>A</title><link>http://s.example/a</link>"
                            "<dc:creator>One</dc:creator><dc:creator>Two</dc:creator>", ns=NS),
    "categories with domain, repeated": _rss(
        '<title>A</title><link>http://s.example/a</link><category domain="d">World</category>'
        "<category>World</category><dc:subject>Politics</dc:subject>", ns=NS),
    "content without description": _rss(
        "<title>A</title><link>http://s.example/a</link>"
        "<content:encoded><![CDATA[<p>Body <img src='/i.jpg'> text</p>]]></content:encoded>", ns=NS),
    "description after content": _rss(
        "<title>A</title><link>http://s.example/a</link>"
        "<content:encoded>&lt;p&gt;Body&lt;/p&gt;</content:encoded><description>Teaser</description>", ns=NS),
    "bare content holding html, after the description": _rss(
        "<title>A</title><link>http://s.example/a</link><description>Teaser</description>"
        "<content><![CDATA[<p>The <b>whole</b> body.</p>]]></content>"),
    "bare content holding escaped html, no description": _rss(
        "<title>A</title><link>http://s.example/a</link>"
        "<content>&lt;p&gt;The whole body.&lt;/p&gt;</content>"),
    "bare content typed html, and plain": _rss(
        '<title>A</title><link>http://s.example/a</link><content type="html">Body, no tags.</content>'
        "</item><item><title>B</title><link>http://s.example/b</link><description>Teaser</description>"
        "<content>A plain body.</content>"),
    "media description after description becomes content": _rss(
        "<title>A</title><link>http://s.example/a</link><description>Teaser</description>"
        "<media:description>Caption text</media:description>", ns=NS),
    "media group renditions": _rss(
        "<title>A</title><link>http://s.example/a</link><media:group>"
        '<media:content url="http://i.example/s.jpg" width="140" medium="image"/>'
        '<media:content url="http://i.example/l.jpg" width="460" medium="image"><media:title>x</media:title>'
        "</media:content></media:group>", ns=NS),
    "thumbnail and enclosure": _rss(
        "<title>A</title><link>http://s.example/a</link>"
        '<media:thumbnail url="/t.jpg"/><enclosure url="http://i.example/e.png" type="image/png"/>', ns=NS),
    "two thumbnails, the larger second": _rss(
        "<title>A</title><link>http://s.example/a</link>"
        '<media:thumbnail url="http://i.example/s.jpg" width="90"/>'
        '<media:thumbnail url="http://i.example/l.jpg" width="600"/>', ns=NS),
    "plain bigimage and smallimage (Livemint)": _rss(
        "<title>A</title><link>http://s.example/a</link><thumbnail>http://i.example/90x90/t.jpg</thumbnail>"
        "<smallimage> http://i.example/250x250/s.jpg </smallimage>"
        "<bigimage><![CDATA[/img/600x338/b.jpg?a=1&b=2]]></bigimage><image>http://i.example/i.jpg</image>"),
    "plain smallimage only, with an entity": _rss(
        "<title>A</title><link>http://s.example/a</link><smallimage>http://i.example/s.jpg?a=1&amp;b=2"
        "</smallimage>"),
    "itunes images, the later one taken": _rss(
        '<title>A</title><link>http://s.example/a</link><itunes:image href="/first.jpg"/>'
        '<image>http://i.example/plain.jpg</image><itunes:image url="http://i.example/second.jpg"/>'
        '<itunes:image href=""/></item><item><title>B</title><link>http://s.example/b</link>'
        '<itunes:image href="http://i.example/b.jpg"/>',
        channel='<title>T</title><link>http://site.example/</link><itunes:image href="/logo.jpg"/>',
        ns='xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"'),
    "dates: pubDate and dc:date": _rss(
        "<title>A</title><link>http://s.example/a</link><pubDate>Tue, 10 Jun 2025 04:00:00 +0200"
        "</pubDate><dc:date>2025-06-11T00:00:00Z</dc:date>", ns=NS),
    "invalid date": _rss("<title>A</title><link>http://s.example/a</link><pubDate>someday</pubDate>"),
    "comments and PIs inside text": _rss(
        "<title>A<!-- x -->B <?pi x?>C</title><link>http://s.example/a</link>"
        "<description>one<!-- c -->two</description>"),
    "html-looking title and entities": _rss(
        "<title>Tom &amp;amp; Jerry &lt;b&gt;live&lt;/b&gt;</title><link>http://s.example/a</link>"),
    "title from description only": _rss(
        "<link>http://s.example/a</link><description>Only a summary here</description>"),
    "no link at all": _rss("<title>A</title><description>x</description>"),
    "one item without a link": _rss("<title>A</title></item><item><title>B</title>"
                                    "<link>http://s.example/b</link>"),
    "atom link inside rss item": _rss(
        '<title>A</title><atom:link rel="alternate" href="http://s.example/atom-a"/>', ns=NS),
    "ttl and feed link": _rss("<title>A</title><link>http://s.example/a</link>",
                              channel="<title>Feed &amp; co</title><link>/home</link><ttl>30</ttl>"),
    "latin-1 document": ('<?xml version="1.0" encoding="ISO-8859-1"?><rss version="2.0"><channel>'
                         "<title>Not\xedcias</title><item><title>S\xe3o Paulo \x93quoted\x94</title>"
                         "<link>http://s.example/a</link></item></channel></rss>").encode("latin-1"),
    "atom entry": (
        b'<?xml version="1.0" encoding="utf-8"?><feed xmlns="http://www.w3.org/2005/Atom">'
        b'<title type="html">Feed &lt;i&gt;x&lt;/i&gt;</title><link href="/"/>'
        b'<entry><id>tag:x,2020:1</id><title>E</title><link href="/e1"/>'
        b"<author><name>Ann</name><email>ann@x.example</email></author>"
        b'<updated>2020-01-02T03:04:05Z</updated><summary>Short</summary>'
        b'<content type="html">&lt;p&gt;Long &lt;b&gt;body&lt;/b&gt;&lt;/p&gt;</content>'
        b'<category term="t1" label="Label"/></entry>'
        b"<entry><id>http://s.example/only-id</id><title>F</title></entry></feed>"),
}


@pytest.mark.parametrize("name", sorted(SAME))
def test_fast_path_follows_feedparser_rules(name: str):
    body = SAME[name]
    assert read_fast(body, base_url=BASE) is not None, "expected the fast path"
    assert differences(body) == []


# Constructs the fast path must leave to feedparser (and feedparser's answer still comes out).
FALLBACK = {
    "malformed": _rss("<title>A & B</title><link>http://s.example/a</link>"),
    "doctype": b'<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY x "y">]><rss version="2.0">'
               b"<channel><title>T</title><item><title>&x;</title><link>http://s.example/a</link>"
               b"</item></channel></rss>",
    "bare base attribute": _rss('<title base="http://o.example/">A</title><link>a</link>'),
    "xml:base on an entry": (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title>'
        b'<entry xml:base="http://other.example/dir/"><title>E</title><link href="e1"/></entry></feed>'),
    "markup inside a title": _rss("<title>A <b>bold</b> move</title><link>http://s.example/a</link>"),
    "atom xhtml content": (
        b'<feed xmlns="http://www.w3.org/2005/Atom"><title>T</title><entry><title>E</title>'
        b'<link href="http://s.example/e"/><content type="xhtml"><div xmlns="http://www.w3.org/1999/xhtml">'
        b"<p>Hi</p></div></content></entry></feed>"),
    "media:title before the title": _rss(
        '<media:content url="http://i.example/a.jpg"><media:title>Photo</media:title></media:content>'
        "<title>A</title><link>http://s.example/a</link>", ns=NS),
    "itunes summary": _rss(
        "<title>A</title><link>http://s.example/a</link><itunes:summary>S</itunes:summary>",
        ns='xmlns:itunes="http://www.itunes.com/dtds/podcast-1.0.dtd"'),
    "rss 0.90 rdf": (
        b'<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" '
        b'xmlns="http://my.netscape.com/rdf/simple/0.9/"><channel><title>T</title></channel>'
        b"<item><title>A</title><link>http://s.example/a</link></item></rdf:RDF>"),
}


@pytest.mark.parametrize("name", sorted(FALLBACK))
def test_unusual_documents_go_to_feedparser(name: str):
    body = FALLBACK[name]
    assert read_fast(body, base_url=BASE) is None
    assert parse_feed(body, base_url=BASE) == parse_feed(body, base_url=BASE, fast=False)


def test_http_charset_must_match_the_document():
    body = SAME["latin-1 document"]
    assert read_fast(body, base_url=BASE, content_type="text/xml; charset=iso-8859-1") is not None
    assert read_fast(body, base_url=BASE, content_type="text/xml; charset=utf-8") is None
    assert differences(body, content_type="text/xml; charset=utf-8") == []


def test_an_rss_content_holding_html_is_typed_as_feedparser_types_it():
    """feedparser guesses the type of an untyped RSS <content> from its text (text/html when
    it looks like markup); the fast path typed it text/plain, a caption's type, and the body
    was dropped in the fast path only."""
    body = SAME["bare content holding html, after the description"]
    slow = feedparser.parse(io.BytesIO(body), response_headers={"content-location": BASE})
    _, (fast,) = read_fast(body, base_url=BASE)
    assert [c["type"] for c in fast["content"]] == [c["type"] for c in slow.entries[0]["content"]]
    assert fast["content"][0]["type"] == "text/html"
