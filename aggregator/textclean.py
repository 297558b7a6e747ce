"""Clean text fields read from documents: decode bytes, strip markup, unescape, collapse, dates.

Pure functions over strings and bytes; no I/O and no knowledge of feeds or the store. Feeds
are decoded by feedparser itself; `decode_html` is for HTML pages (listings, articles).
"""

from __future__ import annotations

import codecs
import functools
import html
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, tzinfo
from email.utils import parsedate_to_datetime
from itertools import pairwise

import lxml.html
from lxml import etree

# Spaces of every width (Unicode's Zs, and the zero-width one) are one space: Livemint's
# titles and teasers put a hair space (U+200A) beside a plain one ("FDI\u200a inflows").
_WS = re.compile(r"[ \t\r\f\v\u00a0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")
# The whitespace str.strip takes off a line's ends and str.split() splits on, which `_WS`
# does not match (as "\n" is not): the information separators U+001C-U+001F and NEL
# (U+0085). A text with one is collapsed with `_WS` (`collapse_whitespace`).
_STRIP_NOT_WS = "\x1c\x1d\x1e\x1f\x85"
# Bidi embeddings and overrides (U+202A-U+202E) and isolates (U+2066-U+2069) are dropped:
# they change how the text around them is laid out, not what it says. An RLO ("\u202e")
# shows a title reversed (text spoofing, as "Trojan Source", CVE-2021-42574, does with code)
# wherever our text is shown without an isolation of its own (JSON, Atom, publishers' own
# renderers), and one left open spills over the text that follows it in a publisher's page.
# The marks (LRM U+200E, RLM U+200F, ALM U+061C) stay: they change no text but their
# neighbours' direction, and right-to-left writing uses them ("\u200f" after a Hebrew
# word that ends in a digit).
_BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_NO_BIDI_CONTROLS = dict.fromkeys(map(ord, _BIDI_CONTROLS))
_TAG = re.compile(r"<[a-zA-Z/!?][^<>]*>")
# HTML's elements (and the old ones feeds still write: font, center, big, tt, strike).
_HTML_ELEMENTS = (
    "a abbr acronym address area article aside audio b base bdi bdo big blink blockquote body "
    "br button canvas caption center cite code col colgroup data datalist dd del details dfn "
    "dialog div dl dt em embed fieldset figcaption figure font footer form h1 h2 h3 h4 h5 h6 "
    "head header hgroup hr html i iframe img input ins kbd label legend li link main map mark "
    "marquee menu meta meter nav nobr noscript object ol optgroup option output p param picture "
    "pre progress q rp rt ruby s samp script search section select slot small source span "
    "strike strong style sub summary sup svg table tbody td template textarea tfoot th thead "
    "time title tr track tt u ul var video wbr"
).split()
# A tag in a one-line field: an HTML element's, a namespaced one (Word's <o:p>), one closed
# further on (<bold>x</bold>), a comment or a declaration; not any text in angle brackets.
# Titles that name a type or a placeholder lost it: "Why std::vector<int> is fast" became
# "Why std::vector is fast", "Map<K, V>" "Map".
_ANY_TAG = re.compile(r"</?([a-zA-Z][\w:.-]*)(?:\s[^<>]*)?/?>|<[!?][^<>]*>")
_CLOSING_TAG = re.compile(r"</([a-zA-Z][\w:.-]*)\s*>")
_HTML_ELEMENT_SET = frozenset(_HTML_ELEMENTS)
# An entity left after one round of unescaping: feeds that escape twice ("&amp;#8217;").
_LEFTOVER_ENTITY = re.compile(r"&(#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});")
# Markup in text that came out of HTML: its tags were escaped once more than the markup's.
_DECODED_MARKUP = re.compile(
    r"</[a-zA-Z][a-zA-Z0-9]*\s*>|<(?:br|hr|img)\b[^<>]*>|<[a-zA-Z][a-zA-Z0-9]*\s+[\w:-]+\s*=\s*[\"'][^<>]*>",
    re.I)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.I)
