"""The faster text cleaning and link joining give what the plain ones gave (issue 6, parse CPU).

`collapse_whitespace` and `clean_inline` collapse a text with str.split where they ran a
regex over each line, and `html_fragment` (plain lxml elements, `drop_tree`) turns the parsed <body> into the fragment's <div> where
lxml's `fragment_fromstring` moved every element into a new one. Both are compared with
those reference versions over every text of the captured feeds (../shared/data/news-feeds)
and over generated texts made of the whitespace the two ways could read apart. A link that
`joined_as_is` passes through unparsed is what urljoin (and feedparser's) gives for it.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from urllib.parse import urljoin

import feedparser
import lxml.html
import pytest
from feedparser.urls import _urljoin as feedparser_urljoin
from hypothesis import example, given, settings
from hypothesis import strategies as st
from lxml import etree

from aggregator import textclean
from aggregator.canonical import joined, joined_as_is
from aggregator.textclean import (
    _strip_inline_tags,
    clean_inline,
    collapse_whitespace,
    html_fragment,
    html_to_text,
    unescape,
    without_bidi_controls,
)

FEEDS_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "news-feeds"
_WS = re.compile(r"[ \t\r\f\v\u00a0\u1680\u2000-\u200b\u2028\u2029\u202f\u205f\u3000]+")
_BLANK_LINES = re.compile(r"\n\s*\n+")


def collapse_by_line(text: str) -> str:
    """`collapse_whitespace` as it was: a regex over each line, then str.strip."""
    text = without_bidi_controls(text)
    lines = [_WS.sub(" ", line).strip() for line in text.replace("\r\n", "\n").split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()


def clean_inline_by_regex(text: str | None) -> str:
    """`clean_inline` as it was: `_WS` over the text, then str.strip."""
    if not text:
        return ""
    if "<" in text:
        text = _strip_inline_tags(text)
    text = without_bidi_controls(unescape(text))
    return _WS.sub(" ", text.replace("\n", " ")).strip()


def html_to_text_by_lxml_html(markup: str | None) -> str:
    """`html_to_text` as it was: lxml.html's fragment and its `drop_tree`, and the
    line-by-line collapse."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(textclean, "html_fragment",
                   lambda m: lxml.html.fragment_fromstring(m, create_parent="div"))
        mp.setattr(textclean, "drop_tree", lambda el: el.drop_tree())
        mp.setattr(textclean, "collapse_whitespace", collapse_by_line)
        return textclean.html_to_text(markup)


def lxml_fragment(markup: str) -> str:
    """What lxml's own fragment parser gives (serialised), or the error it raises; its
    assertion on a bodiless <html> as the parser error `html_fragment` makes of it."""
    def parse():
        try:
            return lxml.html.fragment_fromstring(markup, create_parent="div")
        except AssertionError as e:
            raise etree.ParserError(str(e)) from e

    return _outcome(parse)


def our_fragment(markup: str) -> str:
    return _outcome(lambda: html_fragment(markup))


def _outcome(parse) -> str:
    try:
        return etree.tostring(parse(), encoding="unicode", with_tail=False)
    except Exception as e:  # noqa: BLE001 - the error itself is what is compared
        # lxml's "too many bodies" names elements by their addresses
        return re.sub(r" at 0x[0-9a-f]+", "", repr(e))


def _feed_texts() -> list[str]:
    """Every title, summary and content value of the captured feeds, as feedparser gives
    them (markup included), and each one's markup read as text without collapsing."""
    if not FEEDS_DIR.is_dir():
        return []
    texts: list[str] = []
    for path in sorted(p for p in FEEDS_DIR.rglob("*") if p.is_file()):
        if path.suffix not in {".xml", ".rss", ".atom", ".json"}:
            continue
        parsed = feedparser.parse(path.read_bytes())
        for entry in parsed.entries:
            texts += [entry.get("title") or "", entry.get("summary") or ""]
            texts += [c.get("value") or "" for c in entry.get("content") or ()]
    texts = [t for t in texts if t.strip()]
    # The walked text of each, with the paragraph breaks `html_to_text` collapses.
    for t in list(texts):
        if "<" in t:
            try:
                texts.append(lxml.html.fragment_fromstring(t, create_parent="div").text_content())
            except (etree.ParserError, ValueError):
                pass
    return texts


FEED_TEXTS = _feed_texts()


@pytest.mark.skipif(not FEED_TEXTS, reason=f"captured feeds not found at {FEEDS_DIR}")
def test_collapse_whitespace_is_unchanged_on_every_captured_feed_text() -> None:
    assert len(FEED_TEXTS) > 1000
    differ = [t for t in FEED_TEXTS if collapse_whitespace(t) != collapse_by_line(t)]
    assert differ == []


@pytest.mark.skipif(not FEED_TEXTS, reason=f"captured feeds not found at {FEEDS_DIR}")
def test_clean_inline_is_unchanged_on_every_captured_feed_text() -> None:
    differ = [t for t in FEED_TEXTS if clean_inline(t) != clean_inline_by_regex(t)]
    assert differ == []


