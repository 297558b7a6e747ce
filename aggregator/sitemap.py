"""Read XML sitemaps, news sitemaps (<news:news>) and sitemap indexes into a ParsedDocument.

A news sitemap (https://www.google.com/schemas/sitemap-news/0.9) gives each story's title
and publication date; `image:loc` gives its lead image. A plain sitemap gives URLs only: the
items come with empty titles (normalize drops them unless full-text reading fills them in),
and a problem says so. A sitemap index lists other sitemaps, not stories: its items are
empty and the child sitemap URLs go in `ParsedDocument.child_urls`, newest first, for the
collector to fetch (`Collector._read_children`); children whose names say they list a site's
pages, categories, tags or authors (WordPress's, Ghost's) are left out.
Parsing uses lxml with `recover=True`, so a truncated file still yields its complete entries;
a malformed one is read again entry by entry, so a broken entry costs no other.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo
from typing import TypeVar
from urllib.parse import urlsplit

from lxml import etree

from aggregator.canonical import joined, page_key
from aggregator.errors import ParseError
from aggregator.model import ParsedDocument, ParsedItem
from aggregator.textclean import clean_inline, entry_documents, entry_starts, parse_date

_NEWS_NS = "http://www.google.com/schemas/sitemap-news/0.9"
_IMAGE_NS = "http://www.google.com/schemas/sitemap-image/1.1"
T = TypeVar("T")
# Words in a child sitemap's file name that say its entries are a site's pages, categories,
# tags, other taxonomies or authors, not its stories: WordPress core (wp-sitemap-posts-page-1,
# -taxonomies-category-1, -taxonomies-post_tag-1, -users-1), Yoast, Rank Math and AIOSEO
# (page-sitemap, category-sitemap, post_tag-sitemap, author-sitemap), Ghost (sitemap-pages,
# -tags, -authors).
_NOT_STORIES = frozenset({"page", "pages", "category", "categories", "tag", "tags", "taxonomy",
                          "taxonomies", "author", "authors", "user", "users"})


def parse_sitemap(body: bytes, *, base_url: str, limit: int | None = None,
                  site_zone: tzinfo = UTC) -> ParsedDocument:
    """Parse a sitemap body, at most `limit` of its stories (the newest; a problem says how
    many were left); raise ParseError when there is no <urlset> or <sitemapindex>.
    `site_zone`, the source's `timezone`: the zone of its times written without one (W3C
    Datetime wants an offset with a time, and sites leave it out); a day alone stays that
    day at midnight UTC."""
    parser = _parser()
    try:
        root = etree.fromstring(body, parser=parser)
    except etree.XMLSyntaxError as e:
        raise ParseError(f"sitemap is not XML: {e}") from e
    if root is None:
        raise ParseError("sitemap is not XML: nothing parseable")
    problems: list[str] = []
    errors = [err for err in parser.error_log if err.level >= etree.ErrorLevels.ERROR]
    if errors:
        problems.append(f"malformed XML recovered: {errors[0].message} (line {errors[0].line})")
    name = _local(root.tag)
    entry_name = "sitemap" if name == "sitemapindex" else "url"
    entries = _children(root, entry_name)
    if errors:
        entries = max(entries, _one_by_one(body, entry_name), key=len)
    if name == "sitemapindex":
        # Newest first (by <lastmod>; undated ones after, in document order): the collector
        # reads only the first few, and a news site's index grows a child a day.
        # The index itself and a child listed again are left out: the collector reads only
        # `CHILD_SITEMAPS` of them a round, and an index that lists its own URL (CMS plugins
        # do, as the first entry, dated today) had that slot go to an index it does not
        # follow, and a repeated child to a second read of the same stories.
        own = page_key(base_url)
        dated, seen, itself, repeated = [], {own}, False, 0
        for sm in entries:
            loc = _text(sm, "loc")
            url = joined(base_url, loc) if loc else ""
            if url:
                key = page_key(url)
                if key in seen:
                    itself = itself or key == own
                    repeated += key != own
                    continue
                seen.add(key)
                dated.append((parse_date(_text(sm, "lastmod"), site_zone), url))
        # A WordPress index lists its page, category, tag and author sitemaps beside its
        # posts' (Yoast's dated today, as a category's newest post is): they took the
        # collector's slots, and every category and author page became a "story". Left out
        # unless nothing else is listed; a source given such a child's URL still reads it.
        stories = [(when, url) for when, url in dated if not archive_sitemap(url)]
        archives = [url for when, url in dated if archive_sitemap(url)]
        children = tuple(_child_order(stories or dated))
        if stories and archives:
            problems.append(f"sitemap index: {len(archives)} child sitemaps of pages, categories,"
                            f" tags or authors skipped, such as {archives[0]}")
        if itself:
            problems.append("sitemap index lists itself as a child: not read again")
        if repeated:
            problems.append(f"sitemap index repeats {repeated} of its entries: each child read once")
        problems.append(f"sitemap index: {len(children)} child sitemaps in child_urls, no stories")
        return ParsedDocument(
            kind="sitemap", title="", items=(), problems=tuple(problems), child_urls=children
        )
    if name != "urlset":
        raise ParseError(f"not a sitemap: root element is <{name}>, not <urlset>/<sitemapindex>")
    # Every entry's time first, for the order (newest first, as a feed lists them; undated ones
    # after, in document order): sitemaps mostly list oldest first (WordPress's by post id,
    # 2,000 to a file), and the newest were the ones past `limit` and last in line for
    # full-text reading, whose per-round limit then went on pages of years ago while today's
    # stories waited. Then links are joined and items made in that order, up to `limit`: a
    # 10 MB sitemap of 98,000 entries spent half its parse joining the links of entries it
    # then dropped.
    dated: list[tuple[datetime | None, int, etree._Element, str]] = []
    for n, entry in enumerate(entries, start=1):
        fields = _fields(entry)
        loc = fields.get("loc", "")
        if not loc:
            problems.append(f"item {n}: no <loc>, skipped")
            continue
        news = entry.find(f"{{{_NEWS_NS}}}news")
        raw_date = (_ns_text(news, _NEWS_NS, "publication_date") if news is not None else "")
        raw_date = raw_date or fields.get("lastmod", "")
        published_at = parse_date(raw_date, site_zone)
        if raw_date and published_at is None:
            problems.append(f"item {n}: invalid date {raw_date[:40]!r}, left empty")
        dated.append((published_at, n, entry, loc))
    items: list[ParsedItem] = []
    ordered = _newest_first((when, (when, n, entry, loc)) for when, n, entry, loc in dated)
    for k, (published_at, n, entry, loc) in enumerate(ordered):
        if limit is not None and len(items) >= limit:
            # Those that would have been items: a mailto: or ftp: entry is dropped anyway, and
            # counted here it told the operator of stories the source never had.
            past = sum(_http_link(base_url, later) for *_, later in ordered[k:])
            if past:
                problems.append(f"{past} items past the first {limit} skipped")
            break
        url = joined(base_url, loc)
        if not url.startswith(("http://", "https://")):
            problems.append(f"item {n}: not an http(s) link {loc[:60]!r}, skipped")
            continue
        news = entry.find(f"{{{_NEWS_NS}}}news")
        title, keywords = "", ""
        if news is not None:
            title = clean_inline(_ns_text(news, _NEWS_NS, "title"))
            keywords = _ns_text(news, _NEWS_NS, "keywords")
        image = ""
        image_el = entry.find(f"{{{_IMAGE_NS}}}image")
        if image_el is not None:
            image = _ns_text(image_el, _IMAGE_NS, "loc")
        items.append(
            ParsedItem(
                url=url,
                title=title,
                image_url=joined(url, image) if image else "",
                published_at=published_at,
                guid=loc,
                tags=tuple(k.strip() for k in keywords.split(",") if k.strip()),
            )
        )
    return ParsedDocument(kind="sitemap", title="", items=tuple(items), problems=tuple(problems))


def _http_link(base_url: str, loc: str) -> bool:
    """Whether `loc` joins to an http(s) link, as an item's must (pure). The common entry, an
    absolute ASCII http(s) URL without IPv6 brackets, is one without joining it (nothing in
    it can fail the join, `joined`): the 93,000 entries past `MAX_ITEMS` of a 10 MB sitemap
    took seconds to join, and the rest are few."""
    if loc.startswith(("http://", "https://")) and loc.isascii() and "[" not in loc and "]" not in loc:
        return True
    return joined(base_url, loc).startswith(("http://", "https://"))


def _newest_first(entries: Iterable[tuple[datetime | None, T]]) -> list[T]:
    """The entries' values by their time, newest first; undated ones last, in order (pure)."""
    keyed = sorted((when is None, -when.timestamp() if when else 0.0, n, value)
                   for n, (when, value) in enumerate(entries))
    return [value for *_, value in keyed]