_XML_ENCODING = re.compile(rb"""^\s*<\?xml[^>]+encoding\s*=\s*["']([a-zA-Z0-9_.:-]+)""")
_CT_CHARSET = re.compile(r"charset\s*=\s*[\"']?([a-zA-Z0-9_.:-]+)", re.I)
# A 12-hour clock ("3:46 PM"): no RFC 822 date has one, but email.utils reads such a text
# leniently and drops the marker, "Jun 7, 2023, 8:54 PM UTC" as 08:54.
_MERIDIEM = re.compile(r"\d\s*[ap]\.?m\b", re.I)
# Links from a teaser to its own article, which feeds append to every item: the Guardian's
# "Continue reading...", tagesschau's "[mehr]", the Washington Post's "Read full article >>",
# NYT pages' "Continue reading the main story" (between the paragraphs, where an ad was).
# In the captured feeds (../shared/data/news-feeds) 50 of the Guardian's 55 summaries and all
# 40 of tagesschau's bodies ended so; cut at 1,000 characters they ended in "Continue…".
# A whole line that says only this is dropped; a bare "more"/"mehr" only in brackets
# (a German sentence may end in "mehr").
_READ_MORE_WORDS = (
    r"continue reading(?: the main story)?|read (?:the )?(?:full|rest of the) (?:story|article)"
    r"|read more|keep reading|weiterlesen|lire la suite|leia mais|leer más|seguir leyendo"
    r"|continua a leggere|czytaj dalej"
)
_READ_MORE_LINE = re.compile(
    rf"^(?:(?:{_READ_MORE_WORDS})\s*(?:\.{{2,3}}|…|:|»+|>+|›|→)?"
    rf"|\[\s*(?:{_READ_MORE_WORDS}|more|mehr)\s*(?:\.{{2,3}}|…)?\s*\])$",
    re.I,
)
# The same in brackets at the end of the last paragraph: "… Von Jana Sinram.[mehr]".
_READ_MORE_TAIL = re.compile(rf"\s*\[\s*(?:{_READ_MORE_WORDS}|more|mehr)\s*(?:\.{{2,3}}|…)?\s*\]$", re.I)
# WordPress appends "The post <title> appeared first on <site>." to every feed item (Variety,
# Deadline, Billboard, Rolling Stone: all shipped sources); the Guardian puts a "Related: <a
# headline>" link box inside its summaries, NPR a "(Image credit: Pool/Getty Images)" line
# after the text of 14 of its 15 items: the credit of a photo the story does not show;
# reddit ends every item with its "[link] [275 comments]" links (all 24 captured items).
# A line that may be one of the above (a superset, to skip the line-by-line check).
_READ_MORE_HINT = re.compile(
    r"^(?:continue|read|keep|weiterlesen|lire|leia|leer|seguir|continua|czytaj|\[|\(|the post |related: )"
    r"|\]$", re.I | re.M)
_FEED_FOOTER = re.compile(r"^(?:The post .{1,400} appeared first on .{1,200}|Related: .{1,200}"
                          r"|\((?:Image|Photo) credit: [^()]{1,200}\)"
                          r"|\[link\] \[(?:[\d,]+ )?comments?\])$")

# Block elements end a line when markup becomes plain text, so paragraphs stay apart.
_BLOCK_TAGS = frozenset(
    "p div br li ul ol h1 h2 h3 h4 h5 h6 blockquote pre tr table section article header "
    "footer figure figcaption hr dd dt dl".split()
)
_DROP_TAGS = ("script", "style", "noscript", "template", "iframe", "svg", "head")


def declared_charset(body: bytes, content_type: str | None = None) -> str:
    """The charset a body says it has (BOM, then HTTP header, then XML/meta tag), or ""."""
    for bom, name in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if body.startswith(bom):
            return name
    if content_type:
        m = _CT_CHARSET.search(content_type)
        if m and _known_codec(m.group(1)):
            return m.group(1).lower()
    head = body[:4096]
    for pattern in (_XML_ENCODING, _META_CHARSET):
        m = pattern.search(head)
        if m and _known_codec(m.group(1).decode("ascii", "ignore")):
            name = m.group(1).decode("ascii").lower()
            # A declaration read as ASCII bytes is not in UTF-16 (a real UTF-16 body starts
            # with its BOM, above): browsers take such a label as UTF-8 (WHATWG, "prescan").
            return "utf-8" if name.replace("_", "-").startswith("utf-16") else name
    return ""