@pytest.mark.skipif(not FEED_TEXTS, reason=f"captured feeds not found at {FEEDS_DIR}")
def test_html_fragment_is_lxml_s_fragment_on_every_captured_feed_text() -> None:
    markup = [t for t in FEED_TEXTS if "<" in t]
    assert len(markup) > 500
    differ = [t for t in markup if our_fragment(t) != lxml_fragment(t)]
    assert differ == []
    differ = [t for t in FEED_TEXTS if html_to_text(t) != html_to_text_by_lxml_html(t)]
    assert differ == []


# Every character str.isspace takes, those `_WS` takes (U+200B is not isspace), the bidi
# controls, a letter: where a one-pass collapse could part from the line-by-line one.
_SPACES = "".join(chr(c) for c in range(sys.maxunicode + 1) if chr(c).isspace())
_ALPHABET = _SPACES + "\u200b\u202e\u2066\u200fab"


@settings(max_examples=1500, deadline=None)
@given(st.text(alphabet=_ALPHABET, max_size=40))
@example("a\u200b\nb")
@example(" \x85a\x1c \n \u3000b\u2029")
@example("a\r\r\n \r\nb")
def test_collapse_whitespace_is_unchanged_on_any_whitespace(text: str) -> None:
    assert collapse_whitespace(text) == collapse_by_line(text)
    assert clean_inline(text) == clean_inline_by_regex(text)


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([
    "<p>", "</p>", "<br>", " ", "\n", "\t", "text", "<b>bold</b>", "<script>x</script>",
    "<html>", "<body class='b'>", "</body>", "<head><title>t</title></head>", "<!doctype html>",
    "<!-- c -->", "&amp;", "<img src='i.jpg'>", "</html>", "<frameset>", "\x85",
    "<style>s</style>", "<div>", "</div>", "&amp;amp;", "\u200b",
]), max_size=10).map("".join))
@example("")
@example("  ")
@example("<body>")
@example("<html><head></head></html>")
def test_html_fragment_is_lxml_s_fragment_on_generated_markup(markup: str) -> None:
    assert our_fragment(markup) == lxml_fragment(markup)
    try:
        expected = html_to_text_by_lxml_html(markup)
    except AssertionError:  # lxml's "too many bodies" (a lone "<html>"): the tags dropped
        assert "<html" not in html_to_text(markup).lower()
    else:
        assert html_to_text(markup) == expected


# ------------------------------------------------------------------ links taken as they are

_LINK = re.compile(rb"""(?:href|src|url)=["']([^"']+)["']|<(?:link|guid|id|loc)[^>]*>([^<]+)<""")
BASES = ["http://feeds.example.com/news/feed.xml", "https://feeds.example.com/a/b/", "",
         "http://[::1]:8080/feed", "http://[object Object]/feed", "https://bücher.example/feed"]


def _feed_links() -> list[str]:
    if not FEEDS_DIR.is_dir():
        return []
    links = {(m[1] or m[2]).decode("utf-8", "replace").strip()
             for p in FEEDS_DIR.rglob("*") if p.is_file() for m in _LINK.finditer(p.read_bytes())}
    return sorted(links)


def urljoin_outcome(base: str, link: str) -> str:
    try:
        return urljoin(base, link)
    except ValueError as e:
        return repr(e)


@pytest.mark.skipif(not FEED_TEXTS, reason=f"captured feeds not found at {FEEDS_DIR}")
def test_links_of_the_captured_feeds_join_as_urljoin_joins_them() -> None:
    links = _feed_links()
    assert sum(joined_as_is(BASES[0], link) for link in links) > 1000
    for base in BASES:
        for link in links:
            if joined_as_is(base, link):
                assert urljoin_outcome(base, link) == link, (base, link)
                assert feedparser_urljoin(base, link) == link, (base, link)
            expected = urljoin_outcome(base, link)
            assert joined(base, link) == ("" if expected.startswith("ValueError") else expected)


# The characters urljoin reads: delimiters, the ones it strips or removes, brackets.
_URL_CHARS = st.sampled_from(list("/?#;:[]@.%=&+ \t\n\r\x0bé\u3000ahx1") + ["//", "http:", "https:"])


@settings(max_examples=3000, deadline=None)
@given(st.sampled_from(BASES),
       st.sampled_from(["http://", "https://", "HTTP://", "ftp://", "", "/"]),
       st.lists(_URL_CHARS, max_size=12).map("".join))
@example(BASES[0], "http://", "h/p?#f")
@example(BASES[0], "http://", "h/p;")
@example(BASES[0], "https://", "h/p?")
@example(BASES[3], "http://", "h/p")
def test_a_link_taken_as_it_is_is_what_urljoin_gives(base: str, scheme: str, rest: str) -> None:
    link = scheme + rest
    if joined_as_is(base, link):
        assert urljoin_outcome(base, link) == link
        assert feedparser_urljoin(base, link) == link