def archive_sitemap(url: str) -> bool:
    """Whether a child sitemap's file name says it lists pages, categories, tags, other
    taxonomies or authors rather than stories (pure). The file name only: "?page=2" is
    the second part of one sitemap (Drupal's)."""
    name = urlsplit(url).path.rsplit("/", 1)[-1].lower()
    return not _NOT_STORIES.isdisjoint(re.split(r"[^a-z]+", name))


def _child_order(children: list[tuple[datetime | None, str]]) -> list[str]:
    """An index's child URLs newest first (pure): by <lastmod>, then the undated ones, each
    run of one name numbered (wp-sitemap-posts-post-1.xml, -2, -3; post-sitemap.xml,
    post-sitemap2.xml) highest number first. WordPress core dates none of its children and
    numbers its post sitemaps oldest first, so the collector read the oldest posts' files."""
    first_seen: dict[str, int] = {}
    keyed = []
    for n, (when, url) in enumerate(children):
        parts = urlsplit(url)
        name = parts.path.rsplit("/", 1)[-1] + (f"?{parts.query}" if parts.query else "")
        stem = first_seen.setdefault(re.sub(r"\d+", "", name), n)
        number = tuple(-int(d) for d in re.findall(r"\d+", name)) or (0,)
        keyed.append((when is None, -when.timestamp() if when else 0.0, stem, number, n, url))
    return [url for *_, url in sorted(keyed)]