def decode_html(body: bytes, content_type: str | None = None) -> str:
    """Bytes of an HTML page to text: declared charset if it decodes, else UTF-8, else cp1252.

    Undeclared pages are mostly UTF-8 today; the rest are usually windows-1252, which is what
    browsers fall back to (WHATWG Encoding, "legacy single-byte" default), and which maps
    every byte, so decoding never fails.
    """
    charset = declared_charset(body, content_type)
    if charset:
        # "iso-8859-1" is decoded as cp1252 by browsers (WHATWG maps the label to windows-1252).
        if codecs.lookup(charset).name in ("latin-1", "iso8859-1", "ascii"):
            charset = "cp1252"
        try:
            return _strip_bom(body.decode(charset))
        except (UnicodeDecodeError, LookupError):
            pass  # a wrong declaration is common; fall through to sniffing
    try:
        return _strip_bom(body.decode("utf-8"))
    except UnicodeDecodeError:
        return body.decode("cp1252", errors="replace")


# A numeric character reference that may name no character: a UTF-16 half (D800-DFFF) or
# one past U+10FFFF. Shorter ones (4 decimal digits, 3 hex) name valid characters.
_BIG_CHAR_REF = re.compile(rb"&#(?:[xX]0*([0-9a-fA-F]{4,})|0*([0-9]{5,}));")


def valid_char_refs(body: bytes) -> bytes:
    """`body` (XML, an ASCII-compatible encoding) with each character reference to a UTF-16
    surrogate pair joined into one to the character (&#55357;&#56832; is &#128512;, 😀) and
    any other that names no character made U+FFFD (pure).

    Publishing systems that escape text one UTF-16 unit at a time write emoji so. feedparser
    then failed on the whole document ("UnicodeEncodeError: surrogates not allowed", as on
    &#x110000;, "chr() arg not in range"), so one emoji in one title lost every story of the
    feed; lxml kept a lone half as bytes it could not decode, and reading that sitemap entry
    raised UnicodeDecodeError, out of the parser."""
    if b"&#" not in body:
        return body
    out: list[bytes] = []
    done = 0  # body[:done] is in `out`
    high: tuple[int, int, int] | None = None  # a high half's (start, end, code), not yet written
    for m in _BIG_CHAR_REF.finditer(body):
        digits = m[1] or m[2]
        # past 8 digits it is out of range whatever they are (and int() refuses 4,300)
        code = 0x110000 if len(digits) > 8 else int(digits, 16 if m[1] else 10)
        if high is not None:
            start, end, first = high
            high = None
            if m.start() == end and 0xDC00 <= code <= 0xDFFF:
                joined = 0x10000 + ((first - 0xD800) << 10) + (code - 0xDC00)
                out += (body[done:start], b"&#%d;" % joined)
                done = m.end()
                continue
            out += (body[done:start], b"&#65533;")
            done = end
        if 0xD800 <= code <= 0xDBFF:
            high = (m.start(), m.end(), code)
        elif 0xDC00 <= code <= 0xDFFF or code > 0x10FFFF:
            out += (body[done:m.start()], b"&#65533;")
            done = m.end()
    if high is not None:
        out += (body[done:high[0]], b"&#65533;")
        done = high[1]
    if not out:
        return body
    out.append(body[done:])
    return b"".join(out)


def without_bidi_controls(text: str) -> str:
    """`text` without bidi embeddings, overrides and isolates (see `_BIDI_CONTROLS`); `text`
    itself when it has none. Nine `in` scans (C-speed, ~70 us for a body of 100,000
    characters; one regex search took ~500), none for an ASCII text (`isascii` is O(1))."""
    if text.isascii() or not any(c in text for c in _BIDI_CONTROLS):
        return text
    return text.translate(_NO_BIDI_CONTROLS)


