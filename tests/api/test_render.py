"""api.render: the server-side related block is accessible, and inert whatever the data holds."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aggregator.canonical import site_key
from api.render import (
    OtherSiteLinks,
    Words,
    byline_name,
    date_language,
    heading_level_of,
    initials,
    link_rels,
    render_block_html,
    safe_http_url,
    site_mark,
    snippet,
    text_dir,
)

ALLOWED_TAGS = {"section", "h2", "h3", "h4", "h5", "h6", "ul", "li", "a", "span", "img", "p", "time"}
HOSTILE_STRINGS = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "'><svg onload=alert(1)>",
    "</li></ul></section><script>alert(1)</script>",
    "&lt;script&gt;",  # already-escaped text must stay visible as typed
    "<!-- x --><![CDATA[ y ]]>",
    "\u2028\u2029\x00",
]
HOSTILE_URLS = [
    "javascript:alert(1)",
    "JaVaScRiPt:alert(1)",
    " javascript:alert(1)",
    "java\tscript:alert(1)",
    "java\nscript:alert(1)",
    "\x01javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "vbscript:msgbox(1)",
    "//evil.example/x",
    "/relative/path",
    "https://",
    "http://[::1",
]


class Parsed(HTMLParser):
    """Collects tags, attributes and text, the way a browser's tokenizer sees them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str, str | None]] = []
        self.texts: list[str] = []
        self.other: list[str] = []
        self.elements: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend((tag, name, value) for name, value in attrs)
        self.elements.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.texts.append(data)

    def handle_comment(self, data):
        self.other.append(f"comment:{data}")

    def handle_decl(self, decl):
        self.other.append(f"decl:{decl}")

    def unknown_decl(self, data):
        self.other.append(f"unknown:{data}")


def parse(html: str) -> Parsed:
    parser = Parsed()
    parser.feed(html)
    parser.close()
    return parser


def card(**fields) -> dict:
    base = {
        "id": "s1",
        "url": "https://news.example/a",
        "title": "Putin agrees to halt strikes on energy sites",
        "summary": "The Kremlin said the pause would last 30 days.",
        "site": "News Example",
        "source": "news-example",
        "category": "politics",
        "author": "Jane Smith",
        "image_url": "https://img.example/a.jpg",
        "published_at": "2025-03-18T19:00:00+00:00",
        "score": 0.9,
        "reason": "same event",
    }
    base.update(fields)
    return base


def assert_inert(html: str) -> Parsed:
    parsed = parse(html)
    assert set(parsed.tags) <= ALLOWED_TAGS
    assert parsed.other == []
    for tag, name, value in parsed.attrs:
        assert not name.startswith("on"), (tag, name)
        if name in {"href", "src"}:
            assert safe_http_url(value) == value, (tag, name, value)
            assert value.lower().startswith(("http://", "https://"))
    return parsed


def assert_named_by_its_heading(parsed, html: str, heading: str, tag: str = "h2") -> None:
    """The region is named by its heading (aria-labelledby), not by a copy of its text (aria-label),
    which screen readers read as one more label and page translators leave as it was."""
    attrs = {(tag, name): value for tag, name, value in parsed.attrs}
    assert ("section", "aria-label") not in attrs
    assert attrs[("section", "aria-labelledby")] == attrs[(tag, "id")]
    assert re.fullmatch(r"tdg-h-[0-9a-f]{10}", attrs[(tag, "id")])
    assert heading in parsed.texts
    assert html.count("tdg-h-") == 2


def test_two_different_blocks_on_a_page_have_different_heading_ids():
    first = render_block_html({"related": [card()]})
    other = render_block_html({"related": [card(id="s2")]})
    retitled = render_block_html({"related": [card()]}, words=Words(heading="More"))
    ids = {re.search(r'id="([^"]+)"', html).group(1) for html in (first, other, retitled)}
    assert len(ids) == 3
    assert render_block_html({"related": [card()]}) == first  # cacheable: same block, same HTML