def _parser() -> etree.XMLParser:
    return etree.XMLParser(recover=True, resolve_entities=False, no_network=True, huge_tree=False)


# Where the root's start tag ends (each entry's start: textclean.entry_starts).
_ROOT_START = re.compile(rb"<(?:[\w.-]+:)?(?:urlset|sitemapindex)\b[^>]*>")


def _one_by_one(body: bytes, local: str) -> list[etree._Element]:
    """A malformed sitemap's <url> (or <sitemap>) entries, each parsed on its own after the
    document's head (XML declaration and root start tag, for the encoding and namespaces).
    libxml2's recovery ends the document at the first end tag that does not match: one
    broken entry (a stray "<" in <news:publication_date<>, a NUL in a tag name) closed the
    <urlset>, and every entry after it was lost, 193 of 195 in a news sitemap, with only
    "malformed XML recovered" said. Read so, a broken entry costs itself alone."""
    root = _ROOT_START.search(body)
    if root is None:
        return []
    head = body[:root.end()]
    entries, parser = [], _parser()
    for document in entry_documents(body, head, entry_starts(body, local, root.end())):
        try:
            wrapper = etree.fromstring(document, parser=parser)
        except etree.XMLSyntaxError:
            continue
        entries += [] if wrapper is None else _children(wrapper, local)[:1]
    return entries


def _children(root: etree._Element, local: str) -> list[etree._Element]:
    # The sitemap namespace is often missing or misspelled in the wild; match local names.
    return [el for el in root if isinstance(el.tag, str) and _local(el.tag) == local]


def _local(tag: str) -> str:
    """A tag's local name. Not etree.QName's: it refuses the tag lxml gives an element whose
    prefix is not declared ('video:video', a sitemap that forgot its xmlns:video), and the
    ValueError went out of the parser: the whole sitemap was lost as a bug."""
    return tag.rpartition("}")[2].rpartition(":")[2]


def _fields(el: etree._Element) -> dict[str, str]:
    """An entry's child elements' texts by local name, the first of each (one pass over its
    children, where `_text` takes one a field)."""
    out: dict[str, str] = {}
    for child in el:
        if isinstance(child.tag, str):
            out.setdefault(_local(child.tag), child.text or "")
    return {k: v.strip() for k, v in out.items()}


def _text(el: etree._Element, local: str) -> str:
    for child in el:
        if isinstance(child.tag, str) and _local(child.tag) == local:
            return (child.text or "").strip()
    return ""


def _ns_text(el: etree._Element, ns: str, local: str) -> str:
    child = el.find(f".//{{{ns}}}{local}")
    return (child.text or "").strip() if child is not None else ""
