"""Read RSS 0.9x/1.0/2.0 and Atom bodies with feedparser into a ParsedDocument.

Takes bytes, never a URL (feedparser would fetch a URL itself, past our fetcher's limits).
feedparser's defaults (HTML sanitizing, relative-URI resolution) stay on: BASELINES.md §4
measures them at ~0.35-0.66 ms per item, cheap next to embedding, and they are what turns
hostile markup into text we can trust. Raises ParseError only when nothing usable came out.
"""

from __future__ import annotations

import io
import re
import xml.sax
from datetime import UTC, datetime, tzinfo
from typing import Any
from urllib.parse import urlsplit

import feedparser
from lxml import etree

from aggregator import feeddates  # registers the reader of localised dates; site_local
from aggregator.canonical import joined
from aggregator.dateline import written_date
from aggregator.errors import ParseError
from aggregator.fastfeed import read_fast
from aggregator.model import ParsedDocument, ParsedItem
from aggregator.textclean import (
    clean_inline,
    entry_documents,
    entry_starts,
    feed_html_to_text,
    html_fragment,
    parse_date,
    struct_time_to_utc,
)

# sy:updatePeriod units (RSS 1.0 Syndication module), in seconds.
_PERIOD_S = {
    "hourly": 3600,
    "daily": 86400,
    "weekly": 604800,
    "monthly": 2592000,
    "yearly": 31536000,
}
# Ad-server and feed-proxy images (FeedBurner "~r/…/~4/" pixels, Pheedo share buttons).
_JUNK_IMG_HOST = re.compile(
    r"feedburner\.com|pheedo\.com|doubleclick\.net|/~4/|[/._-]pixel\.(gif|png)|/pixel[/?]", re.I
)
# Ad networks' click links: an item whose link is one is an advertisement, not a story. The
# Washington Post's feed carried three "Featured Advertiser" items linking ads.pheedo.com
# (node-feedparser/wapowellness.xml), each stored as a story.
_AD_LINK_HOST = re.compile(r"(^|\.)(pheedo\.com|doubleclick\.net)$|^(ads|adclick|feedads)\.", re.I)
# Labels of share buttons; plain "Facebook" in alt text can be a real photo of the company.
_JUNK_IMG_LABEL = re.compile(r"\b(add to \w+|share (on|this|via)|email this|subscribe)\b")
# The lxml fast path for well-formed documents (aggregator.fastfeed). Off only to measure
# the feedparser-only baseline in a whole collection round (benchmarks/collect_bench.py).
FAST_PATH = True
_IMG_EXT = re.compile(r"\.(jpe?g|png|gif|webp|avif)(\?|$)", re.I)
_PLAIN_IMAGE_KEYS = ("bigimage", "smallimage")  # aggregator.fastfeed._COPY_KEYS has them too


def parse_feed(
    body: bytes, *, base_url: str, content_type: str | None = None, fast: bool | None = None,
    site_zone: tzinfo = UTC,
) -> ParsedDocument:
    """Parse an RSS/Atom/RDF body; broken items are skipped and listed in `problems`.

    Well-formed documents take the lxml fast path (aggregator.fastfeed, same results);
    `fast=False`, or anything the fast path does not model, goes through feedparser.
    `site_zone`, the source's `timezone`: the zone of its dates written without one.
    """
    use_fast = FAST_PATH if fast is None else fast
    if use_fast:
        got = read_fast(body, base_url=base_url, content_type=content_type)
        if got is not None:
            feed, entries = got
            atom = bool(feed.get("_atom"))
            # feedparser resolves relative <img src> in markup against the document's URL;
            # the fast path leaves markup as it is, so _first_img does that step instead.
            return _document(feed, entries, base_url, [], markup_base=base_url,
                             plain_bodies=atom or _has_bare_content(body),
                             bodies=atom or _has_bodies(body), site_zone=site_zone)
    headers = {"content-location": base_url, "content-type": _xml_content_type(content_type)}
    problems: list[str] = []
    thinned = _few_attributes(body)
    if len(thinned) < len(body):
        body = thinned
        problems.append(f"an element with over {MAX_ATTRIBUTES} attributes: the rest left out")
    d = _feedparser(body, headers)
    entries = d.entries
    exc = d.get("bozo_exception")
    if d.get("bozo") and exc is not None:
        if isinstance(exc, xml.sax.SAXException):
            problems.append(f"malformed XML recovered: {_one_line(exc)}")
            entries = _one_by_one(body, headers, entries)
        elif "encoding" in type(exc).__name__.lower():
            problems.append(f"encoding: {_one_line(exc)}")
    if not d.get("version") and not entries:
        raise ParseError(_why_not_a_feed(body, exc))
    atom = str(d.get("version") or "").startswith("atom")
    return _document(d.feed, entries, base_url, problems,
                     plain_bodies=atom or _has_bare_content(body),
                     bodies=atom or _has_bodies(body), site_zone=site_zone)