def collapse_whitespace(text: str) -> str:
    """Runs of spaces become one space; lines are stripped; blank-line runs become one;
    bidi controls are dropped (`without_bidi_controls`)."""
    text = without_bidi_controls(text).replace("\r\n", "\n")
    if any(c in text for c in _STRIP_NOT_WS):
        joined = "\n".join([_WS.sub(" ", line).strip() for line in text.split("\n")])
    else:
        # Without those, `_WS` matches what str.split() splits a line on, U+200B aside, and
        # `split` and `join` run at C speed, a third of the CPU of `_WS.sub`, which tries its
        # class at every position: 20-40 ns a character, 15% of parsing the benchmark's feeds.
        text = text.replace("\u200b", " ")  # the same string back when it holds none
        joined = "\n".join([" ".join(line.split()) for line in text.split("\n")])
    return _BLANK_LINES.sub("\n\n", joined).strip()


def first_words(text: str, words: int) -> str:
    """The first `words` words of `text`, joined by single spaces. The split stops after
    them (`maxsplit`): a body of thousands of words costs what its lead does. `str.split()`
    breaks on exactly the characters a regex's `\\s` matches (both `str.isspace`)."""
    return " ".join(text.split(None, words)[:words])


_WORD = re.compile(r"\w+")


def casefolded_words(text: str) -> list[str]:
    """The words of `text` (runs of letters and digits), case folded, in order."""
    return _WORD.findall(text.casefold())


# What sites put between a headline and their own name ("… | ZDNet", "… - TechCrunch").
TITLE_SEPARATORS = (" | ", " - ", " – ", " — ", " :: ", " · ")
# A name's words that are no capitalised ones: "Times of India", "News & Observer", "Le Monde".
_NAME_JOINERS = frozenset("of the and & for on at de du des la le les el los da do di der die das y".split())
_DOMAIN = re.compile(r"[a-z0-9-]+(?:\.[a-z0-9-]+)*\.[a-z]{2,}")


def without_name_tail(title: str, max_words: int = 4) -> str:
    """`title` without a name after its last separator: "Title | Reuters", "Title - The Daily
    Example" and "Title – bbc.co.uk" are "Title". Feeds that carry other sites' stories (news
    aggregators, wire services) write the publisher so, and one story's copies were then two
    headlines. A name: at most `max_words` words, each capitalised (any word of a script
    without case), a joining word ("Times of India") or a domain, none with a digit ("Part 2"
    names no site); at least two words stay. Not a site's own name only, as `without_site_name`
    takes off for a page it reads: for comparing headlines, never for showing one."""
    cut, sep = max((title.rfind(sep), sep) for sep in TITLE_SEPARATORS)
    if cut <= 0:
        return title
    head, tail = title[:cut].rstrip(), title[cut + len(sep):].split()
    if not 1 <= len(tail) <= max_words or len(head.split()) < 2:
        return title
    for i, word in enumerate(tail):
        if any(ch.isdigit() for ch in word):
            return title
        named = (word[0].isalpha() and not word[0].islower()) or _DOMAIN.fullmatch(word)
        if not (named or (i and word.lower() in _NAME_JOINERS)):
            return title
    return head


_LABEL_SEPARATOR = " | "


def without_label_head(title: str, max_words: int = 3) -> str:
    """`title` without a section label before its first " | ": "Opinion | Title" (NYT's and
    WSJ's titles and feeds), "heise+ | Title" (heise's paid pieces) are "Title". A label: at
    most `max_words` words, none with a digit ("2026 | …" is no section); at least two words
    stay. For comparing headlines only: an article sent as "Opinion | Title" (a page's <title>,
    a CMS field) had its own story, stored as "Title", in its block."""
    cut = title.find(_LABEL_SEPARATOR)
    if cut <= 0:
        return title
    label, rest = title[:cut].split(), title[cut + len(_LABEL_SEPARATOR):].strip()
    if len(label) > max_words or any(ch.isdigit() for ch in title[:cut]) or len(rest.split()) < 2:
        return title
    return rest


_NON_WORD = re.compile(r"\W+")


