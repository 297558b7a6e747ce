"""Read an article page: main text and metadata with trafilatura, og:image as a fallback.

Pure: HTML bytes and the page URL in, a frozen Article out; fetching is the caller's job.
Raises ParseError when the page holds no article text. trafilatura decodes the bytes itself
(declared or sniffed charset); we decode only for the meta-tag fallbacks.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Iterable
from copy import deepcopy
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urljoin, urlsplit

import lxml.html
import trafilatura
from lxml import etree
from trafilatura.settings import DEFAULT_CONFIG
from trafilatura.utils import load_html
from trafilatura.xpaths import BODY_XPATH

from aggregator.bylines import clean_byline
from aggregator.errors import ParseError
from aggregator.onethread import OneThread
from aggregator.pagereader import READ_TIMEOUT_S, PageReader
from aggregator.sitenames import declared_site
from aggregator.textclean import (
    TITLE_SEPARATORS,
    casefolded_words,
    clean_inline,
    collapse_whitespace,
    decode_html,
    drop_read_more,
    parse_date,
)

# trafilatura's date search (htmldate), with its defaults, but asked for the time of day too:
# by default it gives the day only, and a story published at 05:36 BST was stored at 00:00
# UTC, hours before it happened (readability pages bbc-1, breitbart give the time; those
# that give a day only still come out as that day, 00:00). The meta tags are read first.
_DATE_PARAMS = {"original_date": True, "extensive_search": True,
                "outputformat": "%Y-%m-%dT%H:%M:%S%z"}


_TEXT_PARAMS = {"include_comments": False, "include_tables": True, "include_images": False,
                "include_links": False, "deduplicate": False}
# favor_precision can keep a teaser for the whole text: on engadget's review (readability
# page) it took the 595-character summary box and left the 10,800 characters of the review,
# which the default mode reads (token F1 0.11 vs 0.995). A text this short is read again in
# the default mode, and that reading wins when it is this many times longer (on the other
# short pages of ../shared/data the two differ by at most 1.3 times). Only short texts are
# read twice: a long page's reading costs what it did.
SHORT_TEXT_CHARS = 1000
FULLER_TEXT_RATIO = 4


def _clean_text(raw: object) -> str:
    # NYT pages keep "Continue reading the main story" between paragraphs (readability
    # pages nytimes-1, -2), the Washington Post a trailing "Read more:" (wapo-1).
    return drop_read_more(collapse_whitespace(str(raw or "")))


def _today() -> str:
    return datetime.now().astimezone().strftime("%Y-%m-%d")  # as trafilatura's default


@dataclass(frozen=True)
class Article:
    """What an article page says about itself; empty strings when unknown."""

    title: str
    text: str
    author: str = ""
    published_at: datetime | None = None  # aware UTC; a date-only value means 00:00 UTC
    image_url: str = ""
    site_name: str = ""
    description: str = ""
    # The address the page names as its own (<link rel="canonical">, else og:url), absolute
    # http(s): an AMP, mobile or share-link spelling names its article's real address.
    canonical_url: str = ""
    amp_url: str = ""  # the page's AMP spelling (<link rel="amphtml">), absolute http(s)


# Meta tags in order of trust, per field (Open Graph, then article:*, then Twitter, then HTML).
_META = {
    "image": (
        "og:image",
        "og:image:url",
        "og:image:secure_url",
        "twitter:image",
        "twitter:image:src",
    ),
    "published": (
        "article:published_time",
        "og:article:published_time",
        "datePublished",
        "pubdate",
        "publishdate",
        "date",
        "dc.date",
    ),
    "site_name": ("og:site_name", "application-name"),
    "description": ("og:description", "description", "twitter:description"),
    "title": ("og:title", "twitter:title"),
    "author": ("author", "article:author", "byl", "dc.creator"),
}


def page_link(page_url: str, link: str) -> str:
    """A URL the page declares (its share image, its own address) as an absolute http(s) URL,
    else "". A page's og:image of `javascript:alert(1)` or `data:image/svg+xml,...` went out
    as the image_url of the article card (related-by-URL) and of stories read in full, while
    a feed's image goes through normalize's http(s) check: every client that puts image_url
    in a src or href (not our widget, which checks) ran or showed what the page chose."""
    link = link.strip()
    if not link:
        return ""
    absolute = urljoin(page_url, link)
    try:
        parts = urlsplit(absolute)
    except ValueError:  # a bad IPv6 literal
        return ""
    return absolute if parts.scheme.lower() in ("http", "https") and parts.netloc else ""


# Every page this process reads goes through one thread, in turn (`read_article`), which hands
# it to a worker process with a time limit (`pagereader`):
# - trafilatura parses with a module-level lxml parser, which two threads must not use at
#   once: three pages read together in worker threads aborted the whole process (SIGABRT in
#   libxml2, seen once in the test suite);
# - a page can take seconds of CPU (~7 s for 3 MB of paragraphs): seven such pages, within
#   one caller's rate limit, held every thread asyncio.to_thread has (embedding included), and
#   a block by text took 27 s instead of 0.04 s. Queued here, pages hold none of them; read in
#   the worker, a page past its time is stopped, and none holds this process's GIL.
_READER = OneThread("tidings-extract")
_PAGES = PageReader()


async def read_article(html: bytes, url: str, timeout_s: float = READ_TIMEOUT_S, *,
                       urgent: bool = False) -> Article:
    """`extract_article` in this process's page-reading worker, in turn (see `_READER`;
    `urgent`: before the pages not urgent, for a page someone waits for); PageTooSlow (a
    ParseError) past `timeout_s`."""
    return await asyncio.wrap_future(_READER.submit(_PAGES.read, html, url, timeout_s,
                                                    urgent=urgent))


def extract_article(html: bytes, url: str) -> Article:
    """Main text and metadata of an article page at `url`. From async code, call
    `read_article`: this parser must not run in two threads at once."""
    if not html or not html.strip():
        raise ParseError("empty body")
    try:
        # favor_precision: token F1 0.968 vs 0.957 (default) over the 120 benchmark pages
        # (benchmarks/extract_f1.py); the gold text leaves out captions and link boxes.
        # Parsed once here: trafilatura reads a copy of a tree it is given.
        tree = load_html(html, DEFAULT_CONFIG.getint("DEFAULT", "MAX_FILE_SIZE"))
        if tree is not None:
            drop_story_lists(tree)
            drop_hover_cards(tree)
            unbox_embedded_tweets(tree)
        page_in = html if tree is None else tree
        data = _as_dict(trafilatura.bare_extraction(
            page_in, url=url, favor_precision=True, with_metadata=True,
            date_extraction_params=_DATE_PARAMS | {"max_date": _today()}, **_TEXT_PARAMS))
        text = _clean_text(data.get("text"))
        fuller = ""
        if text and len(text) < SHORT_TEXT_CHARS:
            fuller = _clean_text(_as_dict(trafilatura.bare_extraction(
                page_in, url=url, with_metadata=False, **_TEXT_PARAMS)).get("text"))
        if len(fuller) >= FULLER_TEXT_RATIO * len(text):
            text = fuller  # the default mode reads past the first part of a split body too
        elif tree is not None and (joined := join_split_body(tree)) is not None:
            whole = _clean_text(_as_dict(trafilatura.bare_extraction(
                joined, url=url, favor_precision=True, with_metadata=False,
                **_TEXT_PARAMS)).get("text"))
            text = whole if len(whole) > len(text) else text
    except Exception as e:  # trafilatura wraps lxml and more; a crash is a page problem here
        raise ParseError(f"article extraction failed: {type(e).__name__}: {e}") from e
    if not text:
        raise ParseError("no article text found on the page")
    source = decode_html(html)
    page = _page_tree(source)
    meta = _meta_tags(page)
    published_at = parse_date(_first(meta, "published")) or parse_date(str(data.get("date") or ""))
    image = str(data.get("image") or "") or _first(meta, "image")
    site_name = clean_inline(str(data.get("sitename") or "")) or clean_inline(_first(meta, "site_name"))
    host = urlsplit(url).hostname or ""
    page_title = clean_inline(str(data.get("title") or "")) or clean_inline(_first(meta, "title"))
    title = choose_title(
        (page_title, clean_inline(_first(meta, "title")), _title_element(page)),
        site_name, host, _headings(page, url))
    # who publishes the page, to tell from who wrote it
    publisher = Publisher(site_name, host, meta.get("copyright", ""))
    return Article(
        title=title,
        text=without_headline(text, (title, page_title, _first(meta, "title"))),
        author=byline(str(data.get("author") or ""), publisher, page=source)
        or byline(_first(meta, "author"), publisher, page=source)
        or byline(visible_byline(page), publisher, page=source),
        published_at=published_at,
        image_url=page_link(url, image),
        site_name=declared_site(_site_names(data, meta, page, url)),
        description=clean_inline(str(data.get("description") or ""))
        or clean_inline(_first(meta, "description")),
        canonical_url=page_link(url, _canonical_link(page))
        or page_link(url, meta.get("og:url", "")),
        amp_url=page_link(url, _page_link(page, "amphtml")),
    )


def _site_names(data: dict, meta: dict[str, str], page: lxml.html.HtmlElement | None,
                url: str) -> Iterable[str]:
    """The names the page gives its site, in order of trust, for `declared_site`: trafilatura's
    (og:site_name and JSON-LD, the longer of the two; "USA TODAY" for og's "usatoday"), then
    og:site_name, JSON-LD publisher.name and application-name as read here. trafilatura's is
    left out when it is only the host it falls back to without a name: it reads meta tags in
    <head> only, and on breitbart's and yahoo-3's pages (readability pages) an <iframe> early
    in <head> puts og:site_name in <body> for the parser, so the card said "breitbart.com"
    where the page says "Breitbart". The host is the caller's fallback anyway (`site_of`)."""
    found = clean_inline(str(data.get("sitename") or ""))
    if found not in {_fallback_name(str(data.get("url") or "")), _fallback_name(url)}:
        yield found
    yield meta.get("og:site_name", "")
    yield from _ld_publisher_names(page)
    yield meta.get("application-name", "")


# trafilatura's name for a page that names no site: its URL's host as written, without
# "www." or "w3." (trafilatura.metadata.META_URL). Compared exactly: "Salon.com" is the
# name salon-1's <title> gives, not the fallback "salon.com".
_TRAFILATURA_HOST = re.compile(r"https?://(?:www\.|w[0-9]+\.)?([^/]+)")


def _fallback_name(url: str) -> str:
    found = _TRAFILATURA_HOST.match(url)
    return found[1] if found else ""


def _ld_publisher_names(page: lxml.html.HtmlElement | None) -> Iterable[str]:
    """publisher.name of the page's JSON-LD items (top level, lists and @graph), in order."""
    for script in page.iter("script") if page is not None else ():
        if "ld+json" not in (script.get("type") or "").lower():
            continue
        try:
            found = json.loads(script.text or "")
        except ValueError:  # a broken block; trafilatura repairs some, the next may be fine
            continue
        items = found if isinstance(found, list) else [found]
        for item in items:
            if isinstance(item, dict) and isinstance(item.get("@graph"), list):
                items.extend(item["@graph"])
        for item in items:
            publisher = item.get("publisher") if isinstance(item, dict) else None
            publisher = publisher[0] if isinstance(publisher, list) and publisher else publisher
            if isinstance(publisher, dict) and isinstance(publisher.get("name"), str):
                yield publisher["name"]


# <article>s inside another <article>: HTML's nested articles are content related to the
# outer one (its comments, other posts), and several side by side make a list.
_NESTED_ARTICLES = etree.XPath("//article//article")


def drop_story_lists(tree: lxml.html.HtmlElement) -> None:
    """Take out of `tree` (in place) the lists of other stories that a page puts inside its
    article: `<article>` elements inside an `<article>`, two or more under one parent. A
    blog's "you may like" list of six posts, each an <article> with its full teaser, sat
    in the post's own <article>: readability read all of it, 4.5 times the post's text, and
    trafilatura took that reading (benchmark page mensagensreflexao, token F1 0.34). One
    <article> inside another stays: crn wraps its story so. Siblings are counted once per
    parent: XPath's count(../article) for each of them took 21 s for a page of 20,000 (0.4 MB)."""
    nested = _NESTED_ARTICLES(tree)
    # Every <article> under a nested one's parent is nested too: all of them are in `nested`.
    siblings = Counter(story.getparent() for story in nested)
    for story in nested:
        if siblings[story.getparent()] >= 2:
            story.drop_tree()


# Paragraphs with a picture, each once (an HTML parser may leave one inside another).
_PICTURED_PARAGRAPHS = etree.XPath("//p[not(ancestor::p)][.//img]")
_WORD_CHAR = re.compile(r"\w")
_WHITESPACE = re.compile(r"\s+")


def drop_hover_cards(tree: lxml.html.HtmlElement) -> None:
    """Take out of `tree` (in place) the cards that pop up over a name in the text: a span
    inside a paragraph holding a photo and links only (the person's full name, their latest
    stories, "MORE"), which the page's style hides until a hover. thehill's text read "Rep.
    Ilhan OmarIlhan OmarHillicon Valley: Progressives oppose funding bill …" (benchmark
    pages, token F1 0.87 and 0.94). The innermost such span goes; the name in the text, a
    link before it, stays. Words outside the links mean text, and it stays."""
    for p in _PICTURED_PARAGRAPHS(tree):
        for box in _inline_boxes(p):
            if not _WORD_CHAR.search(_text_outside_links(box)):
                box.drop_tree()


def _inline_boxes(paragraph: lxml.html.HtmlElement) -> list[lxml.html.HtmlElement]:
    """The innermost <span>s in `paragraph` holding a picture and two or more links: boxes in
    its running text, none inside another. Counted from the leaves up, each element once:
    XPath's .//img and count(.//a) for each span walked all inside it again, and spans nested
    100 deep made a 1 MB page cost 9 s before trafilatura began."""
    inside: dict[lxml.html.HtmlElement, tuple[int, int, bool]] = {}  # pictures, links, a box
    boxes = []
    for el in reversed(list(paragraph.iter())):  # an element after all those inside it
        pictures, links, holds_box = int(el.tag == "img"), int(el.tag == "a"), False
        for child in el:
            child_pictures, child_links, child_box = inside.pop(child)
            pictures, links, holds_box = pictures + child_pictures, links + child_links, holds_box or child_box
        if el.tag == "span" and pictures and links >= 2 and not holds_box:
            boxes.append(el)
            holds_box = True
        inside[el] = pictures, links, holds_box
    return boxes


def _text_outside_links(el: lxml.html.HtmlElement) -> str:
    """The text of `el` that is in none of its <a> elements."""
    bare = deepcopy(el)
    bare.tail = None
    for link in list(bare.iter("a")):
        if link.getparent() is not None:
            link.drop_tree()  # its tail, text after the link, stays
    return bare.text_content()


# Twitter's embed markup, the same on every site: <blockquote class="twitter-tweet">.
_TWEETS = etree.XPath(
    "//blockquote[contains(concat(' ', normalize-space(@class), ' '), ' twitter-tweet ')]")


def unbox_embedded_tweets(tree: lxml.html.HtmlElement) -> None:
    """Make the tweets that a story quotes part of its text, in `tree` (in place): each
    tweet takes the place of the boxes around it that hold nothing else. Sites wrap a
    tweet in a box named for what it is ("social-media-embed" at nj.com, "sdc-article-widget"
    at Sky), which trafilatura drops as a share button or a widget, and a story about what
    people tweeted lost what they said: nj.com's four tweets of five, Sky's two (benchmark
    pages, token F1 0.83 and 0.94; the gold text keeps every page's tweets)."""
    sizes: dict[lxml.html.HtmlElement, int] = {}
    for tweet in _TWEETS(tree):
        box = _lone_box(tweet, sizes)
        # None: the tweet went with a box another one took the place of (two tweets of no
        # text in one box), and the whole page failed on it.
        if box is not tweet and (parent := box.getparent()) is not None:
            tweet.tail, box.tail = box.tail, None
            parent.replace(box, tweet)


def _lone_box(el: lxml.html.HtmlElement, sizes: dict[lxml.html.HtmlElement, int]) -> lxml.html.HtmlElement:
    """The outermost element around `el` whose text is `el`'s only (`el` when none is). An
    element's text holds `el`'s, so that is: as many characters besides whitespace (`sizes`,
    each element's counted once: a box of 10,000 tweets side by side had its text read for
    each, 5 s for 0.5 MB). Taking a tweet out of its box leaves those of the rest as they are."""
    own = _text_size(el, sizes)
    box = el
    for up in el.iterancestors():
        if up.tag in ("body", "html") or _text_size(up, sizes) != own:
            break
        box = up
    return box


def _text_size(el: lxml.html.HtmlElement, sizes: dict[lxml.html.HtmlElement, int]) -> int:
    """How many characters of `el`'s text are not whitespace, kept in `sizes`."""
    if el not in sizes:
        sizes[el] = len(_WHITESPACE.sub("", el.text_content()))
    return sizes[el]


def join_split_body(tree: lxml.html.HtmlElement) -> lxml.html.HtmlElement | None:
    """A copy of `tree` with its article body made one when the page split it in parts,
    else None. trafilatura reads the first element its first rule matches (class
    article__body, post-content, …) and nothing after it, so a page that cuts its body at
    each ad into parts of the same class lost every part but the first: wired's Instagram
    story kept 3,100 of its 8,600 characters (benchmark page, token F1 0.52). The later
    elements of that tag with (at least) its classes are moved into it, in page order, up
    to the next <h1>: a page that runs on into another story (infinite scroll) starts that
    story with its headline, and it stays out."""
    if not _body_parts(tree)[1]:
        return None
    tree = deepcopy(tree)
    first, parts = _body_parts(tree)
    for part in parts:
        part.drop_tree()  # its tail stays where it was
        part.tail = None
        first.append(part)
    return tree


def _body_parts(tree: lxml.html.HtmlElement) -> tuple[lxml.html.HtmlElement | None,
                                                        list[lxml.html.HtmlElement]]:
    """The element trafilatura's first rule reads, and the later parts of it."""
    first = next(iter(BODY_XPATH[0](tree)), None)
    classes = set((first.get("class") or "").split()) if first is not None else set()
    if first is None or not classes:
        return first, []
    parts: list[lxml.html.HtmlElement] = []
    for el in first.xpath("following::*[self::h1 or name() = $tag]", tag=first.tag):
        if el.tag == "h1":
            break
        if (classes <= set((el.get("class") or "").split())
                and not any(up in parts for up in el.iterancestors())):
            parts.append(el)
    return first, parts


# What trafilatura takes for a byline on some pages: a login form's field (every Washington
# Post page of 2015, readability pages wapo-1 and -2), a label ("作者", "author", gmw).
_NOT_NAMES = frozenset({"username", "user name", "admin", "administrator", "author", "by",
                        "作者", "autor", "auteur"})


@dataclass(frozen=True)
class Publisher:
    """Who publishes a page, as it names itself: its site's name, its host, and its
    copyright notice (<meta name="copyright">)."""

    site_name: str = ""
    host: str = ""
    copyright: str = ""

    def names(self, name: str) -> bool:
        """Whether `name` is this publisher: the site's name or host (any case, letters and
        digits only: "Cleveland com" is cleveland.com), the first two or more words of the
        site's name ("Business Insider" of "Business Insider Deutschland"), or two or more
        words of the copyright notice ("Condé Nast" of "Copyright (c) Condé Nast 2019")."""
        key, words = _key(name), casefolded_words(name)
        if not key:
            return False
        if key in (_key(self.site_name), _key(self.host.removeprefix("www."))):
            return True
        return len(words) >= 2 and (casefolded_words(self.site_name)[:len(words)] == words
                                    or _has_run(casefolded_words(self.copyright), words))


def byline(raw: str, publisher: Publisher = Publisher(), *, page: str = "") -> str:
    """The author names of a page, each once, joined as feeds join them (", ").

    trafilatura joins every name it finds with "; ", the same name in two spellings
    included: NYT pages gave "Jeffrey Gettleman; JEFFREY GETTLEMAN" (readability nytimes-1,
    -2), which the card showed as written. Places, roles and dates run into the names go
    too (`bylines.clean_byline`: "Tom Krisher, Ap Auto Writer", "Jeff Foust Monday, November").

    It also joins the page's publisher to the writer's name: "Condé Nast; Louise Matsakis"
    (wired: the meta author of every page is the company), "Troy Smith; Troy L Smith;
    Cleveland com", "Charlie Wood; Business Insider" (site "Business Insider Deutschland"),
    which the card showed as co-authors. Beside a person's name the
    publisher goes, and so does the same person again with a middle initial; a byline that
    is the site's name alone stays, written as the site writes it ("Mac; I" is heise's
    "Mac & i", split at its "&").

    A login name goes too (`login_name`, judged by how `page`, the page's HTML, spells it)."""
    if _key(raw) and _key(raw) == _key(publisher.site_name):
        return clean_byline(clean_inline(publisher.site_name))
    names: list[str] = []
    seen: set[str] = set()
    for part in raw.split(";"):
        name = clean_inline(part)
        key = name.casefold()
        if name and key not in seen and key not in _NOT_NAMES and not login_name(name, page):
            seen.add(key)
            names.append(name)
    people = [n for n in names if not publisher.names(n)]
    if people and len(people) < len(names):
        names = people
    kept: list[str] = []
    for name in names:
        if not any(_same_person(name, other) for other in kept):
            kept.append(name)
    return clean_byline(", ".join(kept))


def login_name(name: str, page: str) -> bool:
    """Whether a one-word byline is an account's login name, not a person's: WordPress and
    its kind sign a post with its account ("jdadmin", "webnata", "kevin-r", "rmb8090" in
    the benchmark pages), which trafilatura gives capitalised and without digits
    ("Jdadmin", "Webnata", "Rmb"), and the card showed as the writer. Judged by how the
    page (`page`, its HTML) writes the word:
    - a word with "admin" in it is one;
    - a word the page prints as a word of its own with a capital letter is a name: a
      person's, a mononym too ("Regan", "Catherine"), or an agency's ("AFP");
    - else, a word the page writes run into digits ("rmb8090") is one, and so is a word of
      4 letters or more that the page writes, only in lower case ("webnata"). A shorter
      word written alone in lower case stays: German agencies sign so ("dpa", "epd", "kna").
    Names of two or more words ("bell hooks") are never judged so."""
    word = name.strip()
    if not word or any(ch.isspace() for ch in word):
        return False
    if "admin" in word.casefold():
        return True
    if not page:
        return False
    quoted = re.escape(word)
    alone = re.findall(rf"(?<![\w-]){quoted}(?![\w-])", page, re.IGNORECASE)
    if any(w != w.lower() for w in alone):
        return False
    if re.search(rf"(?<![^\W\d_]){quoted}\d", page, re.IGNORECASE):
        return True
    return len(word) > 3 and bool(alone or re.search(rf"(?<![^\W\d_]){quoted}", page, re.IGNORECASE))


def _key(text: str) -> str:
    """Letters and digits only, any case: "Cleveland com" and "www.cleveland.com" match."""
    return "".join(ch for ch in text.casefold() if ch.isalnum())


def _has_run(words: list[str], run: list[str]) -> bool:
    return any(words[i:i + len(run)] == run for i in range(len(words) - len(run) + 1))


def _same_person(name: str, other: str) -> bool:
    """"Troy L Smith" and "Troy Smith": one of the two is the other less its initials
    ("John A Smith" and "John B Smith" are two people)."""
    short, long = sorted((casefolded_words(name), casefolded_words(other)), key=len)
    return (len(short) == 2 and len(long) > 2 and short == [long[0], long[-1]]
            and all(len(w) == 1 for w in long[1:-1]))


def without_site_name(title: str, site_name: str, host: str = "") -> str:
    """`title` without the site's name that pages append to their <title> ("… - TechCrunch",
    "… | ZDNet"): 25 of the 120 benchmark pages' titles ended so, and a story titled from its
    page (a plain sitemap's link, a related block's article) showed it. Only an exact name
    (any case) after a separator goes; what is left must still be a title. The name of the
    page's host counts too ("… - Entermedia" on entermedia.co.kr, whose og:site_name is
    unset), and the site's whole name before a colon: trafilatura titled LinkNaija's stories
    "LinkNaija | Nigeria's popular news platform: …", the site's og:site_name first."""
    if not title or not (site_name or host):
        return title
    folded = title.casefold()
    # a site name with a tagline ("Aktuálně.cz - Víte, co se právě děje") is also tried short
    names = [site_name.casefold()] if site_name else []
    names += [n for sep in TITLE_SEPARATORS if sep in site_name
              for n in [site_name.split(sep)[0].strip().casefold()] if n]
    names += [n for n in [_host_name(host).casefold()] if len(n) >= 3]
    if site_name and folded.startswith(site_name.casefold() + ": "):
        rest = title[len(site_name) + 2:].lstrip()
        if len(rest.split()) >= 2:
            return rest
    for name in names:
        for sep in TITLE_SEPARATORS:
            if folded.endswith(sep + name):
                head = title[: len(title) - len(sep + name)].rstrip()
                return head if len(head.split()) >= 2 else title
            if folded.startswith(name + sep):
                rest = title[len(name + sep):].lstrip()
                return rest if len(rest.split()) >= 2 else title
    return title


def without_headline(text: str, titles: Iterable[str]) -> str:
    """`text` without a first line that is the page's headline (its <title> or og:title, in
    any case and punctuation). trafilatura keeps the <h1> when it stands inside the article
    element: 20 of the 156 pages in ../shared/data (AP stories on ctpost and sfgate, rt.com,
    bbc-1, salon-1) began so, and the gold text never does. The story's summary, when its
    feed gave none, then repeated its title on the card, and the body hash of one story
    differed between a site that kept the <h1> and one that did not. What is left must still
    be text: a page whose only line is its headline keeps it."""
    first, sep, rest = text.partition("\n")
    head = casefolded_words(first)
    if not head or not rest.strip() or not any(head == casefolded_words(t) for t in titles if t):
        return text
    return rest.lstrip("\n")


def _as_dict(doc: object) -> dict[str, object]:
    # trafilatura >= 1.9 returns a Document object; older versions returned a dict.
    if doc is None:
        return {}
    if isinstance(doc, dict):
        return doc
    as_dict = getattr(doc, "as_dict", None)
    return as_dict() if callable(as_dict) else {}


def _page_tree(source: str | bytes) -> lxml.html.HtmlElement | None:
    """The page parsed for its meta tags and links (trafilatura keeps its own tree)."""
    try:
        return lxml.html.document_fromstring(
            decode_html(source) if isinstance(source, bytes) else source)
    except (etree.ParserError, ValueError):
        return None


def _meta_tags(page: lxml.html.HtmlElement | None) -> dict[str, str]:
    """First content of each <meta property|name|itemprop=…> on the page, keys lowercased."""
    if page is None:
        return {}
    found: dict[str, str] = {}
    for el in page.iter("meta"):
        key = (el.get("property") or el.get("name") or el.get("itemprop") or "").strip().lower()
        value = (el.get("content") or "").strip()
        if key and value and key not in found:
            if not (el.get("property") or el.get("name")) and not _of_the_page(el):
                continue
            found[key] = value
    return found


# schema.org types whose properties are the page's own (Article and its kinds: NewsArticle,
# BlogPosting, ReportageNews, Report; WebPage and its kinds).
_PAGE_ITEM_TYPES = re.compile(r"(?:Article|Posting|Page|Report|ReportageNews|Blog)\s*$")


def _of_the_page(el: lxml.html.HtmlElement) -> bool:
    """Whether a microdata <meta itemprop> describes the page's article, not an item inside
    it: the property belongs to the nearest element with `itemscope`. yahoo-3's embedded
    video (a VideoObject) comes first with its own datePublished, 17 hours after the
    article's: the story was dated when the video was posted. Untyped or unscoped: kept."""
    for up in el.iterancestors():
        if up.get("itemscope") is not None:
            kind = (up.get("itemtype") or "").strip().split()
            return not kind or bool(_PAGE_ITEM_TYPES.search(kind[0].rstrip("/")))
    return True


def _canonical_link(page: lxml.html.HtmlElement | None) -> str:
    """The href of the page's first <link rel="canonical">. rel is a list of tokens, matched
    in any case (HTML's link types): "Canonical" and "canonical amphtml" count too.
    trafilatura's own url field is no substitute: it takes rel="canonical" exactly, falls back
    to <base> and then to the URL it was given, so "no declaration" cannot be told apart."""
    return _page_link(page, "canonical")


def _page_link(page: lxml.html.HtmlElement | None, rel: str) -> str:
    """The href of the page's first <link> whose rel (a list of tokens, without case) has `rel`."""
    if page is None:
        return ""
    for el in page.iter("link"):
        href = (el.get("href") or "").strip()
        if href and rel in (el.get("rel") or "").lower().split():
            return href
    return ""


# Where a page shows its byline: rel="author" links, schema.org microdata, and the class
# names sites give it ("pb-byline", "byline__author", "c-byline").
_BYLINE_ELEMENTS = etree.XPath(
    "//body//*[contains(concat(' ', normalize-space(@rel), ' '), ' author ')"
    " or contains(concat(' ', normalize-space(@itemprop), ' '), ' author ')"
    " or contains(translate(@class, 'BYLINE', 'byline'), 'byline')]")
_BYLINE_MAX_WORDS = 12  # a byline line; more words are a bio or a story list


def visible_byline(page: lxml.html.HtmlElement | None) -> str:
    """The byline the page shows, when its elements name one writer or one set of writers,
    else "". The Washington Post's pages (readability wapo-1, -2) show "By Erin Cunningham"
    in a span.pb-byline while trafilatura's author is a login form's "Username", and they
    have no meta author: the story had none. Read only where trafilatura and the meta tags
    gave no name, and only a text that is names alone: one with a digit or an "@" holds a
    date, a time or a handle ("By Joseph Tsidulko November 19, 2019, 07:47 PM EST",
    "@catherineshu / 2 days"), and an element's text is taken whole, never cut to a guess.
    Outside comments; a page whose elements name different people (a list of other stories
    with their bylines, as salon-1 and herald-sun-1 have) gives none: which is the
    article's cannot be told."""
    if page is None:
        return ""
    names: dict[str, str] = {}
    for el in _BYLINE_ELEMENTS(page):
        text = clean_inline(el.text_content())
        if (not text or len(text.split()) > _BYLINE_MAX_WORDS or "@" in text
                or any(ch.isdigit() for ch in text) or _in_comments(el)):
            continue
        name = clean_byline(text)
        if _key(name):
            names.setdefault(_key(name), name)
    return next(iter(names.values())) if len(names) == 1 else ""


def _in_comments(el: lxml.html.HtmlElement) -> bool:
    """Whether `el` is in the page's comments (WordPress: "comment-author vcard"); the
    <body>'s own classes ("comments-open") say nothing of where an element is."""
    for up in (el, *el.iterancestors()):
        if up.tag in ("body", "html"):
            return False
        if "comment" in f"{up.get('class') or ''} {up.get('id') or ''}".lower():
            return True
    return False


def choose_title(found: Iterable[str], site_name: str, host: str,
                 headings: tuple[tuple[str, ...], tuple[str, ...]] = ((), ())) -> str:
    """The story's title from the titles the page gives, in order of trust (trafilatura's,
    og:title, <title>), and its <h1> headings: `headings` is (headlines, home links), the
    <h1>s that are no link to the site's home page and those that are.

    - A title that is the site's own name is skipped for the next one: trafilatura takes a
      page's only <h1>, and entermedia's is its logo, "엔터 미디어", a link home (benchmark
      pages: two stories titled so, their <title> naming the story).
    - The site's name goes from either end (`without_site_name`).
    - A title that is a headline of the page with more words around it, at a separator,
      is that headline: NYT's and WSJ's og:title "Opinion | Is Football Violence a Crime?"
      over the <h1> "Is Football Violence a Crime?", the Guardian's "… | Eleanor Ainge Roy"
      (the writer), autoindustriya's "… - Auto News". The headline must be the longer part,
      so a logo <h1> ("ZDNet") never takes over "Best tech gadgets of 2019 | ZDNet"."""
    headlines, home_links = headings
    titles = [t for t in (clean_inline(t) for t in found) if t]
    if not titles:
        return ""
    short = [site_name.split(sep)[0] for sep in TITLE_SEPARATORS if sep in site_name]
    own = {_key(n) for n in (site_name, *short, host.removeprefix("www."), _host_name(host),
                             *home_links)}
    own.discard("")
    title = next((t for t in titles if _key(t) not in own), titles[0])
    title = without_site_name(title, site_name, host)
    return _visible_headline(title, headlines)


def _visible_headline(title: str, headlines: Iterable[str]) -> str:
    """`title`, or the part of it on one side of a separator that is one of `headlines` and
    has more words than the other side."""
    headlines = [casefolded_words(h) for h in headlines]
    for sep in TITLE_SEPARATORS:
        start = title.find(sep)
        while start > 0:
            head, tail = title[:start].rstrip(), title[start + len(sep):].lstrip()
            for part, rest in ((head, tail), (tail, head)):
                kept = casefolded_words(part)
                if (len(kept) >= 2 and len(kept) > len(casefolded_words(rest))
                        and kept in headlines):
                    return part
            start = title.find(sep, start + 1)
    return title


def _headings(page: lxml.html.HtmlElement | None, url: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The page's <h1> texts: (those that are no link to the site's home page, those that are).
    A home link (the <h1> in or around an <a href="/">) is the site's logo or name."""
    if page is None:
        return (), ()
    headlines: list[str] = []
    home: list[str] = []
    for h1 in page.iter("h1"):
        text = clean_inline(h1.text_content())
        if not text:
            continue
        links = [a for a in (*h1.iterancestors("a"), *h1.iter("a")) if a.get("href") is not None]
        (home if any(_is_home(url, a.get("href") or "") for a in links) else headlines).append(text)
    return tuple(headlines), tuple(home)


def _is_home(page_url: str, href: str) -> bool:
    """Whether `href`, on the page at `page_url`, is its site's home page: "/", "https://host/"."""
    try:
        link, page = urlsplit(urljoin(page_url, href.strip())), urlsplit(page_url)
    except ValueError:  # a bad IPv6 literal, in a link the page chose
        return False
    return (link.path in ("", "/") and not link.query
            and (link.hostname or "").removeprefix("www.") == (page.hostname or "").removeprefix("www."))


def _host_name(host: str) -> str:
    """The name part of a host: "entermedia" of "entermedia.co.kr", "nytimes" of
    "www.nytimes.com"; "" when the host is one label or an address."""
    labels = host.removeprefix("www.").split(".")
    if len(labels) < 2 or labels[-1].isdigit():
        return ""
    return labels[0]


def _title_element(page: lxml.html.HtmlElement | None) -> str:
    if page is None:
        return ""
    el = page.find(".//title")
    return clean_inline(el.text_content()) if el is not None else ""


def _first(meta: dict[str, str], field: str) -> str:
    for key in _META[field]:
        if meta.get(key.lower()):
            return meta[key.lower()]
    return ""
