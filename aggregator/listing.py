"""Read an HTML listing page (a section front) into stories with the source's CSS selectors.

lxml + cssselect over the decoded page. `Selectors.item` picks each story block; the other
selectors are evaluated inside that block. Links resolve against the page's <base href> if
it has one, else the page URL. Only parsing: the page arrives as bytes.
"""

from __future__ import annotations

import re
from collections import defaultdict
from datetime import datetime, tzinfo
from typing import NamedTuple

import lxml.html
from cssselect import SelectorError
from lxml import etree

from aggregator.canonical import joined, page_key
from aggregator.dateline import dateline, numeric_date, relative_date, with_clock, zoned_clock
from aggregator.errors import ParseError
from aggregator.model import ParsedDocument, ParsedItem, Selectors, site_zone
from aggregator.textclean import clean_inline, decode_html, html_to_text, parse_date

# Lazy-loading attributes first: such a page's `src` is a placeholder (a data: URI, or a
# file: /static/blank.gif, lazy.svg), and the real image is in data-src or a srcset.
_LAZY_ATTRS = ("data-src", "data-lazy-src", "data-original")
_SRCSET_ATTRS = ("data-srcset", "data-lazy-srcset", "srcset")
_DESCRIPTOR_COMMA = re.compile(r"(\s[\d.]+[wx]),(?=\S)")
_DATE_ATTRS = ("datetime", "content", "data-date", "title")


def parse_listing(
    body: bytes, *, base_url: str, selectors: Selectors, content_type: str | None = None,
    now: datetime | None = None,
) -> ParsedDocument:
    """Items found by `selectors`; ParseError when the page is empty or no item matches.
    `now`, the time the page was fetched, dates "2 hours ago" (unread without it)."""
    text = decode_html(body, content_type)
    if not text.strip():
        raise ParseError("empty body")
    try:
        root = lxml.html.document_fromstring(text)
    except (etree.ParserError, ValueError) as e:
        raise ParseError(f"HTML page could not be parsed: {e}") from e
    base = base_url
    base_el = root.find(".//base[@href]")
    if base_el is not None:
        base = joined(base_url, base_el.get("href", "").strip()) or base_url
    try:
        blocks = root.cssselect(selectors.item)
    except SelectorError as e:
        raise ParseError(f"bad CSS selector {selectors.item!r}: {e}") from e
    if not blocks:
        raise ParseError(f"HTML listing: item selector {selectors.item!r} matched nothing")
    when = _When(now, _language(root), site_zone(selectors))
    items: list[ParsedItem] = []
    problems: list[str] = []
    seen: set[str] = set()
    missed: dict[str, list[str]] = defaultdict(list)  # selectors that found nothing, by field
    for n, block in enumerate(blocks, start=1):
        try:
            item = _item(block, selectors, base, missed, when)
        except SelectorError as e:
            raise ParseError(f"bad CSS selector in {selectors!r}: {e}") from e
        if isinstance(item, str):
            problems.append(f"item {n}: {item}")
            continue
        if item.url in seen:  # teasers often link one story twice (image and headline)
            continue
        seen.add(item.url)
        items.append(item)
    if not items:
        raise ParseError(f"HTML listing: {len(blocks)} blocks matched but none had a link "
                         f"(link selector {selectors.link!r})")
    title_el = root.find(".//title")
    return ParsedDocument(
        kind="html",
        title=clean_inline(title_el.text_content()) if title_el is not None else "",
        items=tuple(items),
        # First: `collect` names the first problem when no item is usable.
        problems=(*selector_misses(selectors, missed, len(blocks) - len(problems)), *problems),
        home_url=base_url,
        next_url=(next_page(root, base, base_url)
                  or _selected_next(root, selectors.next, base, page_key(base_url))),
    )