def test_block_markup_is_accessible_and_complete():
    html = render_block_html({"article": card(), "related": [card(), card(id="s2", url=None)]})
    parsed = assert_inert(html)
    assert parsed.tags[:3] == ["section", "h2", "ul"]
    assert_named_by_its_heading(parsed, html, "Related stories")
    assert ("img", "alt", "") in parsed.attrs
    assert ("img", "loading", "lazy") in parsed.attrs
    assert ("img", "referrerpolicy", "no-referrer") in parsed.attrs
    assert ("a", "href", "https://news.example/a") in parsed.attrs
    assert ("li", "data-story-id", "s2") in parsed.attrs
    assert parsed.tags.count("li") == 2
    assert parsed.tags.count("a") == 1  # the card without a URL has no link
    # Story text sets its own direction (an Arabic title on an English page, or the reverse).
    for cls in ("tdg-title", "tdg-snippet", "tdg-site"):
        assert html.count(f'class="{cls}" dir="ltr"') == 2
    text = "".join(parsed.texts)
    for expected in ("Putin agrees to halt strikes", "The Kremlin said", "News Example", "JS",
                     "By Jane Smith", "18 Mar 2025"):
        assert expected in text


def test_heading_is_escaped_and_empty_block_renders_nothing():
    assert render_block_html({"related": []}) == ""
    assert render_block_html({}) == ""
    html = render_block_html({"related": [card()]}, words=Words(heading='<b>"More"</b>'))
    parsed = assert_inert(html)
    assert_named_by_its_heading(parsed, html, '<b>"More"</b>')
    assert '<b>"More"</b>' in parsed.texts


@pytest.mark.parametrize("hostile", HOSTILE_STRINGS)
@pytest.mark.parametrize("field", ["title", "summary", "site", "author", "id"])
def test_hostile_text_fields_render_as_text(field, hostile):
    parsed = assert_inert(render_block_html({"related": [card(**{field: hostile})]}))
    if field in {"title", "site"}:
        assert hostile.strip() in parsed.texts
    if field == "id":
        assert ("li", "data-story-id", hostile.strip()) in parsed.attrs


@pytest.mark.parametrize("bad_url", HOSTILE_URLS)
def test_unsafe_urls_are_dropped(bad_url):
    assert safe_http_url(bad_url) is None
    html = render_block_html({"related": [card(url=bad_url, image_url=bad_url)]})
    parsed = assert_inert(html)
    assert "a" not in parsed.tags and "img" not in parsed.tags
    assert card()["title"] in parsed.texts  # the story is still shown, just not linked


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://news.example/a?b=1&c=2", "https://news.example/a?b=1&c=2"),
        ("HTTP://NEWS.EXAMPLE/", "HTTP://NEWS.EXAMPLE/"),
        ("  https://news.example/a  ", "https://news.example/a"),
        (None, None),
        (42, None),
    ],
)
def test_safe_http_url_keeps_real_links(url, expected):
    assert safe_http_url(url) == expected


def test_quotes_in_an_https_url_cannot_leave_the_attribute():
    sneaky = 'https://ok.example/"onmouseover=alert(1)\'<script>'
    parsed = assert_inert(render_block_html({"related": [card(url=sneaky, image_url=sneaky)]}))
    assert ("a", "href", sneaky) in parsed.attrs
    assert ("img", "src", sneaky) in parsed.attrs


def test_ampersands_in_urls_are_escaped_in_attributes():
    html = render_block_html({"related": [card(url="https://n.example/?a=1&b=2")]})
    assert 'href="https://n.example/?a=1&amp;b=2"' in html
    assert ("a", "href", "https://n.example/?a=1&b=2") in parse(html).attrs


OWN_AND_OTHER = {"related": [card(id="own", url="https://www.news.example/b"),
                             card(id="other", url="https://other.example/c?d=1&e=2")]}