def _feedparser(body: bytes, headers: dict[str, str]) -> Any:
    try:
        # No sanitizing: every field is turned into plain text here (textclean drops script,
        # style and the like) and escaped again when rendered, and feedparser's sanitizer is
        # ~45 % of its parse time (BASELINES.md, feedparser section).
        return feedparser.parse(io.BytesIO(body), response_headers=headers, sanitize_html=False)
    except Exception as e:  # feedparser is defensive, but a crash here must not kill a round
        raise ParseError(f"feed parser failed: {type(e).__name__}: {e}") from e


def _one_by_one(body: bytes, headers: dict[str, str], read: list) -> list:
    """A malformed feed's items, each read by feedparser on its own after the document's head
    (all before the first item). Its lenient reader takes a stray "<" in an item's text
    ("the boar<d did not act") or a broken end tag (</des&#0;cription>) for an element
    left open, and the items after it went into it: 11 of the 20 stories of TPM's feed were
    lost so, with only "malformed XML recovered" said. Read so, a broken item costs itself.
    `read`, the items read in one go, stays when there are no fewer (the common case: a stray
    "&" costs no item, and the second reading nothing)."""
    starts = entry_starts(body, "item|entry")
    if len(starts) <= len(read):
        return read
    entries = []
    for document in entry_documents(body, body[:starts[0]], starts):
        try:
            entries += _feedparser(document, headers).entries[:1]
        except ParseError:
            continue
    return max(read, entries, key=len)


# feedparser's strict (expat) reader finds each attribute of an element by a scan of all of
# them (xml.sax's AttributesNSImpl.getValueByQName), so an element's attributes cost the square
# of their number: 32,000 on one <item> (350 KB) took 15 s, a 5 MB body of them would hold a
# parse worker for ~50 min. No feed element has more than a handful; past MAX_ATTRIBUTES they go.
MAX_ATTRIBUTES = 100
_ATTRIBUTE = rb"""\s+[^\s=<>/"']+\s*=\s*(?:"[^"]*"|'[^']*')"""
_EXTRA_ATTRIBUTES = re.compile(rb"((?:%s){%d})(?:%s)+" % (_ATTRIBUTE, MAX_ATTRIBUTES, _ATTRIBUTE))
# A tag that long may have that many (the full search costs ~0.1 s a MB, this one 5 ms).
_LONG_TAG = re.compile(rb"<[^<>]{2000}")


def _few_attributes(body: bytes) -> bytes:
    """`body` with at most MAX_ATTRIBUTES attributes to an element (pure)."""
    return _EXTRA_ATTRIBUTES.sub(rb"\1", body) if _LONG_TAG.search(body) else body


