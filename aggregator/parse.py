"""Turn one fetched body into a ParsedDocument: sniff its kind, hand it to the right parser.

The only entry point the collector needs. Bytes in, a frozen ParsedDocument out; no I/O.
Raises ParseError (with a message fit for `sources list`) when nothing usable came out;
recoverable trouble (malformed XML recovered, broken items skipped) is in `problems`.
Kinds: "feed" (RSS/Atom/RDF), "jsonfeed", "sitemap", "html" (listing, needs selectors).
"""

from __future__ import annotations

import codecs
import json
import re
from dataclasses import replace
from datetime import datetime

import lxml.html
from lxml import etree

from aggregator.canonical import joined
from aggregator.errors import ParseError
from aggregator.feeds import parse_feed
from aggregator.jsonfeed import is_jsonfeed, parse_jsonfeed
from aggregator.listing import parse_listing
from aggregator.model import ParsedDocument, Selectors, listing_selectors, site_zone
from aggregator.sitemap import parse_sitemap
from aggregator.textclean import decode_html, valid_char_refs

KINDS = ("auto", "feed", "jsonfeed", "sitemap", "html")
# Skip what may precede the root element: BOM, XML declaration, PIs, comments, doctype.
_PROLOGUE = re.compile(rb"\s*(<\?.*?\?>|<!--.*?-->|<!doctype[^>]*>|\s+)", re.I | re.S)
_ROOT = re.compile(rb"<\s*(?:[\w.-]+:)?([\w.-]+)")
_FEED_ROOTS = {b"rss", b"feed", b"rdf", b"channel"}
_SITEMAP_ROOTS = {b"urlset", b"sitemapindex"}
# Items kept of one document. A news feed holds tens, a news sitemap at most 1,000 (Google's
# rule); a 10 MB body of one-line items held 175,000, all stored in one round (644 MB).
MAX_ITEMS = 5_000