@pytest.mark.parametrize(("new_tab", "rel", "expected"), [
    (True, ("nofollow", "ugc"), {"target": "_blank", "rel": "noopener nofollow ugc"}),
    (True, (), {"target": "_blank", "rel": "noopener"}),
    (False, ("sponsored",), {"rel": "sponsored"}),
    (False, (), {}),
])
def test_links_to_other_sites_open_and_carry_rel_as_asked(new_tab, rel, expected):
    """The page is news.example: its own story (www. or not) stays a plain link, the other
    site's opens and carries rel as asked. Every link was plain, whatever the publisher wanted."""
    links = OtherSiteLinks(site_key("https://news.example/page"), new_tab, rel)
    parsed = assert_inert(render_block_html(OWN_AND_OTHER, links=links))
    anchors = [attrs for tag, attrs in parsed.elements if tag == "a"]
    assert anchors == [
        {"class": "tdg-link", "href": "https://www.news.example/b"},
        {"class": "tdg-link", "href": "https://other.example/c?d=1&e=2", **expected}]


def test_link_rels_takes_the_link_types_for_other_sites_and_names_another():
    assert link_rels("") == ()
    assert link_rels(" UGC  nofollow ugc ") == ("nofollow", "ugc")  # no case, once, in order
    with pytest.raises(ValueError, match="'opener'"):  # it would undo a new tab's noopener
        link_rels("nofollow opener")


# Shared with the widget's own rule (tests/api/test_widget_browser.py runs widget.js on each).
INITIALS_CASES = [
    ("Jane Smith", "JS"),
    ("By Laura Kuenssberg, Political editor", "LK"),
    ("by jean-luc picard", "JP"),
    ("Mary Ann van der Berg", "MB"),
    ("Reuters", "R"),
    ("Jane Smith and John Doe", "JS"),
    ("Jane Smith & John Doe", "JS"),
    ("Andrew Marr", "AM"),  # "and" inside a name is not a separator
    ("Élodie Ðorđević", "ÉÐ"),
    ("ßarah Weiß", "SW"),  # "ß".upper() is "SS": still one letter per word
    ("  ", ""),
    ("", ""),
    ("2024 - @@", ""),
    # what remains of real bylines once stored (aggregator/bylines.py keeps these as they are)
    ("The Associated Press", "AP"),
    ("Dr. Christopher Kunz", "CK"),
    ("Theodore Roosevelt IV", "TR"),
    ("Martin Luther King Jr.", "MK"),
    ("Archer, L. A.", "LA"),  # Science's "Surname, Initials"
    ("Ash, C., Mueller, K. L.", "CA"),
    ("Staff and agencies", "S"),
    ("Sandee LaMotte, CNN", "SL"),
    ("Mohammed bin Salman", "MS"),
    ("The", "T"),
    ("Dr.", "D"),
    ("Éric andré", "ÉA"),  # "and" inside a word is not a separator, whatever its letters
    ("Renée Éand Zoë", "RZ"),
    ("Lisa Kaczke; Trevor J Mitchell", "LK"),
    ("Ana | Desk", "A"),
    ("Sample Reporter · Demo Daily", "SR"),  # a page's byline line (bylines.py keeps it)
    ("Jane Doe • The Times", "JD"),
    # Scripts without case write no initials: two Arabic letters joined into a word ("مع",
    # "with"), a Japanese name gave "山太". Their first letter alone.
    ("محمد علي", "م"),
    # Past the Arabic article joined to the word: every "ال…" name showed "ا".
    ("الجزيرة", "ج"),
    ("العربية", "ع"),
    ("اَلْجَزِيرَة", "ج"),  # vowel marks on the article
    ("ٱلعربية", "ع"),  # alif wasla
    ("الشرق الأوسط", "ش"),
    ("الم", "ا"),  # one letter after "ال": not the article ("pain" without its hamza)
    ("ال", "ا"),
    ("ال2024", "ا"),
    ("Al Jazeera", "AJ"),
    # Hebrew's article "ה" is written like a word's own letter (Herzl): left on.
    ("הארץ", "ה"),
    ("הרצל", "ה"),
    ("山田 太郎", "山"),
    ("דוד כהן", "ד"),
    ("Jane 王", "J"),
    # Signs before a name's letters: a word that began with one was skipped, and a name in
    # quotes lost its first name, a bracketed or account's byline had no initials at all.
    ('"Jane Doe"', "JD"),
    ("«Jean Dupont»", "JD"),
    ("(AP)", "A"),
    ("@TechCrunch", "T"),
    ("123", ""),
]