def _document(feed: Any, entries: list, base_url: str, problems: list[str], *,
              markup_base: str | None = None, plain_bodies: bool = False,
              bodies: bool = True, site_zone: tzinfo = UTC) -> ParsedDocument:
    home = str(feed.get("link") or "")
    items: list[ParsedItem] = []
    for n, entry in enumerate(entries, start=1):
        item, problem = _item(entry, n, base_url, markup_base, plain_bodies, bodies, site_zone)
        if problem:
            problems.append(problem)
        if item is not None:
            items.append(item)
    if entries and not items:
        raise ParseError(f"feed has {len(entries)} items but none is usable: {problems[-1]}")
    return ParsedDocument(
        kind="feed",
        title=clean_inline(feed.get("title")),
        items=tuple(items),
        ttl_s=_ttl_s(feed),
        problems=tuple(problems),
        home_url=joined(base_url, home) if home else "",
    )


def _item(entry: Any, n: int, base_url: str, markup_base: str | None = None,
          plain_bodies: bool = False, bodies: bool = True,
          site_zone: tzinfo = UTC) -> tuple[ParsedItem | None, str]:
    link = _link(entry, base_url)
    title = clean_inline(entry.get("title"))
    if not link:
        return None, f"item {n}: no link, skipped" + (f" ({title[:60]!r})" if title else "")
    host = urlsplit(link).hostname or ""
    if _AD_LINK_HOST.search(host):
        return None, f"item {n}: an advertisement (its link goes to {host}), skipped"
    content_html = _content_html(entry, plain_bodies, bodies)
    summary_html = str(entry.get("summary") or "")
    text = feed_html_to_text(content_html)
    summary = feed_html_to_text(summary_html)
    if summary and summary == text:
        # feedparser copies Atom <content> into summary when there is no <summary>.
        summary = ""
    published_at = _entry_time(entry, "published", site_zone) or _entry_time(
        entry, "updated", site_zone
    )
    problem = ""
    raw_date = entry.get("published") or entry.get("updated")
    if published_at is None and raw_date:
        # feedparser reads no RFC 822 date without a zone ("Tue, 10 Jun 2025 04:00:00") nor
        # one with its day named in another language ("Di, 10 Jun 2025 …"); the story then
        # took the time it was collected. Read as JSON Feed and sitemap dates are (naive: in
        # the source's `timezone`, else UTC).
        # Nor "December 7, 2026" or "Dec 7, 2026 10:00 AM EST", as pages write dates.
        published_at = (None if feeddates.impossible_offset(str(raw_date)) else
                        parse_date(str(raw_date), site_zone) or written_date(str(raw_date), site_zone))
    if published_at is None and raw_date:
        problem = f"item {n}: invalid date {str(raw_date)[:40]!r}, left empty"
    image_url, image_width_px = _image(entry, content_html or summary_html, link,
                                       entry.get("_markup_base") or markup_base)
    item = ParsedItem(
        url=link,
        title=title,
        summary=summary,
        text=text,
        author=_author(entry),
        image_url=image_url,
        image_width_px=image_width_px,
        published_at=published_at,
        guid=str(entry.get("id") or ""),
        tags=tuple(
            t
            for t in (
                clean_inline(tag.get("term") or tag.get("label")) for tag in entry.get("tags") or ()
            )
            if t
        ),
    )
    return item, problem


def _entry_time(entry: Any, key: str, site_zone: tzinfo) -> datetime | None:
    """An entry's `published` or `updated` time in UTC: feedparser's reading (the fast path
    uses its reader too), or, on a source with a `timezone`, the source's reading of a time
    written without a zone, which feedparser took for UTC."""
    raw = entry.get(key)
    if raw and feeddates.impossible_offset(str(raw)):
        return None  # feedparser reads "+2400" as an offset: a day off
    read = struct_time_to_utc(entry.get(f"{key}_parsed"))
    if site_zone is not UTC and raw:
        return feeddates.site_local(str(raw), site_zone, read) or read
    return read


def _link(entry: Any, base_url: str) -> str:
    # Feed proxies (FeedBurner, Pheedo) put a click-tracking redirect in <link> and the real
    # article URL in their own origLink element; the real one is the story's identity.
    candidates = [entry.get("feedburner_origlink"), entry.get("pheedo_origlink"), entry.get("link")]
    candidates += [
        ln.get("href")
        for ln in entry.get("links") or ()
        if ln.get("rel", "alternate") == "alternate"
    ]
    # RSS <guid isPermaLink="true"> (the default) is a link when it looks like one.
    guid = entry.get("id")
    if guid and entry.get("guidislink", True):
        candidates.append(guid)
    for raw in candidates:
        if raw and isinstance(raw, str):
            url = joined(base_url, raw.strip())
            if url.startswith(("http://", "https://")):
                return url
    return ""