def next_page(root: etree._Element, base: str, page_url: str = "") -> str:
    """The page after this one, as the page links it (`<link rel="next">` in its head, or an
    `<a rel="next">`: WordPress's, Ghost's and most pagers' markup), absolute; "" for none.
    Not a link to `page_url` itself (by `page_key`: "#more", tracking parameters): a pager
    whose last page names itself "next" has no next page, yet `sources check`'s dry run
    (`Collector.check`) gave that page as its next, and such a rel=next hid the source's
    `next` selector, where collection (comparing by `page_key`) stopped."""
    own = page_key(page_url) if page_url else ""
    for el in root.iter("link", "a"):
        if "next" in (el.get("rel") or "").lower().split() and (href := (el.get("href") or "").strip()):
            url = joined(base, href)
            if url.startswith(("http://", "https://")) and page_key(url) != own:
                return url
    return ""


def _selected_next(root: etree._Element, selector: str, base: str, own: str) -> str:
    """The page after this one by the source's `next` selector, for pagers without rel=next
    ("Older stories", "Weiter"): the first match's link, absolute; "" for none, and for a
    link to the page itself (`own`, its `page_key`), as `next_page`."""
    if not selector:
        return ""
    try:
        found = root.cssselect(selector)
    except SelectorError as e:
        raise ParseError(f"bad CSS selector {selector!r}: {e}") from e
    href = _href(found[0]) if found else ""
    url = joined(base, href) if href else ""
    return url if url.startswith(("http://", "https://")) and page_key(url) != own else ""


def _href(el: etree._Element) -> str:
    """The link of `el`: its href, or a non-<a>'s first <a href> inside (a card, an <li>)."""
    href = el.get("href") or ""
    if not href and el.tag != "a":
        inner = el.find(".//a[@href]")
        href = inner.get("href", "") if inner is not None else ""
    return href.strip()


def selector_misses(selectors: Selectors, missed: dict[str, list[str]], linked: int) -> list[str]:
    """One problem per optional selector that matched nothing in some of the `linked` items,
    and one for a date selector whose text is no date (pure). A typo in one, or a site's
    redesign, left every story without its date, image or summary (or, for the title,
    without a story), and nothing said which selector it was."""
    out = []
    for name in ("title", "summary", "date", "image"):
        if missed.get(name):
            also = "; the link's text is their title" if name == "title" else ""
            out.append(f"{name} selector {getattr(selectors, name)!r} matched nothing in "
                       f"{len(missed[name])} of {linked} items{also}")
    if undated := missed.get("date_text"):
        out.append(f"date selector {selectors.date!r}: no date read in {len(undated)} of "
                   f"{linked} items (such as {undated[0][:60]!r})")
    return out


class _When(NamedTuple):
    """What a date as readers see it is read against: the fetch time, the page's language,
    the zone of the times it writes without one (the source's `timezone`, else UTC)."""

    now: datetime | None
    lang: str
    zone: tzinfo


def _language(root: etree._Element) -> str:
    """The page's language: <html lang>, else its og:locale ("de_DE"); "" when unsaid."""
    lang = root.get("lang") or root.get("{http://www.w3.org/XML/1998/namespace}lang") or ""
    if not lang.strip():
        locale = root.find(".//meta[@property='og:locale']")
        lang = locale.get("content", "") if locale is not None else ""
    return lang.strip()