@pytest.mark.parametrize(("author", "expected"), [*INITIALS_CASES, (None, "")])
def test_initials(author, expected):
    assert initials(author) == expected


# (site, mark): widget.js gives each the same (tests/api/test_widget_browser.py).
SITE_MARK_CASES = [
    ("bbc.co.uk", "BBC"),
    ("www.cnn.com", "CNN"),
    ("theguardian.com", "T"),
    ("News Example", "NE"),
    ("Reuters", "R"),
    ("", ""),
    (None, ""),
    ("-.example", ""),
    # A name's acronym shows whole, as a host's short label does: "BBC" showed "B".
    ("BBC", "BBC"),
    ("BBC News", "BBC"),
    ("The BBC", "BBC"),
    ("NPR", "NPR"),
    ("N24", "N24"),
    ("DER SPIEGEL", "DS"),  # in capitals throughout: a wordmark, not an acronym
    ("NEWSROOM", "N"),  # longer than a host's short label
    ("Bbc", "B"),
    ("X", "X"),
    ("الجزيرة", "ج"),
    ("العربية", "ع"),
]


@pytest.mark.parametrize(("site", "expected"), SITE_MARK_CASES)
def test_site_mark(site, expected):
    assert site_mark(site) == expected


def test_card_without_image_shows_the_site_mark():
    parsed = assert_inert(render_block_html({"related": [card(image_url=None, site="bbc.co.uk")]}))
    assert "img" not in parsed.tags
    assert ("span", "class", "tdg-thumb tdg-thumb-empty") in parsed.attrs
    assert "BBC" in parsed.texts


@given(st.text(max_size=80))
def test_initials_are_at_most_two_uppercase_letters(author):
    result = initials(author)
    assert len(result) <= 2
    assert all(ch.isalpha() for ch in result)
    assert result == result.upper()


# (text, direction): widget.js gives each the same (tests/api/test_widget_browser.py).
TEXT_DIR_CASES = [
    # Arabic, Hebrew and Persian titles that open with a Latin name: dir="auto" made them
    # left to right, their words out of order.
    ("Apple تطلق هاتف iPhone 16 الجديد في الأسواق", "rtl"),
    ("Google משיקה את Gemini בישראל היום", "rtl"),
    ("«BBC»: ایران ۳ کشته", "rtl"),
    ("الحكومة تعلن خطة جديدة", "rtl"),
    ("أخبار اليوم", "rtl"),
    # An English title naming an Arabic word or two stays left to right.
    ("Al Jazeera's الجزيرة reports from Gaza", "ltr"),
    ("Putin agrees to halt strikes", "ltr"),
    ("bbc.co.uk", "ltr"),
    ("2 of 5: نعم", "rtl"),
    ("NASA ناسا", "rtl"),  # half the words: more than 40%
    ("NASA and ناسا", "ltr"),  # a third
    ("2024", "auto"),  # no letter: nothing to decide
    ("", "auto"),
    ("،Apple", "ltr"),  # an Arabic comma is no letter
]


@pytest.mark.parametrize(("text", "expected"), TEXT_DIR_CASES)
def test_text_dir(text, expected):
    assert text_dir(text) == expected


def test_story_text_takes_the_direction_of_most_of_its_words():
    html = render_block_html({"related": [card(
        title="Apple تطلق هاتف iPhone 16 الجديد", summary="The Kremlin said", site="أخبار اليوم")]})
    assert '<span class="tdg-title" dir="rtl">' in html
    assert '<p class="tdg-snippet" dir="ltr">' in html
    assert '<span class="tdg-site" dir="rtl" title=' in html


def test_the_whole_site_name_is_the_site_names_title():
    """The grid cuts a long site name with "…": its title attribute has the whole name, for
    sighted readers to see on hover, escaped as any text is."""
    html = render_block_html({"related": [card(site='Frankfurter "Allgemeine" <Zeitung>')]})
    parsed = assert_inert(html)
    assert ("span", "title", 'Frankfurter "Allgemeine" <Zeitung>') in parsed.attrs