@functools.lru_cache(maxsize=65536)
def headline_key(title: str) -> str:
    """What headlines compare by, wherever one story's copies are told apart (related blocks,
    feeds): without case, punctuation, a publisher's name after a separator
    (`without_name_tail`): "Title | Reuters" beside "Title" was one story shown twice, or a
    section label before one (`without_label_head`: "Opinion | Title"). Cached: a feed or a
    trending request keys every candidate of its pool, the same titles request after request."""
    return _NON_WORD.sub(" ", without_label_head(without_name_tail(title)).lower()).strip()


def drop_read_more(text: str) -> str:
    """`text` (collapsed, one paragraph a line) without the "Continue reading..." and "[mehr]"
    links and the WordPress and Guardian footers that feeds add to an item's teaser: on a
    card they read as part of the story, and they took the place of its words when cut."""
    if not text or not _READ_MORE_HINT.search(text):  # most texts: one C-speed search
        return text
    lines = [ln for ln in text.split("\n")
             if not (_READ_MORE_LINE.match(ln) or _FEED_FOOTER.match(ln))]
    if lines:
        lines[-1] = _READ_MORE_TAIL.sub("", lines[-1])
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def unescape(text: str) -> str:
    """Decode HTML entities, twice when a feed escaped them twice ("&amp;eacute;")."""
    once = html.unescape(text)
    if _LEFTOVER_ENTITY.search(once):
        once = html.unescape(once)
    return once


def clean_inline(text: str | None) -> str:
    """A one-line field (title, author): HTML tags dropped, entities decoded, one space between
    words, bidi controls dropped (`without_bidi_controls`). Text in angle brackets that is
    no HTML tag stays ("vector<int>", "Map<K, V>")."""
    if not text:
        return ""
    if "<" in text:
        text = _strip_inline_tags(text)
    text = without_bidi_controls(unescape(text))  # after: "&#8238;" is an RLO too
    if any(c in text for c in _STRIP_NOT_WS):
        return _WS.sub(" ", text.replace("\n", " ")).strip()
    # As in `collapse_whitespace`: str.split() splits where `_WS` and "\n" match, U+200B aside.
    return " ".join(text.replace("\u200b", " ").split())


def _strip_inline_tags(text: str) -> str:
    closed = {name.lower() for name in _CLOSING_TAG.findall(text)}

    def tag(m: re.Match[str]) -> str:
        name = (m.group(1) or "").lower()
        if not name or name in _HTML_ELEMENT_SET or name in closed or ":" in name:
            return " "
        return m.group(0)

    return _ANY_TAG.sub(tag, text)


def has_markup(text: str | None) -> bool:
    """Whether `text` carries an HTML tag ("a < b" and "AT&T" do not)."""
    return bool(text) and _TAG.search(text) is not None


# lxml.html's test for a whole document, which it parses as it is rather than in a <body>.
_FULL_HTML = re.compile(r"^\s*<(?:html|!doctype)", re.I)
# lxml.html's parser without its element class lookup, a Python call for each element the
# code touches (16,000 in the benchmark's 40 feeds): the same tree, of plain elements.
_HTML_PARSER = etree.HTMLParser()


def html_fragment(markup: str) -> etree._Element:
    """`markup` (HTML text) as `lxml.html.fragment_fromstring(markup, create_parent="div")`
    gives it: a <div> holding its elements and text; the same errors. That moves every
    element of the parsed <body> into a new <div> of its own document, a third of its CPU
    (1,900 summaries in the benchmark's 40 feeds); here the <body> becomes the <div> (still
    in its <html>), keeping its text only when it is more than whitespace, as lxml's does.
    Its elements are plain lxml ones (`_HTML_PARSER`), not lxml.html's: they have no
    `drop_tree` method (the function below does it)."""
    if _FULL_HTML.match(markup):  # lxml's own path, with its checks of the document's shape
        return _lxml_fragment(markup)
    doc = etree.fromstring(f"<html><body>{markup}</body></html>", _HTML_PARSER)
    bodies = [] if doc is None else [el for el in doc if el.tag == "body"]
    if doc is None or doc.tag != "html" or len(bodies) != 1:
        return _lxml_fragment(markup)
    root = bodies[0]
    root.tag = "div"
    root.attrib.clear()
    root.tail = None
    if not (root.text and root.text.strip()):
        root.text = None
    return root