def _item(block: etree._Element, selectors: Selectors, base: str,
          missed: dict[str, list[str]], when: _When) -> ParsedItem | str:
    link_el = _first(block, selectors.link)
    href = _href(link_el) if link_el is not None else ""
    if not href:
        return "no link, skipped"
    url = joined(base, href)
    if not url.startswith(("http://", "https://")):
        return f"not an http(s) link {href[:60]!r}, skipped"

    def found(name: str) -> etree._Element | None:
        """The element of an optional selector, its miss noted (None when not configured)."""
        selector = getattr(selectors, name)
        el = _first(block, selector) if selector else None
        if selector and el is None:
            missed[name].append("")
        return el

    title_el = found("title") if selectors.title else link_el
    title = clean_inline(_text(title_el if title_el is not None else link_el))
    summary_el = found("summary")
    summary = _text(summary_el) if summary_el is not None else ""
    published_at = None
    if (date_el := found("date")) is not None:
        values = [date_el.get(a) for a in _DATE_ATTRS] + [date_el.text_content()]
        dates = (parse_date(v, when.zone) for v in values if v)
        published_at = next((d for d in dates if d), None)
        # A date as the page writes it for readers ("November 25, 2026", "25. November
        # 2026", "25 novembre 2026", "25.11.2026", "11/25/2026": the reading that is a date,
        # else the page language's), at the time of day written beside it ("6 Dec 2026,
        # 14:05"); "vor 2 Stunden", "yesterday", "14:05 GMT" alone (at the fetch time). Only
        # machine formats were read, and such a listing's stories had no date at all (they
        # sorted as new whatever their age); then only the day, in no order within it.
        text = date_el.text_content()
        if published_at is None and (day := dateline(text) or numeric_date(text, when.lang)):
            published_at = with_clock(day, text, when.now, when.zone)
        if published_at is None and when.now is not None:
            # Without a `timezone`, a time alone must say its zone ("14:05 GMT").
            site_zone = when.zone if selectors.timezone else None
            published_at = (relative_date(text, when.now, when.zone)
                            or zoned_clock(text, when.now, site_zone))
        if published_at is None:
            missed["date_text"].append(clean_inline(text))
    img_el = found("image")
    image = _image(img_el) if img_el is not None else ""
    return ParsedItem(
        url=url,
        title=title,
        summary=summary,
        image_url=joined(base, image) if image else "",
        published_at=published_at,
    )


def _image(el: etree._Element) -> str:
    """The image an <img> (or <meta content>) shows once loaded: a lazy-loading attribute's,
    else the widest of a srcset, else src. `src` first gave the placeholder of a lazy page
    (its blank.gif as every story's image), and an image only in a srcset gave none."""
    values = [el.get(a, "").strip() for a in _LAZY_ATTRS]
    values += [widest(el.get(a, "")) for a in _SRCSET_ATTRS]
    values += [el.get("src", "").strip(), el.get("content", "").strip()]
    return next((v for v in values if v and not v.startswith("data:")), "")


def widest(srcset: str) -> str:
    """The candidate of a srcset ("a.jpg 320w, b.jpg 640w" or "a.jpg 1x, b.jpg 2x") with the
    largest descriptor; the first when none has one (pure). Read as the HTML standard reads
    it, by whitespace: a URL may hold commas (an image service's /w_320,h_200/)."""
    best, best_size = "", -1.0
    url, size = "", 0.0
    spaced = _DESCRIPTOR_COMMA.sub(r"\1, ", srcset)  # "a.jpg 1x,b.jpg 2x"
    for token in [*spaced.split(), ","]:
        ends = token.endswith(",")
        token = token.rstrip(",")
        if not url:
            url, size = token, 0.0
        elif token[-1:] in ("w", "x"):
            try:
                size = float(token[:-1])
            except ValueError:
                pass
        if ends and url:
            if size > best_size and not url.startswith("data:"):
                best, best_size = url, size
            url = ""
    return best


def _text(el: etree._Element) -> str:
    """An element's text as a reader sees it. lxml's text_content() joins its pieces with
    nothing between: a promo link holding a kicker and a headline (`<a><span>Politics</span>
    <h3>Ceasefire holds</h3></a>`) read "PoliticsCeasefire holds", a teaser of two
    paragraphs "One.Two.", and a <script> inside came along as words."""
    return html_to_text(lxml.html.tostring(el, encoding="unicode", with_tail=False))


def _first(block: etree._Element, selector: str) -> etree._Element | None:
    if not selector:
        return None
    # ":scope" is the block itself, for listings where the item *is* the link.
    if selector.strip() == ":scope":
        return block
    found = block.cssselect(selector)
    return found[0] if found else None