@pytest.mark.parametrize("site, published_at, parts", [
    ("News Example", "2025-03-18T19:00:00+00:00", [("span", "tdg-site"), ("span", "tdg-sep"),
                                                   ("time", "tdg-time")]),
    ("", "2025-03-18T19:00:00+00:00", [("time", "tdg-time")]),
    ("News Example", "", [("span", "tdg-site")]),
])
def test_the_dot_between_site_and_time_is_an_element_of_its_own(site, published_at, parts):
    """Drawn at the start of the time (CSS ::before), the dot of an English date on a
    right-to-left page sat on the date's far side. Its own element, between two parts that
    each have their dir, it sits between them in either direction; there only when both are."""
    html = render_block_html({"related": [card(author="", site=site, source="",
                                               published_at=published_at)]})
    elements = parse(html).elements
    meta_at = next(i for i, (_, a) in enumerate(elements) if a.get("class") == "tdg-meta")
    meta = elements[meta_at + 1:]
    assert [(tag, a["class"]) for tag, a in meta] == parts
    assert all(a.get("dir") for _, a in meta if a["class"] != "tdg-sep")
    assert [a.get("aria-hidden") for _, a in meta if a["class"] == "tdg-sep"] == ["true"] * (len(parts) == 3)
    assert ("\u00b7" in parse(html).texts) == (len(parts) == 3)


def test_snippet_cuts_at_a_word_with_an_ellipsis():
    long = "word " * 60
    cut = snippet(long, max_chars=50)
    assert cut.endswith("…") and len(cut) <= 51
    assert not cut[:-1].endswith(" ")
    assert snippet("  short \n text ") == "short text"
    assert snippet(None) == ""


hostile_text = st.one_of(
    st.text(max_size=60),
    st.sampled_from(HOSTILE_STRINGS),
    st.lists(st.sampled_from(["<", ">", '"', "'", "&", "script", "on", "=", "/", " ", "javascript:"]),
             max_size=20).map("".join),
)
hostile_url = st.one_of(st.sampled_from(HOSTILE_URLS), st.text(max_size=40),
                        st.builds(lambda t: "https://x.example/" + t, st.text(max_size=20)))


@settings(max_examples=300, deadline=None)
@given(title=hostile_text, summary=hostile_text, site=hostile_text, author=hostile_text,
       url=hostile_url, image_url=hostile_url)
def test_any_card_renders_inert_and_keeps_its_title(title, summary, site, author, url, image_url):
    block = {"related": [card(title=title, summary=summary, site=site, author=author,
                              url=url, image_url=image_url)]}
    parsed = assert_inert(render_block_html(block))
    # The title comes back as exactly one text node equal to what was sent (or the fallback).
    assert (title.strip() or "Untitled") in parsed.texts
    assert parsed.tags.count("a") == (1 if safe_http_url(url) else 0)
    assert parsed.tags.count("img") == (1 if safe_http_url(image_url) else 0)


@pytest.mark.parametrize("published_at, datetime_attr", [
    ("2026-12-05T15:05:24.739888+00:00", "2026-12-05T15:05:24+00:00"),
    ("2025-03-18T19:00:00Z", "2025-03-18T19:00:00+00:00"),
    ("2025-03-18T19:00:00.5", "2025-03-18T19:00:00"),
])
def test_time_datetime_is_valid_html(published_at, datetime_attr):
    """Stored times carry microseconds; a <time datetime> allows at most three digits of a
    second, so the fragment failed HTML validation on every card."""
    parsed = parse(render_block_html({"related": [card(published_at=published_at)]}))
    assert ("time", "datetime", datetime_attr) in parsed.attrs


def test_fragment_reads_as_words_without_the_widget_css():
    """Without widget.js the parts ran together: "NEPutin agrees…", "By Jane SmithNews
    Example18 Mar 2025"."""
    html = render_block_html({"related": [card(image_url=None)]})
    # The inline parts as an unstyled page shows them: tags gone, nothing added between.
    inline = " ".join(re.sub(r"<[^>]+>", "", html).split())
    assert "NE Putin agrees to halt strikes on energy sites" in inline
    # The dot between site and date is text too (it was the widget's CSS alone).
    assert "JS By Jane Smith News Example \u00b7 18 Mar 2025" in inline