def _lxml_fragment(markup: str) -> etree._Element:
    """lxml.html's fragment of `markup` in a <div>; its assertion on markup that is an <html>
    tag without a body ("too many bodies: []") raised as the parser error it is. Callers catch
    parser errors; the AssertionError of an item whose description was "<html>" failed its
    whole feed."""
    try:
        return lxml.html.fragment_fromstring(markup, create_parent="div")
    except AssertionError as e:
        raise etree.ParserError(str(e)) from e


def drop_tree(el: etree._Element) -> None:
    """lxml.html's `HtmlElement.drop_tree` for any element: `el` and its descendants leave
    the tree, its tail joins the text before it."""
    parent = el.getparent()
    if el.tail:
        previous = el.getprevious()
        if previous is None:
            parent.text = (parent.text or "") + el.tail
        else:
            previous.tail = (previous.tail or "") + el.tail
    parent.remove(el)


def html_to_text(markup: str | None) -> str:
    """HTML (a fragment or a page) to plain text with paragraph breaks kept."""
    if not markup or not markup.strip():
        return ""
    if "<" not in markup:
        return collapse_whitespace(unescape(markup))
    try:
        root = html_fragment(markup)
    except (etree.ParserError, ValueError):
        return collapse_whitespace(unescape(_TAG.sub(" ", markup)))
    for bad in list(root.iter(*_DROP_TAGS)):
        if bad.getparent() is not None:
            drop_tree(bad)
    parts: list[str] = []
    _walk_text(root, parts)
    text = "".join(parts)
    # Entities escaped twice survive lxml's single decoding pass.
    if _LEFTOVER_ENTITY.search(text):
        text = html.unescape(text)
    return collapse_whitespace(text)


def feed_html_to_text(markup: str | None) -> str:
    """A feed item's HTML (description, content) to plain text, as `html_to_text`; HTML that
    was escaped once too often is read once more. Feeds that escape their markup inside
    CDATA (`<![CDATA[&lt;p&gt;Text&lt;/p&gt;]]>`) or escape it twice (`&amp;lt;p&amp;gt;`)
    give HTML whose tags are text: their summaries showed "<p>Text</p>" and "Line
    one<br/>line two" on cards, while their titles, cleaned by `clean_inline`, lost them.
    Read again only when what came out carries markup a writer would not type as text (a
    closing tag, a <br>, <hr> or <img>, a tag with an attribute): "use the <div> element"
    in a teaser about HTML stays as it is."""
    text = html_to_text(markup)
    if "<" in text and _DECODED_MARKUP.search(text):
        return html_to_text(text)
    return text


def truncate(text: str, max_chars: int, ellipsis: str = "…") -> str:
    """Cut at a word boundary so the result (with the ellipsis) is at most max_chars long."""
    if len(text) <= max_chars:
        return text
    cut = text[: max(0, max_chars - len(ellipsis))]
    space = cut.rfind(" ")
    if space > max_chars // 2:
        cut = cut[:space]
    return cut.rstrip(" ,;:-") + ellipsis


# No zone is further from UTC than 14 hours (Kiribati's Line Islands, +14; -12 the other way).
MAX_OFFSET_HOURS = 14
MAX_OFFSET = timedelta(hours=MAX_OFFSET_HOURS)


def parse_date(value: str | None, site_zone: tzinfo = UTC) -> datetime | None:
    """An RFC 822 or ISO 8601 date string to an aware UTC datetime; None when it is not one.

    Naive values are taken as UTC (feeds that omit the offset mostly mean UTC or are off by
    hours; being off by hours is better than losing the date), or in `site_zone` when the
    source names its zone. Date-only values mean midnight UTC: a day, whatever the zone.
    """
    written = _written_date(value)
    if written is None:
        return None
    parsed, zone_unsaid = written
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=site_zone if zone_unsaid else UTC)
    return _utc(parsed)