def _content_html(entry: Any, plain_bodies: bool = False, bodies: bool = True) -> str:
    """The item's body: `plain_bodies` says a text/plain `content` is one (Atom, and RSS with
    a bare <content>); `bodies` False, an RSS document with no body element at all."""
    contents = entry.get("content") or ()
    if not plain_bodies and not bodies:
        return ""  # an RSS document with no body element: whatever is in `content` is not one
    if not plain_bodies:
        # In RSS, feedparser files a second description-like element (media:description,
        # dc:description) under `content` as text/plain; content:encoded, the one real body,
        # is text/html. That second one is a photo's caption: 17 of NYT's 25 items had it
        # stored as the story's body ("Gaza City. Hamas seized control…"), read before the
        # teaser where a body is preferred, and a story stored so by one source was never
        # read in full by another (a stored body means "read", `Store.urls_with_text`).
        # Atom's type="text" content is a body and stays, as does an RSS document's plain
        # text in a bare <content> (`_has_bare_content`). A caption typed as HTML (the Daily
        # Mail's media:description type="html") looks like content:encoded here; in a
        # document with no body element at all (`_has_bodies`) it goes with the rest.
        contents = [c for c in contents if c.get("type") != "text/plain"]
    # Prefer HTML bodies over plain alternatives; take the longest (some feeds send a teaser too).
    values = [str(c.get("value") or "") for c in contents]
    return max(values, key=len) if values else ""


# The elements feedparser reads an RSS item's body from: content:encoded (any prefix),
# fullitem, xhtml:body, a bare <content>. Not media:content, which is a picture.
_RSS_BODY = re.compile(rb"<(?:[\w.-]+:)?(?:encoded|fullitem)[\s>]|<(?:xhtml:)?body[\s>]|<content[\s>]")


def _has_bodies(body: bytes) -> bool:
    """Whether an RSS document holds any element that carries an item's body (a cheap byte
    search; True on doubt, e.g. a <body> inside CDATA, keeps the per-type rule only)."""
    return _RSS_BODY.search(body) is not None


# A non-namespaced <content> in an RSS item: some feeds' article body, in place of
# content:encoded. feedparser types it text/plain unless it says otherwise or looks like HTML.
_BARE_CONTENT = re.compile(rb"<content[\s>]")


def _has_bare_content(body: bytes) -> bool:
    """Whether an RSS document has a bare <content>, whose plain text is the item's body and
    no caption. Per document, as feedparser's entries do not say which element filled
    `content`: in such a document an item with only a caption has it as its body."""
    return _BARE_CONTENT.search(body) is not None


def _author(entry: Any) -> str:
    detail = entry.get("author_detail") or {}
    name = clean_inline(detail.get("name")) if detail else ""
    if not name:
        name = clean_inline(entry.get("author"))
    # RSS <author> is "email (Name)" by the spec; keep the name, drop a bare email.
    m = re.fullmatch(r"\S+@\S+\s*\((.+)\)", name)
    if m:
        name = m.group(1).strip()
    elif re.fullmatch(r"\S+@\S+\.\S+", name):
        name = ""
    return name