def test_the_default_heading_says_it_is_english():
    """On a French page a screen reader read "Related stories" with its French voice."""
    assert '<h2 class="tdg-heading" id="' in render_block_html({"related": [card()]})
    assert re.search(r'<h2 [^>]*lang="en">Related stories</h2>', render_block_html({"related": [card()]}))
    assert "lang=" not in render_block_html({"related": [card()]}, words=Words(heading="À lire aussi"))


@pytest.mark.parametrize("level", [3, 6])
def test_the_heading_level_is_the_pages_to_choose(level):
    """A fixed <h2> under an article whose sections are h2s put the block beside them in the
    page's outline, where the publisher wanted it under the article (an h3)."""
    html = render_block_html({"related": [card()]}, heading_level=level)
    assert re.search(rf'<h{level} class="tdg-heading" [^>]*>Related stories</h{level}>', html)
    assert "<h2" not in html
    assert_named_by_its_heading(assert_inert(html), html, "Related stories", f"h{level}")


@pytest.mark.parametrize("level", [1, 7])
def test_a_heading_level_out_of_range_is_an_error(level):
    with pytest.raises(ValueError, match="heading_level"):
        render_block_html({"related": [card()]}, heading_level=level)


def test_heading_level_is_read_as_widget_js_reads_its_attribute():
    """/v1/widget's heading_level= took what the lax integer parse takes ("03", "+3", "3.0"),
    which widget.js's data-heading-level (/^[2-6]$/ once trimmed) reads as no level: one
    digit, 2 to 6, for both; blank is 2."""
    assert [heading_level_of(v) for v in ("2", " 3 ", "6", "", "  ")] == [2, 3, 6, 2, 2]
    for bad in ("03", "+3", "3.0", "3_", "1", "7", "h3", "٣", "３"):
        with pytest.raises(ValueError, match="one digit, 2 to 6"):
            heading_level_of(bad)


@pytest.mark.parametrize("author", ["By Priya Shah", "by Priya Shah", "  BY   Priya Shah"])
def test_byline_label_is_not_doubled(author):
    """Older or unnormalized rows store the label with the name; screen readers heard
    "By By Priya Shah"."""
    html = render_block_html({"related": [card(author=author)]})
    assert '<span class="tdg-sr">By Priya Shah</span>' in html
    assert '<span class="tdg-sr">By Jane Smith</span>' in render_block_html({"related": [card()]})
    # A name that only starts with the letters keeps them.
    assert '<span class="tdg-sr">By Byron Katie</span>' in render_block_html(
        {"related": [card(author="Byron Katie")]})


FRENCH = Words(heading="À lire aussi", untitled="Sans titre", by="Par",
               new_tab_label="s'ouvre dans un nouvel onglet")


def test_every_word_of_the_block_is_the_publishers_to_give():
    """A French page could change the heading only: a story without a title said "Untitled",
    a byline "By …", whatever the page's language."""
    block = {"related": [card(title="", author="By Jean Dupont")]}
    parsed = assert_inert(render_block_html(block, words=FRENCH))
    assert {"À lire aussi", "Sans titre", "Par Jean Dupont"} <= set(parsed.texts)
    assert not {"Related stories", "Untitled"} & set(parsed.texts)
    assert not any(t.startswith("By ") for t in parsed.texts)
    assert ("span", "lang", "en") not in parsed.attrs and ("h2", "lang", "en") not in parsed.attrs
    # The English defaults stay, each whole one marked English for a screen reader.
    english = parse(render_block_html(block))
    assert {"Related stories", "Untitled", "By Jean Dupont"} <= set(english.texts)
    assert [tag for tag, name, value in english.attrs if (name, value) == ("lang", "en")] == [
        "h2", "span"]