def local_date(value: str | None, site_zone: tzinfo) -> datetime | None:
    """`value`, a time of day written without a zone, read in `site_zone`, in UTC; None when
    it says its zone or offset ("Z", "GMT", "+0000"), is a day alone, or is no date read
    here: the caller's own reading of it then stands (pure). For readers of their own, such
    as feedparser, which take every time without a zone for UTC."""
    written = _written_date(value)
    if written is None or not written[1]:
        return None
    return _utc(written[0].replace(tzinfo=site_zone))


def _written_date(value: str | None) -> tuple[datetime, bool] | None:
    """`value` as written (naive when it says no zone), and whether it is a time of day that
    says no zone, to be read in the site's; None when it is no date."""
    if not value:
        return None
    value = value.strip()
    if not value:
        return None
    parsed: datetime | None = None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        if _MERIDIEM.search(value):  # a text for readers (`dateline.with_clock` reads it)
            return None
        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
    if parsed is None:
        return None
    if parsed.tzinfo is not None and abs(parsed.utcoffset() or timedelta()) > MAX_OFFSET:
        # No zone has it: a JSON Feed's or a sitemap's "+15:00" was read a day off, where a
        # feed's is refused (`feeddates.impossible_offset`, feedparser reading its own).
        return None
    # "-0000" is RFC 5322's UTC with the sender's zone unsaid: UTC, not the site's. A day
    # alone ("2026-11-25") names a day, not an instant in it: read in Berlin it became 23:00
    # of the day before, shown as the wrong day, so it stays midnight UTC (the day written).
    zone_unsaid = parsed.tzinfo is None and ":" in value and not value.endswith("-0000")
    return parsed, zone_unsaid


def _utc(parsed: datetime) -> datetime | None:
    try:
        return parsed.astimezone(UTC)
    except (OverflowError, ValueError):
        return None


def struct_time_to_utc(value: object) -> datetime | None:
    """feedparser's `*_parsed` (a UTC time.struct_time) to an aware datetime, None if unusable."""
    if value is None:
        return None
    try:
        fields = tuple(value)[:6]  # type: ignore[arg-type]
        return datetime(*fields, tzinfo=UTC)  # type: ignore[misc]
    except (TypeError, ValueError, OverflowError):
        return None


def _walk_text(el: etree._Element, out: list[str]) -> None:
    tag = el.tag if isinstance(el.tag, str) else ""
    block = tag.lower() in _BLOCK_TAGS
    if block:
        out.append("\n")
    if el.text and isinstance(el.tag, str):
        out.append(el.text)
    for child in el:
        _walk_text(child, out)
        if child.tail:
            out.append(child.tail)
    if block:
        out.append("\n")


def _known_codec(name: str) -> bool:
    try:
        codecs.lookup(name)
    except LookupError:
        return False
    return True


def _strip_bom(text: str) -> str:
    return text[1:] if text.startswith("\ufeff") else text


__all__ = [
    "clean_inline",
    "collapse_whitespace",
    "declared_charset",
    "decode_html",
    "drop_read_more",
    "drop_tree",
    "feed_html_to_text",
    "html_fragment",
    "html_to_text",
    "local_date",
    "parse_date",
    "struct_time_to_utc",
    "truncate",
    "unescape",
    "valid_char_refs",
    "without_bidi_controls",
]


def entry_starts(body: bytes, tags: str, after: int = 0) -> list[int]:
    """Where each element named one of `tags` ("item|entry", any namespace prefix) starts in
    `body`, from `after` on: the cut points of `entry_documents`."""
    pattern = re.compile(rb"<(?:[\w.-]+:)?(?:%s)[\s>]" % tags.encode())
    return [m.start() for m in pattern.finditer(body, after)]


def entry_documents(body: bytes, head: bytes, starts: list[int]) -> Iterator[bytes]:
    """A malformed document (a feed, a sitemap) cut at `starts` (`entry_starts`): `head`, all
    a reader needs before the first entry (declaration, root start tag, a feed's channel),
    with each entry and what follows it up to the next. Read one by one, a broken entry costs
    itself alone, where a recovering parser lost every entry after it."""
    for start, end in pairwise([*starts, len(body)]):
        yield head + body[start:end]