def _image(entry: Any, markup: str, link: str, markup_base: str | None = None) -> tuple[str, int]:
    """The item's image and the width the feed gives for it (0: none given)."""
    images = [
        media
        for media in entry.get("media_content") or ()
        if media.get("url")
        and (
            (media.get("medium") or "").lower() == "image"
            or (media.get("type") or "").lower().startswith("image/")
            or (not media.get("medium") and not media.get("type") and _IMG_EXT.search(media["url"]))
        )
    ]
    # Publishers list several renditions (the Guardian: 140 and 460 px); cards want the
    # largest. max() keeps the first of equals, so feeds without widths keep their order.
    thumbs = [thumb for thumb in entry.get("media_thumbnail") or () if thumb.get("url")]
    for media in (images, thumbs):
        if media:
            best = max(media, key=lambda m: _int(m.get("width")))
            return joined(link, best["url"]), _int(best.get("width"))
    for enc in entry.get("enclosures") or ():
        href = enc.get("href") or enc.get("url")
        if href and (str(enc.get("type") or "").startswith("image/") or _IMG_EXT.search(href)):
            return joined(link, href), 0
    # Livemint's plain <bigimage> (600x338) and <smallimage> (250x250) item elements, its
    # only images (RSParser/livemint.xml: 25 of 25 items). feedparser keeps an element it
    # does not know under its name, and fastfeed copies these two the same way; the plain
    # <image> beside them it reads as a channel's logo and drops (and <thumbnail> is 90 px).
    for key in _PLAIN_IMAGE_KEYS:
        value = str(entry.get(key) or "").strip()
        if value and _IMG_EXT.search(value):
            return joined(link, value), 0
    # A podcast-style <itunes:image href> in the item (feeds made by podcast tooling carry
    # a news site's article pictures so, often as their only image; feedparser reads it as the
    # item's `image`). The channel's own is its logo, never an item's.
    itunes = entry.get("image")
    href = str(itunes.get("href") or "").strip() if isinstance(itunes, dict) else ""
    if href:
        return joined(link, href), 0
    return _first_img(markup, link, markup_base), 0


def _int(value: object) -> int:
    text = str(value or "").strip()
    return int(text) if text.isdigit() else 0


def _first_img(markup: str, base: str, markup_base: str | None = None) -> str:
    if "<img" not in markup:
        return ""
    try:
        root = html_fragment(markup)
    except (etree.ParserError, ValueError):
        return ""
    for img in root.iter("img"):
        src = (img.get("src") or img.get("data-src") or "").strip()
        if src and not src.startswith("data:") and not _is_junk_img(img, src):
            src = joined(markup_base, src) if markup_base else src
            return joined(base, src) if src else ""
    return ""


def _is_junk_img(img: etree._Element, src: str) -> bool:
    """Tracking pixels and share buttons that feeds append to every item's content."""
    for attr in ("width", "height"):
        size = (img.get(attr) or "").strip().removesuffix("px")
        if size.isdigit() and int(size) <= 2:
            return True
    label = f"{img.get('alt') or ''} {img.get('title') or ''}".lower()
    return bool(_JUNK_IMG_HOST.search(src) or _JUNK_IMG_LABEL.search(label))


def _ttl_s(feed: Any) -> int | None:
    ttl = str(feed.get("ttl") or "").strip()
    if ttl.isdigit() and int(ttl) > 0:
        return int(ttl) * 60
    period = _PERIOD_S.get(str(feed.get("sy_updateperiod") or "").strip().lower())
    if period is None:
        return None
    freq = str(feed.get("sy_updatefrequency") or "1").strip()
    frequency = int(freq) if freq.isdigit() and int(freq) > 0 else 1
    return max(1, period // frequency)


def _xml_content_type(content_type: str | None) -> str:
    # feedparser follows RFC 3023: text/xml without a charset means us-ascii, which overrides
    # the document's own declaration. Servers mean "see the document", so only pass a
    # content type through when it names a charset; otherwise the XML declaration decides.
    if content_type and "charset" in content_type.lower():
        return content_type
    return "application/xml"


def _why_not_a_feed(body: bytes, exc: object) -> str:
    head = body[:2048].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html")) or b"<html" in head:
        return "expected a feed, got an HTML page"
    if not body.strip():
        return "empty body"
    detail = f" ({_one_line(exc)})" if exc is not None else ""
    return f"not a feed: no RSS, Atom or RDF root element{detail}"


def _one_line(exc: object) -> str:
    return " ".join(str(exc).split())[:200]