# (stored author, the page's byline word, the name said after it): shared with widget.js
# (tests/api/test_widget_browser.py).
BYLINE_CASES = [
    ("Par Jean Dupont", "Par", "Jean Dupont"),
    ("par   Jean Dupont", "Par", "Jean Dupont"),
    ("PAR Jean Dupont", "par", "Jean Dupont"),
    ("By Jean Dupont", "Par", "Jean Dupont"),
    ("Von Anna Schmidt", "Von", "Anna Schmidt"),
    ("Écrit par Léa Roy", "écrit par", "Léa Roy"),
    ("Paris Hilton", "Par", "Paris Hilton"),  # only the word: a name that starts with its letters
    ("Par", "Par", "Par"),
    ("Jean Dupont", "Par", "Jean Dupont"),
]


@pytest.mark.parametrize("author, by, name", BYLINE_CASES)
def test_the_pages_byline_word_is_said_once(author, by, name):
    """With by="Par", a stored "Par Jean Dupont" (not normalised) read "Par Par Jean Dupont",
    its avatar "PD": only English "By" was taken off the name, whatever word the page gave."""
    assert byline_name(author, by) == name
    html = render_block_html({"related": [card(author=author)]}, words=Words(by=by))
    assert f'<span class="tdg-sr">{by} {name}</span>' in html
    assert f'aria-hidden="true">{initials(name)}</span>' in html


def test_a_byline_without_letters_has_no_empty_avatar():
    """A byline with no letter to show ("123") drew an empty circle beside the site; it is
    still said to screen readers."""
    html = render_block_html({"related": [card(author="123")]})
    assert "tdg-avatar" not in html
    assert '<span class="tdg-sr">By 123</span>' in html


def test_the_publishers_byline_word_and_avatar_in_a_french_block():
    texts = parse(render_block_html({"related": [card(author="Par Xavier Dupont")]},
                                    words=FRENCH)).texts
    assert "Par Xavier Dupont" in texts and "XD" in texts and "PD" not in texts


@pytest.mark.parametrize("lang, label", [
    ("", "6 Dec 2026"),
    ("en-GB", "6 Dec 2026"),
    ("fr", "6 déc. 2026"),
    ("FR-ca", "6 déc. 2026"),
    ("de", "6. Dez. 2026"),
    ("de_AT", "6. Dez. 2026"),
    ("pt-BR", "6 de dez. de 2026"),
    ("ru", "6 дек. 2026 г."),
    ("ja", "2026-12-06"),  # no month names here: a date every language reads
    ("x!", "2026-12-06"),
])
def test_dates_are_written_in_the_pages_language(lang, label):
    """Without the widget (a server-side include, no script) a French or German page showed
    "6 Dec 2026" under every story, whatever the page's language."""
    block = {"related": [card(published_at="2026-12-06T23:30:00.25+01:00")]}
    html = render_block_html(block, dates=date_language(lang))
    assert (f'<time class="tdg-time" dir="{text_dir(label)}" datetime="2026-12-06T23:30:00+01:00">'
            f'{label}</time>') in html


def test_every_month_has_its_name_in_every_language():
    from api.render import DATE_FORMATS

    for language, (pattern, months) in DATE_FORMATS.items():
        assert len(months.split()) == 12, language
        assert set(re.findall(r"{(\w)}", pattern)) == {"d", "m", "y"}, language
    assert date_language("es") == "es" and date_language(" ") == "en" and date_language("zh") is None


def test_a_link_opening_a_new_tab_says_so_in_the_pages_language():
    """target=_blank was not announced: a screen reader user left the article without a word.
    Links that stay in the tab (the page's own site, or no new_tab) say nothing more."""
    links = OtherSiteLinks(site_key("https://news.example/page"), True, ())
    texts = parse(render_block_html(OWN_AND_OTHER, links=links)).texts
    assert texts.count("opens in a new tab") == 1
    html = render_block_html(OWN_AND_OTHER, links=links, words=FRENCH)
    other = html[html.index('href="https://other.example'):]
    assert re.match(r'[^>]*target="_blank"[^>]*>.*<span class="tdg-sr">s&#x27;ouvre dans un nouvel '
                    r"onglet</span></a>", other)
    plain = OtherSiteLinks(site_key("https://news.example/page"), False, ("nofollow",))
    assert "tdg-sr\">opens" not in render_block_html(OWN_AND_OTHER, links=plain)