def detect_kind(body: bytes, content_type: str | None = None) -> str:
    """What a body is: feed, jsonfeed, sitemap, html, json (not a feed), empty or unknown."""
    head = _ascii_head(body)
    if not head.strip():
        return "empty"
    ctype = (content_type or "").lower()
    if head.lstrip().startswith(b"{") or ("json" in ctype and not head.lstrip().startswith(b"<")):
        try:
            data = json.loads(_strip_bom(body).decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            # A truncated JSON Feed is still one: let its parser say what is wrong with it.
            return "jsonfeed" if b"jsonfeed.org/version" in head else "unknown"
        return "jsonfeed" if is_jsonfeed(data) else "json"
    pos = 0
    while True:
        m = _PROLOGUE.match(head, pos)
        if not m or m.end() == pos:
            break
        pos = m.end()
    root = _ROOT.match(head, pos)
    name = root.group(1).lower() if root else b""
    if name in _FEED_ROOTS:
        return "feed"
    if name in _SITEMAP_ROOTS:
        return "sitemap"
    if name in (b"html", b"head", b"body") or b"<html" in head.lower():
        return "html"
    if b"<rss" in head or b"<feed" in head or b"<rdf:RDF" in head:
        return "feed"  # root hidden behind junk a browser would tolerate; feedparser copes
    return "unknown"


def parse_document(
    body: bytes,
    *,
    base_url: str,
    content_type: str | None = None,
    kind: str = "auto",
    selectors: Selectors | None = None,
    fast: bool | None = None,
    now: datetime | None = None,
) -> ParsedDocument:
    """Parse `body` fetched from `base_url`; `kind` is the source's kind ("auto" sniffs).

    `fast=False` reads RSS/Atom with feedparser only (the reference the fast path is tested
    and benchmarked against); None follows aggregator.feeds.FAST_PATH. At most `MAX_ITEMS`
    items are kept, in document order (a problem says how many were left). `now`, the time
    the body was fetched, dates a listing's "2 hours ago" (left unread without it).
    `selectors.timezone`, on a source of any kind, is the zone of its times written without
    one."""
    doc = _parse(body, base_url=base_url, content_type=content_type, kind=kind,
                 selectors=selectors, fast=fast, now=now)
    if len(doc.items) <= MAX_ITEMS:
        return doc
    left = len(doc.items) - MAX_ITEMS
    return replace(doc, items=doc.items[:MAX_ITEMS],
                   problems=(*doc.problems, f"{left} items past the first {MAX_ITEMS} skipped"))


def _parse(body: bytes, *, base_url: str, content_type: str | None, kind: str,
           selectors: Selectors | None, fast: bool | None, now: datetime | None) -> ParsedDocument:
    if kind not in KINDS:
        raise ParseError(f"unknown source kind {kind!r} (expected one of {', '.join(KINDS)})")
    if body is None or not body.strip():
        raise ParseError("empty body")
    sniffed = detect_kind(body, content_type)
    if sniffed == "empty":
        raise ParseError("empty body")
    wanted = kind if kind != "auto" else sniffed
    if kind in ("feed", "jsonfeed") and sniffed == "jsonfeed":
        wanted = "jsonfeed"  # a "feed" source may serve either format
    zone = site_zone(selectors)
    selectors = listing_selectors(selectors)  # a feed's or sitemap's carry its zone alone
    if wanted == "html" or (kind == "auto" and sniffed == "html"):
        if selectors is None:
            expected = "a feed" if kind in ("auto", "feed") else f"a {kind}"
            if sniffed == "html":
                raise ParseError(f"expected {expected}, got an HTML page (no selectors configured)"
                                 + _feeds_hint(body, base_url, content_type))
            raise ParseError("html source needs [source.selectors]")
        return parse_listing(
            body, base_url=base_url, selectors=selectors, content_type=content_type, now=now
        )
    if wanted == "jsonfeed":
        return parse_jsonfeed(body, base_url=base_url, site_zone=zone)
    if wanted == "json":
        raise ParseError("expected a feed, got JSON that is not a JSON Feed")
    if wanted == "sitemap":
        if sniffed == "html":
            raise ParseError("expected a sitemap, got an HTML page")
        return parse_sitemap(valid_char_refs(body), base_url=base_url, limit=MAX_ITEMS,
                             site_zone=zone)
    if sniffed == "html":
        raise ParseError("expected a feed, got an HTML page" + _feeds_hint(body, base_url, content_type))
    # "feed" and "unknown": feedparser is the most forgiving reader we have; it raises a
    # ParseError naming what it saw when nothing comes out.
    return parse_feed(valid_char_refs(body), base_url=base_url, content_type=content_type,
                      fast=fast, site_zone=zone)


_FEED_TYPES = {"application/rss+xml", "application/atom+xml", "application/feed+json",
               "application/json", "application/rdf+xml"}
_HINT_HEAD_BYTES = 256 * 1024  # <link>s are in the <head>


def advertised_feeds(body: bytes, base_url: str, content_type: str | None = None) -> list[str]:
    """The feeds an HTML page links in its head (<link rel="alternate" type="application/rss+xml"
    href=…>, the autodiscovery convention), absolute, in page order."""
    try:
        root = lxml.html.document_fromstring(decode_html(body[:_HINT_HEAD_BYTES], content_type))
    except (etree.ParserError, ValueError):
        return []
    found: list[str] = []
    for link in root.iter("link"):
        rel = (link.get("rel") or "").lower().split()
        kind = (link.get("type") or "").split(";")[0].strip().lower()
        href = (link.get("href") or "").strip()
        if "alternate" in rel and kind in _FEED_TYPES and href:
            url = joined(base_url, href)
            if url.startswith(("http://", "https://")) and url not in found:
                found.append(url)
    return found


def _feeds_hint(body: bytes, base_url: str, content_type: str | None) -> str:
    """"; it links a feed: URL" for the error of a source set to a site's page: operators
    give the home page's URL where the feed's was meant (cf. miniflux's feed discovery)."""
    feeds = advertised_feeds(body, base_url, content_type)
    if not feeds:
        return ""
    more = f" (and {len(feeds) - 1} more)" if len(feeds) > 1 else ""
    return f"; the page links a feed: {feeds[0]}{more}"


def _ascii_head(body: bytes) -> bytes:
    """The first bytes as ASCII-compatible bytes (UTF-16 bodies re-encoded) for sniffing."""
    head = body[:4096]
    for bom, codec in ((codecs.BOM_UTF16_LE, "utf-16-le"), (codecs.BOM_UTF16_BE, "utf-16-be")):
        if head.startswith(bom):
            return head[2:].decode(codec, "ignore").encode("utf-8", "ignore")
    return _strip_bom(head)


def _strip_bom(data: bytes) -> bytes:
    return data[3:] if data.startswith(codecs.BOM_UTF8) else data
